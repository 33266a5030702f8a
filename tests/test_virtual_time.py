"""The virtual-time loop (protocol/virtual_time.py) and the scheduler's loop driver on it
(agents/loop_scheduler.py): time jumps to the next timer, timers fire exactly when due, and the
loop driver sends what the offline driver sends, at the same moments."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import pytest

from agents.loop_scheduler import LoopScheduler
from agents.offline_scheduler import OfflineScheduler
from agents.scheduler import ScheduledEvent
from protocol import virtual_time
from protocol.messages import Note
from protocol.virtual_time import ManualClock, run


@dataclass(frozen=True)
class Tempo:
    bpm: float
    t0: float = 0.0
    playing: bool = True

    def time_at(self, beat: float) -> float | None:
        return self.t0 + beat * 60.0 / self.bpm


def test_an_hour_of_sleeping_takes_no_time_and_wakes_in_order() -> None:
    clock = ManualClock(1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, period: float, n: int) -> None:
        for _ in range(n):
            await asyncio.sleep(period)  # virtual sleeps are what is under test
            woke.append((name, clock()))

    async def main() -> None:
        await asyncio.gather(sleeper("slow", 600.0, 6), sleeper("fast", 0.5, 7200))

    t0 = time.perf_counter()
    run(main(), clock)
    assert time.perf_counter() - t0 < 20.0  # (a real hour otherwise; the bench measures speed)
    assert clock() == pytest.approx(1000.0 + 3600.0)
    assert [t for _, t in woke] == sorted(t for _, t in woke)
    slow = [t for name, t in woke if name == "slow"]
    assert slow == pytest.approx([1000.0 + 600.0 * k for k in range(1, 7)])


def test_a_timer_fires_exactly_at_its_time() -> None:
    clock = ManualClock(1000.0)
    fired: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for when in (1000.25, 1003.0, 1001.125):
            loop.call_at(when, lambda: fired.append(clock()))
        await asyncio.sleep(5.0)  # virtual time runs past the timers under test

    run(main(), clock)
    assert fired == [1000.25, 1001.125, 1003.0]


def test_wait_for_times_out_on_virtual_time() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(60.0), 2.5)  # a sleep outlasting the timeout under test
        return loop.time() - start

    assert run(main()) == pytest.approx(2.5)


def test_to_thread_runs_inline_in_no_time() -> None:
    """A thread would run on the real clock while virtual time raced on: the loop runs it in place."""

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        name = await asyncio.to_thread(lambda: threading.current_thread().name)
        return name, loop.time() - start

    assert run(main()) == (threading.current_thread().name, 0.0)


def test_to_thread_raises_what_the_function_raised() -> None:
    def fails() -> None:
        raise KeyError("model")

    async def main() -> None:
        await asyncio.to_thread(fails)

    with pytest.raises(KeyError, match="model"):
        run(main())


def test_a_run_waiting_on_nothing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(virtual_time, "REAL_WAIT_S", 0.05)

    async def main() -> None:
        await asyncio.get_running_loop().create_future()  # nobody will ever set it

    with pytest.raises(RuntimeError, match="nothing scheduled"):
        run(main())


def test_tasks_left_running_are_cancelled_at_the_end() -> None:
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1e6)  # still asleep when the run ends: the task to cancel
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(1.0)  # the run ends (virtually) 1 s on, forever() still asleep

    run(main())
    assert cancelled == [True]


# -- the scheduler's loop driver ------------------------------------------------------------------------
class Capture:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, str, int, float | None]] = []

    def __call__(self, ev: ScheduledEvent) -> None:
        self.sent.append((self.clock(), ev.kind, ev.pitch, ev.due))


NOTES = [(0.0, 1.0, 60), (0.5, 0.25, 64), (1.0, 2.0, 67), (1.0, 0.5, 72), (3.25, 1.0, 48)]


def test_the_loop_driver_sends_what_the_offline_driver_sends_when_it_sends_it() -> None:
    clock = ManualClock(1000.0)
    loop_cap = Capture(clock)

    async def main() -> LoopScheduler:
        sched = LoopScheduler(loop_cap, clock=clock)
        sched.start()
        sched.set_timemap(Tempo(120.0, t0=1000.5))
        for start, dur, pitch in NOTES:
            sched.schedule(Note(start, dur, pitch, 100, 0, "test"))
        await asyncio.sleep(10.0)  # virtual time runs past every note, as advance(10.0) does below
        return sched

    sched = run(main(), clock)
    offline_clock = ManualClock(1000.0)
    offline_cap = Capture(offline_clock)
    ref = OfflineScheduler(offline_cap, clock=offline_clock)
    ref.set_timemap(Tempo(120.0, t0=1000.5))
    for start, dur, pitch in NOTES:
        ref.schedule(Note(start, dur, pitch, 100, 0, "test"))
    ref.advance(10.0)
    assert loop_cap.sent == offline_cap.sent
    assert len(loop_cap.sent) == 2 * len(NOTES)
    assert all(t == due for t, _, _, due in loop_cap.sent)
    assert sched.stats()["max"] == 0.0 and sched.pending() == 0


def test_a_new_timemap_retimes_what_waits_and_stop_releases_what_sounds() -> None:
    clock = ManualClock(1000.0)
    cap = Capture(clock)

    async def main() -> None:
        sched = LoopScheduler(cap, clock=clock)
        sched.start()
        sched.set_timemap(Tempo(60.0, t0=1000.0))
        sched.schedule(Note(1.0, 4.0, 60, 100, 0, "test"))  # on at 1001, off at 1005 at 60 BPM
        sched.schedule(Note(3.0, 1.0, 62, 100, 0, "test"))
        await asyncio.sleep(1.5)  # to virtual 1001.5: note 60 on, note 62 still waiting
        sched.set_timemap(Tempo(120.0, t0=1000.0))  # beat 3 is now at 1001.5: due at once
        await asyncio.sleep(0.1)  # to 1001.6: the retimed note has gone; the stop comes then
        sched.stop(flush=True)  # the held note ends now
        await asyncio.sleep(10.0)  # virtual time runs on: nothing more may be sent

    run(main(), clock)
    sent = [(kind, pitch) for _, kind, pitch, _ in cap.sent]
    assert sent == [("on", 60), ("on", 62), ("off", 60), ("off", 62)]
    assert [t for t, *_ in cap.sent] == pytest.approx([1001.0, 1001.5, 1001.6, 1001.6])
    assert cap.sent[-1][3] is None  # a forced note-off has no due time
