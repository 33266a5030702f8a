"""An agent's part played by its machine's output host (agents/output_host.py) instead of a timing
thread of its own.

`OutputLink` stands where the agent's `Output` stands (open, close, sounding notes, a fader move) and
`HostedScheduler` where its `Scheduler` stands (schedule, cut, re-time, clear, stop, statistics): each
command goes to the host at once as a value (agents/output_messages.py), and the host, which keeps
the queue and the output, writes the notes at their moments. What comes back (notes played, how many
sound, the timing statistics) is read on the agent's event loop. Nothing here is time-critical: a
note is committed a beat or more before it sounds, so the agent's own loop can be late by a lot
before the host's writing is.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection, answer_challenge, deliver_challenge
from typing import Any

from agents.output_messages import (
    Clear,
    Close,
    Closed,
    Control,
    CutAt,
    Open,
    Opened,
    Schedule,
    SetTimeMap,
    Stats,
    Written,
)
from agents.outputs import OutputError
from agents.scheduler_core import TimeMap
from protocol.messages import Note
from protocol.timeline import LocalTimeMap

__all__ = ["KEY_ENV", "HostedScheduler", "OutputLink"]

KEY_ENV = "BARCELONA_OUTPUT_KEY"  # the connection's authentication key, from the launcher

CONNECT_S = 15.0  # the launcher starts the host beside the agents: it may not listen yet
CLOSE_S = 1.0


class OutputLink:
    """The part's output, opened and written by the output host; the agent's end of the connection."""

    def __init__(self, conn: Connection, name: str, priority: str) -> None:
        self._conn = conn
        self.name = name
        self.priority = priority
        self._sounding = 0
        self._open = True
        self._lost: asyncio.Event | None = None
        self._gone_at = False
        self._onsets = 0
        self.stats: dict[str, float | int] = {}
        self.on_written: Callable[[int], None] = lambda _onsets: None

    @classmethod
    def connect(cls, address: str, key: bytes | None, part: str, spec: dict[str, Any], *,
                late_ms: float = 5.0, drop_after_s: float | None = None,
                timeout_s: float = CONNECT_S) -> OutputLink:
        """Join the host and open the part's output there; an `OutputError` in one line if it cannot."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                conn = Client(address, family="AF_UNIX")  # the handshake below, where it can time out
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if time.monotonic() > deadline:
                    raise OutputError(f"no output host at {address} ({exc.strerror})") from None
                time.sleep(0.05)
            except OSError as exc:
                raise OutputError(f"output host at {address}: {exc}") from None
        try:
            if key is not None:
                # The host speaks first; a host that never does (hung, or not ours) is an error here
                # rather than an agent waiting for ever with its part silent.
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    raise OutputError(f"the output host at {address} did not answer in {timeout_s:g} s")
                answer_challenge(conn, key)
                deliver_challenge(conn, key)
            conn.send(Open(part, spec, late_ms, drop_after_s))
            if not conn.poll(timeout_s):
                raise OutputError(f"the output host at {address} did not answer in {timeout_s:g} s")
            answer = conn.recv()
        except OutputError:
            conn.close()
            raise
        except (OSError, EOFError, AuthenticationError) as exc:
            conn.close()
            raise OutputError(f"the output host at {address} refused the connection ({exc})") from None
        if not isinstance(answer, Opened) or answer.error:
            conn.close()
            raise OutputError(answer.error if isinstance(answer, Opened) else "the output host answered "
                              f"{type(answer).__name__}")
        return cls(conn, part, answer.priority)

    # -- what the agent asks of an output ------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._open

    def control_change(self, channel: int, control: int, value: int) -> None:
        self.send(Control(channel, control, value))

    def sounding(self) -> int:
        """Notes sounding, as the host last said (after the close: the notes left stuck)."""
        return self._sounding

    def close(self) -> None:
        """Release everything and close the part's output at the host; the host's last statistics
        are kept. A host that is gone already released the part's notes when it went."""
        if not self._open:
            return
        self._open = False
        self._stop_reading()
        with contextlib.suppress(OSError, EOFError):
            self._conn.send(Close())
            deadline = time.monotonic() + CLOSE_S
            while self._conn.poll(max(0.0, deadline - time.monotonic())):
                msg = self._conn.recv()
                self._take(msg)
                if isinstance(msg, Closed):
                    break
        self._conn.close()

    # -- the connection ----------------------------------------------------------------------------------
    def send(self, msg: object) -> None:
        if not self._open:
            return
        try:
            self._conn.send(msg)
        except OSError as exc:
            self._gone()
            raise OutputError(f"the output host went away ({exc})") from None

    def start_reading(self) -> None:
        """Read what the host says on the running event loop; `watch` raises once the host is gone."""
        self._lost = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._conn.fileno(), self._readable)

    async def watch(self) -> None:
        """A supervised loop of the agent: the part cannot play without its host, so the agent ends
        (its launcher restarts it, and the host) rather than go on silently."""
        assert self._lost is not None, "start_reading first"
        await self._lost.wait()
        raise OutputError("the output host closed the connection")

    def _readable(self) -> None:
        try:
            while self._conn.poll():
                self._take(self._conn.recv())
        except (OSError, EOFError):
            self._gone()

    def _take(self, msg: object) -> None:
        if isinstance(msg, (Stats, Closed)):
            self.stats = dict(msg.stats)
        if isinstance(msg, (Written, Stats, Closed)):
            self._sounding = msg.sounding
            if msg.onsets > self._onsets:
                self.on_written(msg.onsets - self._onsets)
                self._onsets = msg.onsets

    @property
    def lost(self) -> bool:
        """Whether the host went away under the part (as against a close the agent asked for)."""
        return self._gone_at

    def _gone(self) -> None:
        self._gone_at = True
        self._stop_reading()
        if self._lost is not None:
            self._lost.set()

    def _stop_reading(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._conn.fileno())


class HostedScheduler:
    """The agent's scheduler when the output host keeps the queue: the `Scheduler` interface the
    agent uses, each command sent on; statistics as the host last sent them."""

    def __init__(self, link: OutputLink) -> None:
        self._link = link
        self._ids = itertools.count(1)
        self._running = False

    @property
    def priority(self) -> str:
        return self._link.priority

    @property
    def running(self) -> bool:
        return self._running and self._link.is_open and not self._link.lost

    def start(self) -> None:
        self._running = True

    def schedule(self, note: Note, tag: object = None) -> int:
        self._link.send(Schedule(note, None if tag is None else str(tag)))
        return next(self._ids)

    def cut_at(self, beat: float) -> int:
        self._link.send(CutAt(beat))
        return 0

    def set_timemap(self, timemap: TimeMap | None) -> None:
        if timemap is not None and not isinstance(timemap, LocalTimeMap):
            raise TypeError(f"timemap: the output host takes a LocalTimeMap, got {type(timemap).__name__}")
        self._link.send(SetTimeMap(timemap))

    def clear(self) -> None:
        self._link.send(Clear())

    def stop(self, flush: bool = True) -> None:
        """As `Scheduler.stop`; with flush the host releases the sounding notes now (the link's close
        does the same, and closes the output)."""
        if self._running and flush:
            with contextlib.suppress(OutputError):
                self._link.send(Clear())
        self._running = False

    def stats(self) -> dict[str, float | int]:
        s: dict[str, float | int] = {"p50": 0.0, "p99": 0.0, "max": 0.0, "count": 0, "late_count": 0,
                                     "dropped": 0, "onset_max": 0.0, "send_errors": 0}
        s.update(self._link.stats)
        return s
