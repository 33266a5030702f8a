"""Virtual time: a clock moved by hand, and an event loop that runs on it.

A performance is mostly waiting: a conductor that ticks every 5 ms and agents that plan every 10 ms
spend almost all of an 8-bar run asleep. `VirtualTimeLoop` is an ordinary asyncio loop whose
`time()` is a `ManualClock`; whenever it has nothing ready to run, it moves the clock straight to
its next timer instead of blocking. Every `asyncio.sleep`, `wait_for` and `call_at` then runs on
that clock unchanged, so the conductor and its agents can play together in one loop, in a test,
as fast as the CPU allows, and the same inputs give the same run: callbacks run in the order the
loop would have run them, and none of them waits on the real clock.

What the loop cannot speed up is work outside it. A thread or a process runs on the real clock
while the loop's time jumps ahead, so the loop runs `run_in_executor` (and with it
`asyncio.to_thread`) inline, as work that takes no time; and a part whose model runs in a process
of its own draws it in the loop's thread instead (agents/engines/inline_model.py).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["REAL_WAIT_S", "ManualClock", "VirtualTimeLoop", "run"]

T = TypeVar("T")

# With no timer due and nothing ready, only a real event (a socket, another thread's wake-up) can
# move the loop on; after this long without one the run is stuck, and says so.
REAL_WAIT_S = 30.0


class ManualClock:
    """A clock moved by hand; tests and offline rendering pass it where a real clock would go."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0.0:
            raise ValueError(f"seconds: a clock does not run backwards, got {seconds}")
        self.now += seconds


class _VirtualSelector(selectors.DefaultSelector):
    """The loop's selector: real events first; where the loop would block until a timer, the clock
    moves to it instead (`timeout` is exactly the time to the loop's next timer)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0.0):
            return ready
        if timeout is None:  # no timer at all: only a real event can come
            ready = super().select(REAL_WAIT_S)
            if not ready:
                raise RuntimeError(f"virtual time: nothing scheduled and no event for {REAL_WAIT_S:.0f} s "
                                   "of real time (every task is waiting on something that never comes)")
            return ready
        self._clock.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a `ManualClock` that jumps to its next timer whenever it is idle."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.clock = clock if clock is not None else ManualClock()
        super().__init__(_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock.now

    def run_in_executor(  # type: ignore[override]  # (the stub's TypeVarTuple needs Python 3.11)
        self, executor: Any, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Run `func` now, in the loop's thread: in a thread it would run on the real clock while
        virtual time raced past it, and what it returned would land at a time set by the machine."""
        fut: asyncio.Future[T] = self.create_future()
        try:
            fut.set_result(func(*args))
        except BaseException as exc:  # handed to the awaiting task, as an executor would
            fut.set_exception(exc)
        return fut


def run(main: Coroutine[Any, Any, T], clock: ManualClock | None = None) -> T:
    """`asyncio.run` on a VirtualTimeLoop: the tasks still running at the end are cancelled and
    awaited, as asyncio.run does (Python 3.10 has no Runner with a loop factory)."""
    loop = VirtualTimeLoop(clock)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
