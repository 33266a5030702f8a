"""Argument checks the model side shares: a wrong type or an absurd value is a one-line error naming
the argument, raised where the value comes in, so the per-event code can trust it."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["finite", "int_in"]


def finite(name: str, value: object) -> float:
    """A real, finite number: a NaN knob would silently turn every probability into NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def int_in(name: str, value: object, lo: int, hi: int) -> int:
    """An int within bounds (numpy ints too; bools are not ints here), named in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return int(value)
