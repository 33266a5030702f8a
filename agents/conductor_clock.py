"""An agent's view of the conductor's clock: the offset it plays by and the pings that feed it.

Kept apart from the agent process because it is one job with its own rhythm (a burst at start, then a
steady stream) and its own rules (same host: offset 0; a restart inherits its predecessor's estimate);
the agent only asks for the offset and hears when the beat clock should be re-timed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from protocol.messages import SyncPing, SyncPong
from protocol.sync import ClockSync

__all__ = ["ConductorClock", "inherited_offset_ms"]

PING_BURST_S = 0.002
PING_BURST_SAMPLES = 250
PING_WAIT_S = 0.03
PING_EVERY_S = 0.01
PING_SAME_HOST_S = 0.5
RETIME_MIN_S = 2e-6


def inherited_offset_ms(previous_stats: dict[str, Any]) -> float | None:
    """The estimate a predecessor's stats file holds, if it had measured (not merely started)."""
    sync = previous_stats.get("sync") or {}
    offset_ms, rtt_ms = sync.get("estimated_offset_ms"), sync.get("rtt_ms")
    if all(isinstance(v, (int, float)) and math.isfinite(v) for v in (offset_ms, rtt_ms)) and rtt_ms > 0:
        return float(offset_ms)
    return None


class ConductorClock:
    """Owns the ClockSync of one agent and decides what offset its beat clock uses."""

    def __init__(self, name: str, same_host: bool, seed_ms: float | None = None) -> None:
        self.name = name
        # One host, one CLOCK_MONOTONIC: the offset to the conductor is exactly 0, and any estimate
        # could only add error. The pings go on, so the report still shows the round trip.
        self.same_host = same_host
        self.sync = ClockSync()
        self.seeded = False
        if seed_ms is not None and not same_host:
            self.seeded = True
            # Restarted on the same machine as its predecessor: the clocks did not move, so its
            # estimate is in time from the first pong while fresh samples build up (protocol/sync.py).
            self.sync.seed(seed_ms / 1000.0)
        self._timed: float | None = None  # the offset the scheduler plays by

    def offset_s(self) -> float:
        return 0.0 if self.same_host else self.sync.offset_s

    def rtt_s(self) -> float:
        return self.sync.rtt_s if self.sync.synced else 0.0

    def timed_offset_s(self) -> float:
        """The offset to hand the scheduler now; remembered, so `on_pong` knows what it plays by."""
        self._timed = self.offset_s()
        return self._timed

    def on_pong(self, pong: SyncPong, received_at: float) -> bool:
        """Feed one pong; True when the beat clock should be re-timed.

        A hundred pongs a second each nudge the mean by a fraction of a microsecond: the beat clock
        (and the stats file) change only when that adds up to something.
        """
        if not self.sync.add_sample(pong.t_local, pong.t_conductor, received_at, pong.t_reply):
            return False
        return self._timed is None or abs(self.offset_s() - self._timed) >= RETIME_MIN_S

    async def ping_loop(
        self, publish: Callable[[SyncPing], Awaitable[None]], clock: Callable[[], float]
    ) -> None:
        """Ping for ever: a dense burst at start, then a steady stream.

        Over a jittery network the offset is a mean of many samples (protocol/sync.py), and a new
        agent must be in time within half a second. While nothing answers (no conductor yet) the
        burst slows, so a waiting agent does not flood. Then 100 pings/s keep the mean fed
        (thousands of samples in the window; it tracks drift too), a few percent of one core.
        """
        n = 0
        while True:
            await publish(SyncPing(self.name, n, clock()))
            n += 1
            if self.same_host:
                # The offset is known (0): pings only keep the round trip in the report.
                await asyncio.sleep(PING_SAME_HOST_S)
            elif self.sync.accepted < PING_BURST_SAMPLES and not self.seeded:
                # (A seeded restart needs no burst: its estimate is good, and a burst through a
                # congested link would only pull it off while the link's queues fill.)
                unanswered = n - self.sync.accepted
                await asyncio.sleep(PING_BURST_S if unanswered < 2 * PING_BURST_SAMPLES else PING_WAIT_S)
            else:
                await asyncio.sleep(PING_EVERY_S)
