"""The Apache Kafka broker's jars: fetched once from Maven Central with `mvn`, then cached.

`deploy/kafka/pom.xml` names the broker and its logging; `mvn dependency:copy-dependencies`
copies them with every transitive dependency into a directory named after the pom's hash, under
`CREATORFLOW_CACHE_DIR` (default `$XDG_CACHE_HOME/creatorflow`, i.e. `~/.cache/creatorflow`).
Every data directory and test session on the machine reuses it; editing the pom fetches anew.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from shared.tools.infra.process import InfraError

POM = Path(__file__).resolve().parents[3] / "deploy" / "kafka" / "pom.xml"
_COMPLETE = ".complete"


def default_cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "creatorflow"


def require_tools(*tools: str) -> dict[str, str]:
    """The path of each tool, or one InfraError line saying what to install."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        raise InfraError(
            f"Apache Kafka needs {' and '.join(missing)} on PATH: install Java 17 or later "
            "and Maven (Debian/Ubuntu: apt-get install openjdk-17-jre-headless maven), "
            "or use the embedded broker (unset CREATORFLOW_KAFKA)"
        )
    return {tool: path for tool, path in found.items() if path is not None}


def kafka_jars(cache_dir: Path, pom: Path = POM) -> Path:
    """The directory holding the broker's jars, fetched with Maven on first use.

    Concurrent callers (two test sessions) wait for one fetch under a file lock; a fetch that
    fails or is interrupted leaves nothing that a later call would take for complete.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:16]
    jars = cache_dir / f"kafka-jars-{digest}"
    if (jars / _COMPLETE).exists():
        return jars
    mvn = require_tools("java", "mvn")["mvn"]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".kafka-jars-{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (jars / _COMPLETE).exists():
            return jars
        staging = Path(tempfile.mkdtemp(prefix=".kafka-jars-", dir=cache_dir))
        try:
            _copy_dependencies(mvn, pom, staging)
            (staging / _COMPLETE).touch()
            shutil.rmtree(jars, ignore_errors=True)
            staging.rename(jars)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return jars


def _copy_dependencies(mvn: str, pom: Path, target: Path) -> None:
    argv = [
        mvn,
        "--batch-mode",
        "--quiet",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise InfraError(f"Maven could not fetch the Apache Kafka jars ({pom}):\n{output}")
    if not any(target.glob("kafka_2.13-*.jar")):
        raise InfraError(f"Maven ran but copied no Kafka broker jar into {target}")
