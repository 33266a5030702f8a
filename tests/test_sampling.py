"""The sampler alone, on random logits: its fast mode draws what SkyTNT's own operations draw (from
the logits or from a model-computed softmax, biased or not), and its ranking is a stable sort's."""

from __future__ import annotations

import numpy as np

from agents.model.sampling import Sampler, _top_k
from agents.model.vocab import VOCAB_V2

V = VOCAB_V2


def test_sampler_modes_agree_on_random_logits() -> None:
    g = np.random.default_rng(0)
    sky, fast = Sampler(V.vocab_size, seed=5, mode="skytnt"), Sampler(V.vocab_size, seed=5, mode="fast")
    blocks = [np.arange(3, 9), np.arange(9, 137), np.arange(153, 2201), np.arange(2345, 2473)]
    for i in range(400):
        logits = (g.standard_normal(V.vocab_size) * g.uniform(0.5, 4)).astype(np.float32)
        kw = {"temperature": [1.0, 0.7][i % 2], "top_p": [0.98, 0.5, 1.0][i % 3],
              "top_k": [20, 1, 128][i % 3]}
        allowed = blocks[i % 4]
        assert sky.sample(logits, allowed, **kw) == fast.sample(logits, allowed, **kw)
    # the same draws from a full-vocabulary softmax given with the logits (as a lean model's graph
    # computes it), biased or not
    sky, fast = Sampler(V.vocab_size, seed=6, mode="skytnt"), Sampler(V.vocab_size, seed=6, mode="fast")
    for i in range(400):
        logits = (g.standard_normal(V.vocab_size) * g.uniform(0.5, 4)).astype(np.float32)
        temperature = [1.0, 0.7][i % 2]
        scaled = logits / np.float32(temperature)
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        allowed = blocks[i % 4]
        bias = g.uniform(-3, 3, len(allowed)).astype(np.float32) if i % 3 else None
        kw = {"temperature": temperature, "top_p": [0.98, 0.5, 1.0][i % 3], "top_k": [20, 1, 128][i % 3],
              "bias": bias}
        assert sky.sample(logits, allowed, **kw) == fast.sample(logits, allowed, probs=probs, **kw)
    # A low temperature and a strong bias on ids whose float32 probability underflowed to 0 (the
    # model's mass is on a disallowed id): the softmax cannot carry that draw, the logits can.
    logits = np.full(V.vocab_size, -30.0, np.float32)
    logits[50] = 10.0
    allowed = np.arange(100, 104)
    logits[allowed] = [-6.0, -8.0, -12.0, -14.0]
    bias = np.array([0.0, 2.3, 8.0, 6.9], np.float32)
    scaled = logits / np.float32(0.2)
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    sky, fast = Sampler(V.vocab_size, seed=7, mode="skytnt"), Sampler(V.vocab_size, seed=7, mode="fast")
    for _ in range(50):
        kw = {"temperature": 0.2, "bias": bias}
        assert sky.sample(logits, allowed, **kw) == fast.sample(logits, allowed, probs=probs, **kw) == 102
    # every allowed probability underflows: the best allowed logit, not NaNs
    logits = np.zeros(V.vocab_size, np.float32)
    logits[10] = 500.0
    logits[2400] = 1.0
    for s in (sky, fast):
        assert s.sample(logits, np.array([2400, 2401]), top_k=20) == 2400


def test_top_k_ranks_as_a_stable_full_sort() -> None:
    """The partial sort the sampler uses past a few hundred ids gives exactly the head of a stable
    argsort, ties at the cut and runs of zeros included."""
    g = np.random.default_rng(3)
    for n in (10, 300, 2048):
        for case in range(40):
            p = g.random(n).astype(np.float32)
            if case % 4 == 1:
                p = np.round(p * 8) / 8  # many exact ties
            elif case % 4 == 2:
                p[g.random(n) < 0.99] = 0.0  # mostly zeros: fewer nonzero ids than k
            elif case % 4 == 3:
                p[:] = p[0]  # all equal
            for k in (1, 5, 20, 128):
                expected = np.negative(p).argsort(kind="stable")[:k]
                assert _top_k(p, k).tolist() == expected.tolist(), (n, case, k)
