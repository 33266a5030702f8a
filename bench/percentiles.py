"""The p50/p99/max summary every latency bench reports, so their tables and JSON read alike."""

from __future__ import annotations

import math

import numpy as np


def pct(values: np.ndarray) -> dict[str, float]:
    """Count, p50, p99 and max of ``values``; NaN for each (count 0) when there are none."""
    if values.size == 0:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    p50, p99 = np.percentile(values, (50, 99))
    return {"count": int(values.size), "p50": float(p50), "p99": float(p99), "max": float(values.max())}


def nearest_rank(values: list[float], q: float) -> float:
    """The value at rank ``q`` (0..1) of the sorted values, no interpolation (NaN when empty): what
    the listening benches quote as p50/p90, so a figure is always one that was measured."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")
