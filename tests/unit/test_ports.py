"""Ports picked for servers and services never collide within one process."""

from __future__ import annotations

import socket

import pytest

from shared.tools.infra.process import free_port, free_ports
from tests.support.ports import reusing_kernel


def test_a_port_given_out_is_not_given_out_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded servers and each service process get their ports one call at a time,
    and bind them only later: a kernel that hands a released port out again at once must
    not give two of them the same one."""
    reusing_kernel(monkeypatch)
    one_by_one = [free_port() for _ in range(5)]
    together = free_ports(3)
    ports = one_by_one + together
    assert len(set(ports)) == len(ports) == 8


def test_the_real_kernel_gives_ports_that_can_be_bound() -> None:
    for port in free_ports(3):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
