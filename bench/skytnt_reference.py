"""SkyTNT's own sampling step (app_onnx.generate, SKYTNT_FORMAT.md §9), restated as plain numpy.

Kept apart from the product's sampler on purpose: benchmarks race against it and tests compare the
product's `skytnt` sampling mode to it, so it must stay a faithful, independent restatement.
"""

from __future__ import annotations

import numpy as np


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    x_max = np.amax(x, axis=axis, keepdims=True)
    e = np.exp(x - x_max)
    return e / np.sum(e, axis=axis, keepdims=True)


def sample_top_p_k(probs: np.ndarray, p: float, k: int, generator: np.random.RandomState) -> np.ndarray:
    """SkyTNT's draw: sort, cut where the mass before an id exceeds p, keep k, renormalise, choose."""
    probs_idx = np.argsort(-probs, axis=-1)
    probs_sort = np.take_along_axis(probs, probs_idx, -1)
    probs_sum = np.cumsum(probs_sort, axis=-1)
    probs_sort[probs_sum - probs_sort > p] = 0.0
    mask = np.zeros(probs_sort.shape[-1])
    mask[:k] = 1
    probs_sort = probs_sort * mask
    probs_sort /= np.sum(probs_sort, axis=-1, keepdims=True)
    shape = probs_sort.shape
    flat_p, flat_i = probs_sort.reshape(-1, shape[-1]), probs_idx.reshape(-1, shape[-1])
    return np.stack([generator.choice(i, p=pv) for pv, i in zip(flat_p, flat_i, strict=True)]).reshape(
        *shape[:-1])
