"""Free loopback ports for tests that open real sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """Ask the kernel for a loopback port nobody holds, so parallel runs never collide."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def udp_port() -> Callable[[], int]:
    """A factory: call it once per port a test needs."""
    return lambda: free_port(socket.SOCK_DGRAM)


@pytest.fixture
def tcp_port() -> Callable[[], int]:
    return lambda: free_port(socket.SOCK_STREAM)
