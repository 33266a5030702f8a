"""Supervised concurrency for a process's long-running loops: one loop failing ends them all.

A bare `asyncio.create_task` loop that raises dies alone: the rest of the process carries on as if
nothing happened (an agent whose planning loop died kept sending `playing` heartbeats and never
played another note). Under a `TaskGroup`, the first loop to raise wakes the owner, which stops the
process through its ordinary shutdown path (every note released) and exits with a one-line reason
and `EXIT_LOOP_FAILED`, so the launcher restarts it like any crash.

Python 3.11's `asyncio.TaskGroup` is close, but the project supports 3.10; and on a failure it cancels
the owner's body and raises an ExceptionGroup, where a process here wants its one stop path to run
and one line to say which loop failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("barcelona.tasks")


class LoopFailedError(RuntimeError):
    """A loop of the process raised; `loop` names it and `__cause__` is what it raised."""

    def __init__(self, loop: str, exc: BaseException) -> None:
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        super().__init__(f"the {loop} loop failed: {type(exc).__name__}" + (f": {detail}" if detail else ""))
        self.loop = loop


class TaskGroup:
    """Tasks that live and die together: `async with TaskGroup() as tg: tg.start(...); await tg.wait(stop)`.

    A loop that raises is a failure, and so is one that returns while it was meant to run until the
    process stops (a receive loop whose stream ended leaves a deaf process); `start(..., may_end=True)`
    is for a task that finishes on its own (a start-up step, a bridge with nothing to do). Leaving the
    block cancels every task still running and waits for it.
    """

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[Any]] = []
        self._may_end: set[asyncio.Task[Any]] = set()
        self._failed = asyncio.Event()
        self.failure: LoopFailedError | None = None

    def start(self, coro: Coroutine[Any, Any, Any], name: str, *, may_end: bool = False) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        if may_end:
            self._may_end.add(task)
        task.add_done_callback(self._done)
        self._tasks.append(task)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()  # also marks it retrieved: asyncio would log it again at exit
        if exc is None:
            if task in self._may_end:
                return
            exc = RuntimeError("it ended, and it should run until the process stops")
        if self.failure is None:
            self.failure = LoopFailedError(task.get_name(), exc)
            self.failure.__cause__ = exc
            log.debug("%s", self.failure, exc_info=exc)
        self._failed.set()

    async def wait(self, stop: asyncio.Event) -> None:
        """Return when `stop` is set; raise LoopFailedError as soon as a loop has failed."""
        if not (stop.is_set() or self._failed.is_set()):
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._failed.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
        if self.failure is not None:
            raise self.failure

    async def close(self) -> None:
        """Cancel every task still running and wait for each (idempotent)."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> TaskGroup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
