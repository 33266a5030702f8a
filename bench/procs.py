"""Child-process hygiene and a private broker, shared by the benches that start processes.

WHY shared: beat_agreement and fanout both start children (an ensemble, receiver processes) and a
private mosquitto, and both must leave nothing running however they end: each child dies with the
bench, SIGTERM unwinds through the same ``finally`` as Ctrl-C, and the broker is closed there.
"""

from __future__ import annotations

import contextlib
import signal
from types import FrameType
from typing import Any

from protocol import process


def die_with_parent() -> None:
    """SIGTERM the calling process when the bench dies, even by SIGKILL (Linux only): no orphans.

    Called first thing in a child process, or as a child's ``preexec_fn`` (before exec).
    """
    with contextlib.suppress(Exception):
        process.die_with_parent(signal.SIGTERM)


class StopRequestedError(Exception):
    """SIGTERM turned into an exception so the same `finally` cleanup runs as for Ctrl-C."""


def on_sigterm(_sig: int, _frame: FrameType | None) -> None:
    """The SIGTERM handler a bench installs: raise StopRequestedError in the main thread."""
    raise StopRequestedError


def make_broker(nodelay: bool) -> Any:
    """The test helper's private mosquitto with `set_tcp_nodelay` set as asked: false is how Debian
    ships it (Nagle's algorithm on the broker's sockets), true is what docs and tests recommend.

    Raises RuntimeError with the reason when mosquitto is not installed.
    """
    from tests.support.broker import Mosquitto, mosquitto_missing_reason

    if reason := mosquitto_missing_reason():
        raise RuntimeError(reason)

    class Broker(Mosquitto):
        def _configure(self) -> None:
            super()._configure()
            conf = self.dir / "mosquitto.conf"
            lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("set_tcp_nodelay")]
            conf.write_text("\n".join([*lines, f"set_tcp_nodelay {'true' if nodelay else 'false'}"]) + "\n")

    return Broker()
