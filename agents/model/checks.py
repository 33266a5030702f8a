"""Argument checks the model side shares: a wrong type or an absurd value is a one-line error naming
the argument, raised where the value comes in, so the per-event code can trust it."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["finite", "int_in", "token_batch"]


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


def token_batch(rows: object, ndim_one: int, field: str, batch: int, vocab_size: int) -> np.ndarray:
    """Token ids as a (batch, ...) int64 array: one row set ((N, 8) rows, or a (j,) prefix: ndim_one
    2 or 1) broadcast to the batch, or one per batch row; a wrong shape, dtype or id is a ValueError
    naming `field`."""
    a = np.asarray(rows)
    if a.size == 0:
        a = a.astype(np.int64)  # `[]` arrives as float64
    if a.ndim == ndim_one:
        a = a[None]
    if a.ndim != ndim_one + 1 or a.shape[0] not in (1, batch):
        raise ValueError(f"{field}: expected shape {'(N, 8)' if ndim_one == 2 else '(j,)'} or with a "
                         f"leading batch of {batch}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{field}: token ids must be integers, got {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= vocab_size):
        raise ValueError(f"{field}: token ids must lie in 0..{vocab_size - 1}")
    return np.ascontiguousarray(np.broadcast_to(a, (batch, *a.shape[1:])), dtype=np.int64)
