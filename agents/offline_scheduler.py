"""The scheduler's offline driver: the same core stepped by hand, for tests and offline rendering.

Time moves only when the caller advances it, and each event goes out with the clock set to its due
time, so whole performances render as fast as the CPU allows through the code path that plays live.
"""

from __future__ import annotations

from agents.scheduler_core import CoreQueries, SchedulerCore, SendFn, TimeMap
from protocol.messages import Note
from protocol.realtime import PRIORITY_NORMAL
from protocol.virtual_time import ManualClock

__all__ = ["ManualClock", "OfflineScheduler"]


class OfflineScheduler(CoreQueries):
    """Offline driver: the same core stepped by `advance`/`advance_to`, as fast as the CPU allows.

    Each event is sent with the clock set to its due time, so lateness is exactly 0 unless an event
    was already overdue when it was queued or re-timed: then it goes out at once and the lateness
    shows how late, just as it would live.
    """

    def __init__(self, send: SendFn, *, clock: ManualClock | None = None, late_ms: float = 5.0,
                 drop_after_s: float | None = None, stats_capacity: int = 65536) -> None:
        self._send = send
        self.clock = clock if clock is not None else ManualClock()
        self._core = SchedulerCore(late_ms=late_ms, stats_capacity=stats_capacity, drop_after_s=drop_after_s)
        self.priority = PRIORITY_NORMAL

    def schedule(self, note: Note, tag: object = None) -> int:
        return self._core.schedule(note, tag)

    def set_timemap(self, timemap: TimeMap | None) -> None:
        """Replace the map; forced note-offs (a stopped map) go out now, as the thread would."""
        self._core.set_timemap(timemap)
        self.advance(0.0)

    def start(self) -> None:
        """Nothing to start: time moves only when advanced. Present so drivers are interchangeable."""

    def clear(self) -> None:
        self._core.clear()
        self.advance(0.0)

    def cut_at(self, beat: float) -> int:
        return self._core.cut_at(beat)

    def stop(self, flush: bool = True) -> None:
        if flush:
            self._core.deliver(self._core.flush(), self._send, self.clock)

    def advance(self, seconds: float) -> None:
        self.advance_to(self.clock.now + seconds)

    def advance_to(self, t: float) -> None:
        """Send everything due up to t, each at its own due time, then leave the clock at t."""
        if t < self.clock.now:
            raise ValueError(f"t: a clock does not run backwards ({t} < {self.clock.now})")
        core = self._core
        while True:
            due = core.next_due()
            if due is None or due > t:
                break
            self.clock.now = max(self.clock.now, due)
            core.deliver(core.pop_due(self.clock.now), self._send, self.clock)
        self.clock.now = t

