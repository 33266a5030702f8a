"""Lateness of every note sent (actual minus due), kept in fixed memory for a set of any length."""

from __future__ import annotations

import numpy as np

__all__ = ["LatenessStats"]


class LatenessStats:
    """Lateness of every send (actual - due) in a bounded ring buffer, so a long set uses fixed memory.

    Written by one thread, read by others without a lock: a reader may miss the sample being written,
    which does not matter for percentiles, and the writer (the timing thread) never waits for a reader.
    """

    def __init__(self, capacity: int = 65536, late_ms: float = 5.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: must be >= 1, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float64)
        self._count = 0
        self._late = 0
        self.late_ms = late_ms

    def add(self, lateness_s: float) -> None:
        ms = lateness_s * 1000.0
        self._buf[self._count % self._buf.shape[0]] = ms
        if ms > self.late_ms:
            self._late += 1
        self._count += 1

    def values_ms(self) -> np.ndarray:
        """The retained window (at most `capacity` latest sends), oldest first."""
        n, cap = self._count, self._buf.shape[0]
        if n <= cap:
            return self._buf[:n].copy()
        i = n % cap
        return np.concatenate((self._buf[i:], self._buf[:i]))

    def summary(self) -> dict[str, float | int]:
        """p50/p99/max over the retained window (ms); count and late_count over the whole run."""
        v = self.values_ms()
        if v.size == 0:
            p50 = p99 = mx = 0.0
        else:
            p50, p99 = (float(x) for x in np.percentile(v, (50.0, 99.0)))
            mx = float(v.max())
        return {"p50": p50, "p99": p99, "max": mx, "count": self._count, "late_count": self._late}
