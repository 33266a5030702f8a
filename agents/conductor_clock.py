"""An agent's view of the conductor's clock: the offset it plays by and the pings that feed it.

Kept apart from the agent process because it is one job with its own rhythm (a burst at start, then a
steady stream) and its own rules (same host: offset 0; a restart inherits its predecessor's estimate);
the agent only asks for the offset and hears when the beat clock should be re-timed.

It also says whether the agent is in sync at all. An agent whose pings go nowhere (a
`conductor.address` left at 127.0.0.1 on another machine, a firewall on the sync port) measures no
round trip and keeps offset 0, which looks like a perfect clock: so no pong for `UNSYNCED_AFTER_S`
makes it `unsynced`, warned once with the address it pings, and shown wherever its state is shown.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

from protocol.messages import SyncPing, SyncPong
from protocol.sync import ClockSync

__all__ = ["SYNCED", "SYNCING", "UNSYNCED", "UNSYNCED_AFTER_S", "ConductorClock", "inherited_offset_ms"]

log = logging.getLogger("barcelona.agent")

PING_BURST_S = 0.002
PING_BURST_SAMPLES = 250
PING_WAIT_S = 0.03
PING_EVERY_S = 0.01
PING_SAME_HOST_S = 0.5
RETIME_MIN_S = 2e-6
# No pong for this long: the agent is not in sync (the conductor answers within milliseconds, and a
# restarted one within about a second).
UNSYNCED_AFTER_S = 2.0
SYNCING, SYNCED, UNSYNCED = "syncing", "synced", "unsynced"


def inherited_offset_ms(previous_stats: dict[str, Any]) -> float | None:
    """The estimate a predecessor's stats file holds, if it had measured (not merely started)."""
    sync = previous_stats.get("sync") or {}
    offset_ms, rtt_ms = sync.get("estimated_offset_ms"), sync.get("rtt_ms")
    if not (isinstance(offset_ms, (int, float)) and isinstance(rtt_ms, (int, float))):
        return None  # absent, null or not a number: nothing measured to inherit
    if math.isfinite(offset_ms) and math.isfinite(rtt_ms) and rtt_ms > 0:
        return float(offset_ms)
    return None


class ConductorClock:
    """Owns the ClockSync of one agent and decides what offset its beat clock uses."""

    def __init__(
        self, name: str, same_host: bool, seed_ms: float | None = None, *, target: str = "the conductor"
    ) -> None:
        self.name = name
        self.target = target  # where the pings go, as the warning names it ("192.0.2.10:57120")
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
        self.state = SYNCING  # until the first pong, or UNSYNCED_AFTER_S without one
        self._since: float | None = None  # when the wait for a pong began: the first ping or last pong
        self._unsynced_at: float | None = None
        self.unsynced_s = 0.0  # time spent unsynced before the current spell (see `unsynced_total_s`)
        self.pongs = 0

    def check(self, now: float) -> str:
        """Update the sync state at `now`; returns it. A change to `unsynced` is warned once.

        Called with every ping, so an agent that hears nothing notices within a ping period of the
        deadline, however long it then stays unanswered.
        """
        if self._since is None:
            self._since = now
        if self.same_host:
            # Its offset is exactly 0 whatever the pongs say: silence means a conductor restarting,
            # which the launcher reports, not a clock gone wrong.
            return self.state
        if self.state != UNSYNCED and now - self._since >= UNSYNCED_AFTER_S:
            self.state, self._unsynced_at = UNSYNCED, now
            heard = "no pong yet" if self.pongs == 0 else f"no pong for {now - self._since:.1f} s"
            keeps = (
                f"playing on its last offset ({self.offset_s() * 1000.0:+.3f} ms)"
                if self.sync.synced
                else "playing on its own clock"
            )
            log.warning("%s: unsynced: %s from the conductor's clock at %s; %s, still pinging",
                        self.name, heard, self.target, keeps)  # fmt: skip
        return self.state

    def unsynced_total_s(self, now: float) -> float:
        """Seconds spent unsynced so far, the current spell included."""
        spell = now - self._unsynced_at if self._unsynced_at is not None else 0.0
        return self.unsynced_s + max(0.0, spell)

    def _heard(self, received_at: float) -> None:
        self.pongs += 1
        self._since = received_at
        if self.state == SYNCED:
            return
        if self.state == UNSYNCED:
            if self._unsynced_at is not None:
                self.unsynced_s += max(0.0, received_at - self._unsynced_at)
            self._unsynced_at = None
            log.warning("%s: synced again with the conductor's clock at %s (offset %+.3f ms)",
                        self.name, self.target, self.offset_s() * 1000.0)  # fmt: skip
        else:
            log.info("%s: synced with the conductor's clock at %s", self.name, self.target)
        self.state = SYNCED

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
        self._heard(received_at)
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
            now = clock()
            self.check(now)
            await publish(SyncPing(self.name, n, now))
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
