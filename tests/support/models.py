"""The committed tiny model exports and the checks the runtime tests share (no torch needed).

tiny_v2 and tiny_v2_legacy hold the same weights (seed 7) in the KV-cache and the legacy format, made by
`python -m training.export --random --seed 7 --layers 4 --width 16 --heads 2 --ffn 32 --token-layers 2
--token-heads 1 --token-ffn 16 --std 0.3 --config-name tiny-v2 --plain [--legacy] DIR`: the plain
TorchScript graph, as a user's SkyTNT export holds it (models/default is the lean build). tiny_v2_lean is
a lean build (`--seed 7 --layers 2 --width 32 --heads 2 --ffn 32 --token-layers 1 --token-heads 2
--token-ffn 16 --std 0.3 --config-name tiny-v2-lean`, no --plain; heads of 16 values, as the shared
cache's kernel needs), for the runtime's shared-cache rewrite (agents/model/fuse_attention.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MODELS = Path(__file__).parent.parent / "fixtures" / "models"
TINY = MODELS / "tiny_v2"
LEGACY = MODELS / "tiny_v2_legacy"
LEAN = MODELS / "tiny_v2_lean"
TOL = 1e-4  # cached logits against a full recompute: float32 rounding of a different summation order
VOCAB = 3406


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random event rows of valid token ids; some events shorter than 8 tokens (pads are id 0)."""
    rows = rng.integers(3, VOCAB, (n, 8))
    rows[:, 6:] *= rng.integers(0, 2, (n, 1))
    return rows


def assert_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= TOL, np.abs(a - b).max()
