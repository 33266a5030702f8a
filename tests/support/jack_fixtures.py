"""Fixtures for a real JACK server with the dummy driver."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from support.jack import JackServer, MidiCapture

__all__ = ["JackServer", "MidiCapture", "jack_server"]


@pytest.fixture(scope="session")
def jack_server() -> Iterator[JackServer]:
    """One private jackd for the session; its name goes into the environment for rtmidi and children."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        pytest.skip("jackd not installed (bash tests/run_all.sh installs jackd2)")
    server = JackServer.start()
    saved = {key: os.environ.get(key) for key in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update({"JACK_DEFAULT_SERVER": server.name, "JACK_NO_START_SERVER": "1"})
    try:
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
