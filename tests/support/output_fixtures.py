"""Fixtures for the outputs' tests: a GM soundfont for FluidSynth, and a UDP socket an OSC output sends
to. Real ones, skipped with the reason where this machine has none."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def soundfont() -> str:
    """The GM soundfont FluidSynth outputs find by default (the test command installs one)."""
    pytest.importorskip("fluidsynth", reason="pyfluidsynth or libfluidsynth not installed")
    from agents.outputs import OutputError, find_soundfont

    try:
        return str(find_soundfont())
    except OutputError as exc:
        pytest.skip(f"no GM soundfont: {exc}")


@pytest.fixture
def osc_listener(udp_port: Callable[[], int]) -> Iterator[tuple[socket.socket, int]]:
    """A bound loopback UDP socket (2 s receive timeout) and its port."""
    port = udp_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.settimeout(2.0)
        yield sock, port
