"""Start, watch and stop the local server processes behind the embedded infrastructure."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shared.runtime.server_urls import pid_alive

_PR_SET_PDEATHSIG = 1


class InfraError(RuntimeError):
    """An embedded server could not be started or stopped; the message says which and why."""


# Ports this process was given: a port handed out may not be bound yet by whoever asked for
# it (a server still starting), so the kernel could hand it out again meanwhile.
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago, never one this process was given before."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` different TCP ports that were free a moment ago, none of them given to this
    process before. Each is held until all are picked: the kernel may hand out a port again
    as soon as it is released."""
    with contextlib.ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:  # else kept bound, so the next bind gets another
                ports.append(port)
        _HANDED_OUT.update(ports)
        return ports


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def die_with_parent(sig: int) -> Callable[[], None]:
    """preexec_fn: have the kernel send `sig` to the child when the spawning thread exits.

    This is what guarantees no orphan server survives a Ctrl-C, a crash or a `kill -9` of the
    test run or of `creatorflow up`.
    """

    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig)
        # Ctrl-C in the terminal goes to the parent, which shuts servers down in order.
        os.setpgrp()

    return preexec


@dataclass
class ServerProcess:
    """One running server: its process handle or pid, where it logs and how it stops."""

    name: str
    pid: int
    log_path: Path
    stop_signal: int = signal.SIGTERM
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the server to stop, then kill it if it has not stopped within `timeout`."""
        if not self.alive():
            return
        try:
            os.kill(self.pid, self.stop_signal)
        except ProcessLookupError:
            return
        if not _wait_gone(self, timeout):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            _wait_gone(self, 5.0)

    def kill(self) -> None:
        """`kill -9`: no chance to flush or hand anything over (a crash drill)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        _wait_gone(self, 5.0)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def stop_together(processes: Iterable[ServerProcess], timeout: float = 30.0) -> None:
    """Stop servers at once rather than one by one: Kafka nodes stopped in turn would each
    wait for a quorum that the previous ones took away."""
    stopping = [proc for proc in processes if proc.alive()]
    for proc in stopping:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, proc.stop_signal)
    deadline = time.monotonic() + timeout
    for proc in stopping:
        if not _wait_gone(proc, max(0.0, deadline - time.monotonic())):
            proc.stop(timeout=0)


def _wait_gone(proc: ServerProcess, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen is not None:
            try:
                proc.popen.wait(timeout=0.05)
                return True
            except subprocess.TimeoutExpired:
                continue
        if not pid_alive(proc.pid):
            return True
        time.sleep(0.05)
    return not proc.alive()


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    detached: bool,
    stop_signal: int = signal.SIGTERM,
    user: str | None = None,
    env: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `argv` with output to `log_path`.

    Attached servers die with the thread that spawned them (so spawn from a long-lived thread);
    detached ones run in their own session until `ServerProcess.stop` (`creatorflow infra up`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detached,
            preexec_fn=None if detached else die_with_parent(stop_signal),
            user=user,
            env=env,
        )
    return ServerProcess(name, popen.pid, log_path, stop_signal, popen)


def wait_ready(proc: ServerProcess, probe: Callable[[], bool], timeout: float) -> None:
    """Poll `probe` until it answers True; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise InfraError(
                f"{proc.name} exited during start-up. Last log lines:\n{proc.log_tail()}"
            )
        if probe():
            return
        time.sleep(0.05)
    proc.stop()
    raise InfraError(
        f"{proc.name} was not ready after {timeout:.0f}s. Last log lines:\n{proc.log_tail()}"
    )
