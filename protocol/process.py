"""What every Barcelona process does the same way at start: logging and signal handling.

SIGTERM and SIGINT both ask the process to stop through its asyncio loop, so every path to exit
runs the same cleanup (note-offs, all-notes-off, final stats).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable


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
