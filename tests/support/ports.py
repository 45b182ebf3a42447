"""A kernel for tests of port picking: it hands a port out again as soon as it is released."""

from __future__ import annotations

import socket

import pytest

from shared.tools.infra import process


class ReusingKernel:
    """Sockets whose ephemeral bind returns the lowest port not bound now: a port is handed
    out again as soon as it is released, as a kernel may."""

    def __init__(self) -> None:
        self.bound: set[int] = set()
        kernel = self

        class Socket:
            def __init__(self, *_: object) -> None:
                self.port = 0

            def bind(self, _: object) -> None:
                self.port = min(set(range(40000, 40100)) - kernel.bound)
                kernel.bound.add(self.port)

            def getsockname(self) -> tuple[str, int]:
                return ("127.0.0.1", self.port)

            def __enter__(self) -> Socket:
                return self

            def __exit__(self, *_: object) -> None:
                kernel.bound.discard(self.port)

        self.socket = Socket
        self.AF_INET, self.SOCK_STREAM = socket.AF_INET, socket.SOCK_STREAM


def reusing_kernel(monkeypatch: pytest.MonkeyPatch) -> ReusingKernel:
    """Port picking (`shared.tools.infra.process`) on a `ReusingKernel`, with no port given
    out before."""
    kernel = ReusingKernel()
    monkeypatch.setattr(process, "socket", kernel)
    monkeypatch.setattr(process, "_HANDED_OUT", set())
    return kernel
