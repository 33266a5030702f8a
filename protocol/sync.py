"""Clock-offset estimation by ping/pong, NTP-style, with time injected so tests drive it by hand.

A sample's offset is exact when the two legs of its round trip are equal and off by at most rtt/2
otherwise, so the sample with the smallest round trip among the recent ones is the most trustworthy;
queueing delay only ever adds. But when the legs' delays jitter symmetrically (measured in the
namespace rig, bench/bad_network.py: 5 ± 2 ms per link), the difference of the legs is independent
of their sum, so the fastest sample is no better than any other: there only averaging helps. So the
estimate is the mean offset of every sample in a long window whose round trip is close to the best
(at most POOL_RTT_FACTOR × the best, and no longer than the newest samples' round trips): queued
samples are still left out, and jitter averages away as 1/sqrt(n). The estimate is smoothed with a
bounded step so one lucky or unlucky sample cannot jerk the beat an agent plays on, yet a clock that
truly jumped (a restarted conductor) is re-locked after a few samples that all agree on the jump.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

REJECT_NON_FINITE = "non_finite"
REJECT_NEGATIVE_RTT = "negative_rtt"
REJECT_RTT_TOO_LARGE = "rtt_too_large"
# Samples pooled into the mean: round trip at most this many times the best one in the window ...
POOL_RTT_FACTOR = 3.0
# ... and no longer than the longest of this many newest ones, so old slow samples fall out at once.
POOL_RECENT = 16


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
    """One ping/pong: local send time, the conductor's clock when it answered, local receive time."""

    t_send_local: float
    t_remote: float
    t_recv_local: float

    @property
    def rtt_s(self) -> float:
        return self.t_recv_local - self.t_send_local

    @property
    def offset_s(self) -> float:
        """Exact if both legs took equally long; otherwise wrong by half their difference (≤ rtt/2)."""
        return self.t_remote - (self.t_send_local + self.t_recv_local) / 2


class ClockSync:
    """Estimates `offset_s` (conductor clock minus local clock) from ping/pong samples.

    Not thread-safe: one owner (the agent's sync loop) feeds it and publishes `clock_map` values,
    which are immutable and safe to hand to the timing thread.
    """

    def __init__(
        self,
        window: int = 512,
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
        self._offset_s = 0.0
        self._best: SyncSample | None = None
        self._pending: list[SyncSample] = []
        self._accepted = 0
        self._relocks = 0

    def add_sample(self, t_send_local: float, t_remote: float, t_recv_local: float) -> bool:
        """Feed one ping/pong; False (and a counted reason) when the sample is absurd."""
        sample = SyncSample(
            _check_time("t_send_local", t_send_local),
            _check_time("t_remote", t_remote),
            _check_time("t_recv_local", t_recv_local),
        )
        reason = self._rejection(sample)
        if reason is not None:
            self._rejections[reason] += 1
            return False
        self._accepted += 1
        if self._best is not None and self._contradicts(sample):
            # Honest clocks cannot produce this; several in a row mean the conductor's clock moved.
            self._pending.append(sample)
            if len(self._pending) < self._relock_after:
                return True
            self._relocks += 1
            self._window.clear()
            self._window.extend(self._pending)
            self._best = None
        else:
            self._window.append(sample)
        self._pending.clear()
        best = min(self._window, key=lambda s: s.rtt_s)
        target = self._pooled_offset(best)
        if (
            self._best is None
            or self._accepted <= (self._window.maxlen or 1)
            or best.rtt_s < 0.5 * self._best.rtt_s
        ):
            # While the first window fills (the start-up burst), or when a far tighter sample arrives,
            # the pooled estimate is simply better information: take it rather than creep towards it.
            self._offset_s = target
        else:
            step = self._smoothing * (target - self._offset_s)
            self._offset_s += max(-self._max_step_s, min(self._max_step_s, step))
        self._best = best
        return True

    def _pooled_offset(self, best: SyncSample) -> float:
        """Mean offset of the samples whose round trip is near the best (see the module docstring).

        Every pooled sample is within rtt/2 of the truth, so the mean is too, within the pool's
        longest round trip over 2; with one fast sample among slow ones, it is that sample alone.
        """
        recent = max(s.rtt_s for s in itertools.islice(reversed(self._window), POOL_RECENT))
        limit = min(POOL_RTT_FACTOR * best.rtt_s, recent)
        pool = [s.offset_s for s in self._window if s.rtt_s <= limit]
        return math.fsum(pool) / len(pool)

    def _rejection(self, sample: SyncSample) -> str | None:
        if not all(math.isfinite(t) for t in (sample.t_send_local, sample.t_remote, sample.t_recv_local)):
            return REJECT_NON_FINITE
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
        return self._best is not None

    @property
    def offset_s(self) -> float:
        """Conductor clock minus local clock; 0.0 before the first sample (right on one host)."""
        return self._offset_s

    @property
    def rtt_s(self) -> float:
        """Round trip of the sample the estimate trusts; inf before the first sample."""
        return math.inf if self._best is None else self._best.rtt_s

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
