"""The agent's realtime output scheduler: a timing thread that sends each committed note at its local
moment.

Clock domain: every time here is LOCAL `time.monotonic()` seconds (CLOCK_MONOTONIC on Linux, the same
clock `perf_counter` reads there), the domain of `protocol.timeline.LocalTimeMap`.

A thin driver of `agents.scheduler_core.SchedulerCore`, which holds the queue (in beats), the notes
that are sounding and the timing statistics, and says what a stopped timeline and a new time map do;
the same core runs on an event loop (`agents.loop_scheduler`) and offline (`agents.offline_scheduler`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from agents.lateness import LatenessStats
from agents.scheduler_core import (
    Dispatch,
    EventKind,
    PrepareFn,
    ScheduledEvent,
    SchedulerCore,
    SendFn,
    TimeMap,
)
from protocol.messages import Note
from protocol.realtime import DEFAULT_RT_PRIORITY, PRIORITY_NORMAL, request_realtime, spin_yield

# The core's names are imported from here too (tests, bench/timing.py): this module is the scheduler.
__all__ = [
    "Dispatch",
    "EventKind",
    "LatenessStats",
    "PrepareFn",
    "ScheduledEvent",
    "Scheduler",
    "SchedulerCore",
    "SendFn",
    "TimeMap",
]


class Scheduler:
    """Realtime driver: one daemon timing thread is the only caller of `send` (and of `prepare`).

    With `prepare`, each batch of due events is made ready before the spin and written at the due
    time by the one call it returns (agents/outputs/burst.py); `send` then carries only the
    note-offs of a stop, which have no due time.

    Sleeping on a Condition (not polling) lets an earlier note or a new
    TimeMap wake the thread at once; the last `spin_s` is spun because a wake-up from a timed wait can
    be tens to hundreds of microseconds late. The thread asks for SCHED_FIFO (see `protocol.realtime`);
    the process-wide GIL switch interval is the agent process's own setting
    (`protocol.realtime.set_switch_interval`), not this class's.

    SCHED_FIFO does not reach the GIL: when a normal-priority thread of the same process holds the
    GIL (or this class's lock) and busy cores preempt it, the timing thread waits until the CPU
    scheduler runs that thread again, milliseconds on a loaded machine (bench/timing.py: p99 tens of
    ms with a model thread in-process, 0.05 ms with the model in a sibling process). So keep only
    light threads in the timing thread's process, and give them SCHED_FIFO at this one's priority:
    the spin's `sched_yield` (`protocol.realtime.spin_yield`) reaches threads of its own priority
    only, and other processes' timing threads spinning at the same beat must not keep a thread that
    holds this process's GIL off the cores (docs/timing.md).
    """

    def __init__(self, send: SendFn, *, clock: Callable[[], float] = time.monotonic, realtime: bool = True,
                 rt_priority: int = DEFAULT_RT_PRIORITY, spin_s: float = 0.0005, late_ms: float = 5.0,
                 drop_after_s: float | None = None, stats_capacity: int = 65536,
                 prepare: PrepareFn | None = None) -> None:
        if spin_s < 0.0:
            raise ValueError(f"spin_s: must be >= 0, got {spin_s}")
        self._send = send
        self._prepare = prepare
        self._clock = clock
        self._realtime = realtime
        self._rt_priority = rt_priority
        self._spin_s = spin_s
        self._core = SchedulerCore(late_ms=late_ms, stats_capacity=stats_capacity, drop_after_s=drop_after_s)
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flush_on_stop = True
        self._ready = threading.Event()
        self._priority = PRIORITY_NORMAL

    # -- commands from any thread ------------------------------------------------------------------
    def schedule(self, note: Note, tag: object = None) -> int:
        """Queue a note's note-on and note-off; returns its id. Wakes the thread only if needed."""
        with self._cond:
            head = self._core.head_beat()
            note_id = self._core.schedule(note, tag)
            if head is None or note.start_beat < head:
                self._cond.notify()
        return note_id

    def cut_at(self, beat: float) -> int:
        """See `SchedulerCore.cut_at`; wakes the thread, since a note-off may now be due sooner."""
        with self._cond:
            changed = self._core.cut_at(beat)
            self._cond.notify()
        return changed

    def set_timemap(self, timemap: TimeMap | None) -> None:
        """Replace the beat→seconds map atomically; pending events are re-timed by it."""
        with self._cond:
            self._core.set_timemap(timemap)
            self._cond.notify()

    def clear(self) -> None:
        """Forget every unstarted note and release sounding ones now (from the timing thread), e.g.
        when the transport stops and the planner will commit afresh; the thread keeps running."""
        with self._cond:
            self._core.clear()
            self._cond.notify()

    def start(self) -> None:
        """Start the timing thread; returns once its priority is known."""
        if self._thread is not None:
            return
        self._stopping = False
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, name="barcelona-timing", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self, flush: bool = True, timeout: float = 2.0) -> None:
        """Stop the thread. flush=True sends note-offs of sounding notes now and drops the unstarted
        ones; flush=False keeps everything queued for a later start() (the caller owns stuck notes)."""
        thread = self._thread
        if thread is None:
            if flush:
                with self._cond:
                    offs = self._core.flush()
                self._core.deliver(offs, self._send, self._clock)
            return
        with self._cond:
            self._stopping = True
            self._flush_on_stop = flush
            self._cond.notify()
        if thread is not threading.current_thread():  # an output may call stop() from inside send
            thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------------------------------
    @property
    def priority(self) -> str:
        """'SCHED_FIFO' or 'normal': what the timing thread actually got."""
        return self._priority

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pending(self) -> int:
        with self._cond:
            return self._core.pending()

    def stats(self) -> dict[str, float | int]:
        """Lateness in ms (p50, p99, max over the last `stats_capacity` sends), count, late_count,
        dropped, send_errors."""
        return self._core.stats()

    def lateness_ms(self) -> np.ndarray:
        return self._core.lateness.values_ms()

    # -- the timing thread -------------------------------------------------------------------------
    def _run(self) -> None:
        self._priority = request_realtime(self._rt_priority) if self._realtime else PRIORITY_NORMAL
        self._ready.set()
        core, cond, clock, spin, send = self._core, self._cond, self._clock, self._spin_s, self._send
        prepare = self._prepare
        give_way = spin_yield()
        while True:
            with cond:
                if self._stopping:
                    offs = core.flush() if self._flush_on_stop else []
                    break
                due = core.next_due()
                if due is None:
                    cond.wait()
                    continue
                wait = due - clock() - spin
                if wait > 0.0:
                    cond.wait(min(wait, 10.0))  # a bounded wait: lock timeouts overflow on absurd maps
                    continue
                # Taken now, before the spin: the queue's work (the heap, the time map, the events'
                # copies) then lies before the due time instead of after it, which halved the median
                # lateness of the default ensemble's parts (0.09 to 0.04 ms).
                batch = core.pop_due(max(clock(), due))
            # Outside the lock, as the sends are: the output's work for the batch, all of it but the
            # writes, is done before the due time too (agents/outputs/burst.py).
            ready: Dispatch | None = core.prepare(batch, prepare) if prepare is not None else None
            while clock() < due:  # the last fraction of a millisecond, outside the lock
                give_way()  # to another part's timing thread due at the same moment
            if ready is None:
                core.deliver(batch, send, clock)
            else:
                core.dispatch(batch, ready)
            give_way()  # the part sharing this core, due now too, sends before this thread goes back to sleep
        core.deliver(offs, send, clock)
