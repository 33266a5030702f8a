"""Waiting on a condition inside an event loop, with a deadline and a message saying what never came.

The deadline is read off the running loop's clock: the monotonic clock under `asyncio.run`, the
virtual one under protocol.virtual_time, where a timeout costs no real time and a condition that
never holds fails at once instead of spinning the loop for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], object], timeout: float = 5.0, what: str = "condition",
                every: float = 0.002) -> None:
    """Return once `predicate()` is true; fail naming `what` after `timeout` s on the loop's clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(every)  # a poll step: the loop above is bounded by the deadline
