"""Clock-offset estimation by ping/pong, NTP-style, with time injected so tests drive it by hand.

A sample's offset is exact when the two legs of its round trip are equal and off by at most rtt/2
otherwise. Two things make legs unequal. Queueing (a stalled TCP stream through the broker, a busy
receiver) only ever adds delay, to some messages, often on one leg more than the other. Jitter (a
Wi-Fi link; the namespace rig of bench/bad_network.py: 5 ± 2 ms each way) spreads both legs alike,
and then the difference of the legs is independent of their sum, so the fastest sample is no better
than any other: only averaging helps, as 1/sqrt(n), with n in the thousands for a tenth of a
millisecond. So each leg is kept on its own (NTP's t2 - t1 and t4 - t3, each the offset plus or minus
that leg's delay) over a long window, and the estimate is half the difference of the means of each
leg's faster half. Queueing that hits fewer than half of a leg's messages is left out; symmetric
jitter averages away (the faster halves of two equal spreads have equal means), at a cost of a few
percent against the plain mean. The estimate is smoothed with a bounded step once the window is
full, so one sample cannot jerk the beat an agent plays on, yet a clock that truly jumped (a
restarted conductor) is re-locked after a few samples that agree.

The window is 4096 samples, about 40 s at the agents' 100 pings a second: two machines' crystals
drifting apart by 10 ppm move the offset 0.2 ms in that time, so the estimate lags by about 0.1 ms.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

REJECT_NON_FINITE = "non_finite"
REJECT_NEGATIVE_RTT = "negative_rtt"
REJECT_RTT_TOO_LARGE = "rtt_too_large"
REJECT_REPLY_BEFORE_RECEIPT = "reply_before_receipt"
# The share of each leg's fastest one-way delays that is averaged (see the module docstring).
FAST_SHARE = 0.5
# A seeded estimate (a restarted agent's predecessor's) counts as this many samples until the window
# is full: a restart is in time at its first pong, and fresh samples still take over.
SEED_WEIGHT = 500


def _check_time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


@dataclass(frozen=True, slots=True)
class ClockMap:
    """Local ↔ conductor time as a plain value, kept apart from the measurement that produced it.

    `remote = local + offset_s`. The default 0.0 is right for processes on one host, which share
    the monotonic clock.
    """

    offset_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "offset_s", _check_time("offset_s", self.offset_s))
        if not math.isfinite(self.offset_s):
            raise ValueError(f"offset_s: {self.offset_s} is not finite")

    def to_remote(self, local_t: float) -> float:
        return local_t + self.offset_s

    def to_local(self, remote_t: float) -> float:
        return remote_t - self.offset_s


@dataclass(frozen=True, slots=True)
class SyncSample:
    """One ping/pong: local send time, the conductor's clock when the ping arrived, local receive time,
    and the conductor's clock when the pong left (NTP's t1, t2, t4, t3; t3 = t2 when not given)."""

    t_send_local: float
    t_remote: float
    t_recv_local: float
    t_remote_reply: float | None = None

    @property
    def t_remote_sent(self) -> float:
        return self.t_remote if self.t_remote_reply is None else self.t_remote_reply

    @property
    def rtt_s(self) -> float:
        """Time on the wire only: the conductor's own delay between receipt and reply is taken out."""
        return (self.t_recv_local - self.t_send_local) - (self.t_remote_sent - self.t_remote)

    @property
    def offset_s(self) -> float:
        """Exact if both legs took equally long; otherwise wrong by half their difference (≤ rtt/2)."""
        return ((self.t_remote - self.t_send_local) + (self.t_remote_sent - self.t_recv_local)) / 2


class ClockSync:
    """Estimates `offset_s` (conductor clock minus local clock) from ping/pong samples.

    Not thread-safe: one owner (the agent's sync loop) feeds it and publishes `clock_map` values,
    which are immutable and safe to hand to the timing thread.
    """

    def __init__(
        self,
        window: int = 4096,
        max_rtt_s: float = 1.0,
        smoothing: float = 0.25,
        max_step_s: float = 0.002,
        relock_after: int = 3,
        relock_margin_s: float = 0.005,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int):
            raise TypeError(f"window: expected int, got {type(window).__name__}")
        if window < 1:
            raise ValueError(f"window: {window} is below 1")
        if isinstance(relock_after, bool) or not isinstance(relock_after, int):
            raise TypeError(f"relock_after: expected int, got {type(relock_after).__name__}")
        if relock_after < 1:
            raise ValueError(f"relock_after: {relock_after} is below 1")
        limits = {"max_rtt_s": max_rtt_s, "max_step_s": max_step_s, "relock_margin_s": relock_margin_s}
        for name, value in limits.items():
            if not math.isfinite(_check_time(name, value)) or value <= 0:
                raise ValueError(f"{name}: {value} must be a positive finite number")
        if not 0 < _check_time("smoothing", smoothing) <= 1:
            raise ValueError(f"smoothing: {smoothing} is outside (0, 1]")
        self._window: deque[SyncSample] = deque(maxlen=window)
        # The same samples as arrays (a ring, `_head` is the next slot), so averaging thousands of
        # them costs tens of microseconds per pong rather than a Python loop. The legs are stored
        # relative to `_base` (the first sample's offset), so offsets of 1e5 s keep their microseconds.
        self._rtts = np.empty(window)
        self._up = np.empty(window)  # t2 - t1 - base: the out leg's delay, plus the offset error
        self._down = np.empty(window)  # t4 - t3 + base: the return leg's delay, minus the offset error
        self._max_rtt_s = float(max_rtt_s)
        self._smoothing = float(smoothing)
        self._max_step_s = float(max_step_s)
        self._relock_after = relock_after
        self._relock_margin_s = float(relock_margin_s)
        self._rejections: Counter[str] = Counter()
        self.reset()

    def reset(self) -> None:
        """Forget every sample (keep rejection counts): call when the conductor's epoch changes."""
        self._window.clear()
        self._head = 0
        self._base = 0.0
        self._offset_s = 0.0
        self._best_rtt: float | None = None  # the window's smallest round trip
        self._pending: list[SyncSample] = []
        self._prior: float | None = None  # a seeded offset, blended in while the window fills
        self._accepted = 0
        self._relocks = 0

    def seed(self, offset_s: float) -> None:
        """Start from a known estimate: a restarted agent on the same machine inherits its
        predecessor's, since neither clock moved. Samples that contradict it re-lock as usual."""
        offset_s = _check_time("offset_s", offset_s)
        if not math.isfinite(offset_s):
            raise ValueError(f"offset_s: {offset_s} is not finite")
        self._prior = self._offset_s = offset_s

    def add_sample(
        self, t_send_local: float, t_remote: float, t_recv_local: float, t_remote_reply: float | None = None
    ) -> bool:
        """Feed one ping/pong; False (and a counted reason) when the sample is absurd."""
        sample = SyncSample(
            _check_time("t_send_local", t_send_local),
            _check_time("t_remote", t_remote),
            _check_time("t_recv_local", t_recv_local),
            None if t_remote_reply is None else _check_time("t_remote_reply", t_remote_reply),
        )
        reason = self._rejection(sample)
        if reason is not None:
            self._rejections[reason] += 1
            return False
        self._accepted += 1
        if (self._best_rtt is not None or self._prior is not None) and self._contradicts(sample):
            # Honest clocks cannot produce this; several in a row mean the conductor's clock moved.
            self._pending.append(sample)
            if len(self._pending) < self._relock_after:
                return True
            self._relocks += 1
            self._prior = None
            self._window.clear()
            self._head = 0
            for pending in self._pending:
                self._remember(pending)
            self._best_rtt = None
        else:
            self._remember(sample)
        self._pending.clear()
        best_rtt = float(self._rtts[: len(self._window)].min())
        target = self._fast_halves_offset()
        if self._prior is not None:
            if self._accepted > (self._window.maxlen or 1):
                self._prior = None  # a full window of its own: the smoothing below takes over
            else:
                n = len(self._window)
                target = (SEED_WEIGHT * self._prior + n * target) / (SEED_WEIGHT + n)
        if (
            self._best_rtt is None
            or self._accepted <= (self._window.maxlen or 1)
            or best_rtt < 0.5 * self._best_rtt
        ):
            # While the first window fills (the start-up burst), or when a far tighter sample arrives,
            # the pooled estimate is simply better information: take it rather than creep towards it.
            self._offset_s = target
        else:
            step = self._smoothing * (target - self._offset_s)
            self._offset_s += max(-self._max_step_s, min(self._max_step_s, step))
        self._best_rtt = best_rtt
        return True

    def _remember(self, sample: SyncSample) -> None:
        if not self._window:
            self._base = sample.offset_s
        self._window.append(sample)
        self._rtts[self._head] = sample.rtt_s
        self._up[self._head] = (sample.t_remote - sample.t_send_local) - self._base
        self._down[self._head] = (sample.t_recv_local - sample.t_remote_sent) + self._base
        self._head = (self._head + 1) % len(self._rtts)

    def _fast_halves_offset(self) -> float:
        """Half the difference of the mean of each leg's faster half (see the module docstring).

        Every leg delay lies between 0 and its sample's round trip, so the result is within half the
        window's longest round trip of the truth, and within half of the round trips that more than
        half of the window keeps under.
        """
        n = len(self._window)
        k = max(1, int(FAST_SHARE * n))
        up = np.partition(self._up[:n], k - 1)[:k]
        down = np.partition(self._down[:n], k - 1)[:k]
        return self._base + (float(up.mean()) - float(down.mean())) / 2.0

    def _rejection(self, sample: SyncSample) -> str | None:
        if not all(math.isfinite(t) for t in (sample.t_send_local, sample.t_remote, sample.t_recv_local,
                                              sample.t_remote_sent)):
            return REJECT_NON_FINITE
        if sample.t_remote_sent < sample.t_remote:
            return REJECT_REPLY_BEFORE_RECEIPT
        if sample.rtt_s < 0:
            return REJECT_NEGATIVE_RTT
        if sample.rtt_s > self._max_rtt_s:
            return REJECT_RTT_TOO_LARGE
        return None

    def _contradicts(self, sample: SyncSample) -> bool:
        """True when the sample proves the estimate wrong by more than the margin.

        The true offset lies within rtt/2 of every honest sample's offset.
        """
        return abs(sample.offset_s - self._offset_s) > sample.rtt_s / 2 + self._relock_margin_s

    @property
    def synced(self) -> bool:
        return self._best_rtt is not None

    @property
    def offset_s(self) -> float:
        """Conductor clock minus local clock; 0.0 before the first sample (right on one host)."""
        return self._offset_s

    @property
    def rtt_s(self) -> float:
        """Round trip of the sample the estimate trusts; inf before the first sample."""
        return math.inf if self._best_rtt is None else self._best_rtt

    @property
    def uncertainty_s(self) -> float:
        """Worst-case error of the trusted sample's offset (rtt/2), before smoothing lag."""
        return self.rtt_s / 2

    @property
    def samples(self) -> tuple[SyncSample, ...]:
        return tuple(self._window)

    @property
    def accepted(self) -> int:
        return self._accepted

    @property
    def relocks(self) -> int:
        return self._relocks

    @property
    def rejections(self) -> Mapping[str, int]:
        return dict(self._rejections)

    @property
    def clock_map(self) -> ClockMap:
        return ClockMap(self._offset_s)

    def to_remote(self, local_t: float) -> float:
        return local_t + self._offset_s

    def to_local(self, remote_t: float) -> float:
        return remote_t - self._offset_s
