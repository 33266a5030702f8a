"""What every Barcelona process does the same way at start: logging and signal handling.

SIGTERM and SIGINT both ask the process to stop through its asyncio loop, so every path to exit
runs the same cleanup (note-offs, all-notes-off, final stats).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def setup_logging(name: str, level: str = "WARNING") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # non-main thread or platform without it
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write-then-rename: a reader (the launcher's display, a test) never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
