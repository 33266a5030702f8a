"""The scheduler's event-loop driver: the same core, each send a timer on the agent's own loop.

For an agent that shares one loop with the conductor and other agents on virtual time
(protocol/virtual_time.py): there a timing thread would wait on the real clock while the loop's
clock jumped, so the next due event is instead a `call_at` on the loop, re-armed after every
command. On a virtual clock a timer fires exactly at its time, so every event goes out with
lateness 0 unless it was already overdue when queued, as with `OfflineScheduler`. On a real loop it
works too, but with the loop's wake-up jitter: a performance keeps the timing thread
(`agents.scheduler.Scheduler`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from agents.scheduler_core import CoreQueries, SchedulerCore, SendFn, TimeMap
from protocol.messages import Note
from protocol.realtime import PRIORITY_NORMAL

__all__ = ["LoopScheduler"]


class LoopScheduler(CoreQueries):
    """Loop driver: interchangeable with `Scheduler` for the agent; call it from the loop's thread."""

    def __init__(self, send: SendFn, *, clock: Callable[[], float], late_ms: float = 5.0,
                 drop_after_s: float | None = None, stats_capacity: int = 65536) -> None:
        self._send = send
        self._clock = clock
        self._core = SchedulerCore(late_ms=late_ms, stats_capacity=stats_capacity, drop_after_s=drop_after_s)
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._armed_for: float | None = None
        self._running = False
        self.priority = PRIORITY_NORMAL

    # -- commands (each re-arms the timer for the earliest due event) --------------------------------
    def schedule(self, note: Note, tag: object = None) -> int:
        note_id = self._core.schedule(note, tag)
        self._arm()
        return note_id

    def set_timemap(self, timemap: TimeMap | None) -> None:
        self._core.set_timemap(timemap)
        self._arm()

    def clear(self) -> None:
        self._core.clear()
        self._arm()

    def cut_at(self, beat: float) -> int:
        changed = self._core.cut_at(beat)
        self._arm()
        return changed

    def start(self) -> None:
        self._running = True
        self._arm()

    def stop(self, flush: bool = True) -> None:
        """As `Scheduler.stop`: no more timers; flush=True sends the sounding notes' note-offs now."""
        self._running = False
        self._disarm()
        if flush:
            self._core.deliver(self._core.flush(), self._send, self._clock)

    # -- queries -------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running


    # -- the timer -----------------------------------------------------------------------------------
    def _arm(self) -> None:
        if not self._running:
            return
        due = self._core.next_due()
        if due == self._armed_for:
            return
        self._disarm()
        if due is None:
            return
        loop = asyncio.get_running_loop()
        self._armed_for = due
        self._timer = loop.call_soon(self._fire) if math.isinf(due) else loop.call_at(due, self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_for = None, None

    def _fire(self) -> None:
        self._timer, self._armed_for = None, None
        if not self._running:
            return
        core = self._core
        core.deliver(core.pop_due(self._clock()), self._send, self._clock)
        self._arm()
