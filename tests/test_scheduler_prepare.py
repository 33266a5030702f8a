"""The timing thread's two steps for a batch: the output's work done before the due time
(`prepare`), the writes at it (`Dispatch`), and lateness from the times the writes report."""

from __future__ import annotations

import threading
import time

from agents.outputs import NullOutput
from agents.scheduler import Dispatch, ScheduledEvent, Scheduler, SchedulerCore
from protocol.messages import Note
from protocol.realtime import spin_yield


class Tempo:
    def __init__(self, bpm: float, t0: float) -> None:
        self.spb, self.t0 = 60.0 / bpm, t0

    def time_at(self, beat: float) -> float:
        return self.t0 + beat * self.spb


def test_the_batch_is_prepared_before_its_due_time_and_written_at_it() -> None:
    out = NullOutput(channels=[0, 1], clock=time.monotonic).open()
    prepared_at: list[tuple[float, float | None]] = []
    done = threading.Event()
    expected = 10 * 2 * 2  # ten beats of a two-note chord, each note's on and off

    def prepare(events: list[ScheduledEvent]) -> Dispatch:
        prepared_at.append((time.monotonic(), events[0].due))
        burst = out.prepare([(ev.kind == "on", ev.note, ev.due) for ev in events])

        def write() -> list[float | Exception]:
            results = out.send(burst)
            if sum(1 for s in out.sent if s.due is not None) >= expected:
                done.set()
            return results

        return write

    def send(ev: ScheduledEvent) -> None:
        raise AssertionError(f"a timed event went through send: {ev}")

    sched = Scheduler(send, prepare=prepare, realtime=True)
    sched.start()
    try:
        sched.set_timemap(Tempo(3000.0, time.monotonic() + 0.02))  # a beat every 20 ms
        for beat in range(10):
            for channel, pitch in ((0, 60 + beat), (1, 48 + beat)):
                sched.schedule(Note(float(beat), 0.5, pitch, 90, channel, "test"))
        assert done.wait(10.0), f"only {len(out.sent)} messages written"
    finally:
        sched.stop()
    timed = [s for s in out.sent if s.due is not None]
    assert all(s.sent_at >= s.due for s in timed)  # nothing written before its due time
    assert all(at <= due for at, due in prepared_at if due is not None)  # prepared ahead of it
    assert out.sounding() == 0
    stats = sched.stats()
    assert stats["count"] == expected and stats["send_errors"] == 0
    written_late = sorted(s.sent_at - s.due for s in timed if s.due is not None)
    assert stats["max"] >= written_late[-1] * 1000.0  # lateness is read after each write, never before


def test_an_output_that_cannot_prepare_or_write_is_counted_and_the_clock_goes_on() -> None:
    core = SchedulerCore()
    core.set_timemap(Tempo(60.0, 0.0))
    core.schedule(Note(0.0, 1.0, 60, 90, 0, "test"))
    core.schedule(Note(0.0, 1.0, 64, 90, 0, "test"))

    def closed(events: list[ScheduledEvent]) -> Dispatch:
        raise RuntimeError("output closed")

    batch = core.pop_due(0.0)
    core.dispatch(batch, core.prepare(batch, closed))
    assert core.stats()["send_errors"] == 2 and core.lateness.summary()["count"] == 0
    offs = core.pop_due(1.0)
    core.dispatch(offs, lambda: [1.0002, RuntimeError("one write failed")])
    stats = core.stats()
    assert stats["send_errors"] == 3 and stats["count"] == 1
    assert abs(stats["max"] - 0.2) < 1e-6  # 0.2 ms: the reported write time minus the due time
    core.dispatch([], lambda: [1.0])  # an output that answers for events it was not given
    assert core.stats()["send_errors"] == 3


def test_the_spin_step_returns_at_once_when_no_other_thread_waits_for_the_core() -> None:
    step = spin_yield()
    start = time.perf_counter()
    for _ in range(1000):
        step()
    assert time.perf_counter() - start < 1.0  # a system call, not a sleep
