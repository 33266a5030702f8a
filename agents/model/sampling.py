"""Drawing one token from a model's logits under an allowed-id mask, as SkyTNT's app draws it.

Both modes implement SkyTNT's sampling semantics (docs/engines.md): softmax of ``logits / T`` over
the *full* vocabulary, the allowed mask applied by multiplication **without renormalising** (so top-p
compares against mass that includes the disallowed ids), nucleus rule ``(c - p) > top_p`` on the
descending order, then the first ``top_k``, renormalise, one ``rng.choice``. A user who tuned
temperature / top-p / top-k in SkyTNT's app gets the same behaviour here.

``mode="skytnt"`` runs SkyTNT's own numpy operations on full-vocabulary arrays, so for the same
``np.random.RandomState`` and logits it returns the same token, bit for bit (tests hold it to a
re-implementation of the loop). ``mode="fast"`` computes the same distribution on the allowed ids
only: the full-vocab work is one exp and one sum into preallocated buffers (the softmax normaliser
needs them), then a stable sort of the allowed ids only instead of an argsort of the whole vocabulary,
and the draw is the same single ``random_sample()`` that ``choice`` consumes.
What can differ: the last bits of the renormalising sums (pairwise over V vs over k), and the order
of exactly equal probabilities, so a draw that falls within ~1e-16 of a bin edge, or a tie, may pick
another token; the RNG stream stays aligned either way (one draw per token in both modes).

When the model's token graph computes the softmax itself (a lean export on the shared cache,
ModelRuntime.probs), fast mode takes the allowed ids' probabilities from it and does no full-vocabulary
work at all; ORT's vectorised exp rounds differently from numpy's in the last float32 bits (~1e-7),
so there a draw within that distance of a bin edge may differ.

Degenerate case, both modes: when every allowed probability underflows to 0 (the model puts all
mass on disallowed ids), SkyTNT's ``choice`` would raise on NaNs; here the best allowed logit wins
(one draw is still consumed, to keep the stream aligned).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MODES", "Sampler"]

MODES = ("fast", "skytnt")
_BIAS_LIMIT = 40.0  # bias / T above which an underflowed probability could matter (e**40 ~ 2e17)
_TINY = 1e-30  # float32 probabilities below this are near the subnormal range
_FULL_SORT = 256  # allowed ids up to which one stable sort is the fastest ranking (_top_k)


class Sampler:
    """One RNG and the work buffers for one vocabulary; not thread-safe (one per generator)."""

    def __init__(self, vocab_size: int, *, seed: int | None = None, mode: str = "fast",
                 rng: np.random.RandomState | None = None) -> None:
        """``rng`` (or ``seed``) is a legacy RandomState because that is what SkyTNT's app draws from;
        a ``Generator``-style RNG would give other tokens for the same seed."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}")
        self.mode = mode
        self.vocab_size = vocab_size
        self.rng = rng if rng is not None else np.random.RandomState(seed)
        self._x = np.empty(vocab_size, np.float32)  # biased, scaled, exponentiated logits
        self._q = np.empty(vocab_size, np.float32)  # allowed probabilities (float32 stage)
        self._mask = np.zeros(vocab_size, np.int64)  # skytnt mode: SkyTNT's int64 0/1 mask

    def forced(self, token: int) -> int:
        """A position with one allowed id: no logits needed, but one draw keeps the RNG in step with
        SkyTNT's loop, which samples (and so draws) at every position."""
        self.rng.random_sample()
        return int(token)

    def sample(self, logits: np.ndarray, allowed: np.ndarray, *, temperature: float = 1.0,
               top_p: float = 0.98, top_k: int = 20, bias: np.ndarray | None = None,
               probs: np.ndarray | None = None) -> int:
        """One token id from ``allowed`` (int64 ids, unique). ``bias`` (one float per allowed id) is
        added to the raw logits before the temperature, i.e. it is a logit bias scaled like the
        logits themselves. ``probs``, when the model computed it, is ``softmax(logits /
        temperature)`` over the whole vocabulary (ModelRuntime.probs): fast mode then reads the
        allowed ids' probabilities from it instead of normalising 3406 logits itself. Both arrays
        are only read."""
        n = len(allowed)
        if n == 1:
            return self.forced(int(allowed[0]))
        if top_k <= 0 or top_k > n:
            top_k = n  # 0 keeps every allowed token: the candidates are the allowed ids themselves
        lo = int(allowed[0])
        # every mask the decoder builds is one block of consecutive ids: a slice view then replaces
        # fancy indexing (a gather, a scatter-add) on the allowed ids
        block = slice(lo, lo + n) if int(allowed[-1]) - lo == n - 1 else None
        if probs is not None and self.mode == "fast":
            token = self._sample_probs(probs, allowed, block, temperature, top_p, top_k, bias)
            if token >= 0:
                return token  # else: float32 probabilities cannot carry this draw; the logits can
        x = self._x
        if bias is None and temperature != 1.0 and self.mode == "fast":
            np.divide(logits, np.float32(temperature), out=x)  # copy and scale in one pass
            temperature = 1.0
        else:
            np.copyto(x, logits)
            if bias is not None:
                if block is not None:
                    x[block] += bias
                else:
                    x[allowed] += bias
        if self.mode == "skytnt":
            token = self._sample_skytnt(x, allowed, temperature, top_p, top_k)
        else:
            token = self._sample_fast(x, allowed, block, temperature, top_p, top_k)
        return token if token >= 0 else self._best_allowed(logits, allowed, bias)

    def _best_allowed(self, logits: np.ndarray, allowed: np.ndarray, bias: np.ndarray | None) -> int:
        """Every allowed probability underflowed: the best allowed (biased) logit, for one draw."""
        self.rng.random_sample()
        best = np.take(logits, allowed) + (0.0 if bias is None else bias)
        return int(allowed[int(np.argmax(best))])

    # ---- SkyTNT's operations, on full-vocabulary arrays ---------------------------------------
    # The two modes return -1 when every allowed probability underflowed to 0.
    def _sample_skytnt(self, logits: np.ndarray, allowed: np.ndarray, temp: float, top_p: float,
                       top_k: int) -> int:
        mask = self._mask
        mask[allowed] = 1
        try:
            x = logits / temp
            e = np.exp(x - np.amax(x, axis=-1, keepdims=True))
            scores = e / np.sum(e, axis=-1, keepdims=True) * mask  # float32 * int64 -> float64
        finally:
            mask[allowed] = 0
        if not scores.sum() > 0:
            return -1
        probs_idx = np.argsort(-scores, axis=-1)
        probs_sort = np.take_along_axis(scores, probs_idx, -1)
        probs_sum = np.cumsum(probs_sort, axis=-1)
        probs_sort[probs_sum - probs_sort > top_p] = 0.0
        keep = np.zeros(probs_sort.shape[-1])
        keep[:top_k] = 1
        probs_sort = probs_sort * keep
        probs_sort /= np.sum(probs_sort, axis=-1, keepdims=True)
        return int(self.rng.choice(probs_idx, p=probs_sort))

    # ---- the same distribution, on the allowed ids only -----------------------------------------
    def _sample_fast(self, x: np.ndarray, allowed: np.ndarray, block: slice | None, temp: float,
                     top_p: float, top_k: int) -> int:
        """Full-vocabulary work is only what the softmax normaliser needs (max, exp, sum); the allowed
        ids are ranked by one stable sort of their negated weights (largest first, ties by id, as
        SkyTNT's ``argsort(-scores)`` ranks a short run of ties), and the first ``top_k`` go through the
        nucleus rule and the draw as Python floats: with k ~ 20 a loop is cheaper than the half-dozen
        numpy calls it replaces, and float64 sums in the same order give the same numbers as
        ``np.cumsum``."""
        if temp != 1.0:
            np.divide(x, np.float32(temp), out=x)
        np.subtract(x, np.maximum.reduce(x), out=x)
        np.exp(x, out=x)
        z = np.add.reduce(x)  # float32 over the full vocabulary, pairwise, as SkyTNT's softmax sums
        n = len(allowed)
        q = x[block] if block is not None else np.take(x, allowed, out=self._q[:n])
        top = _top_k(q, top_k)
        vals = np.divide(q[top], z).tolist()  # float32 probabilities, as SkyTNT's, then float64
        return self._draw(vals, top, allowed, top_p)

    def _sample_probs(self, probs: np.ndarray, allowed: np.ndarray, block: slice | None, temp: float,
                      top_p: float, top_k: int, bias: np.ndarray | None) -> int:
        """The same distribution from a full-vocabulary softmax the model computed. A bias moves mass
        between the allowed ids and the rest: with w = exp(bias / T), softmax((logits + bias) / T) is
        p * w / (1 + sum(p * (w - 1))) over the allowed ids, the sum over them alone (float64).

        Returns -1 (draw nothing) where float32 probabilities cannot carry the draw and the caller must
        use the logits: a bias above 40 T could lift an id whose probability underflowed to 0 (or
        overflow w), and a best allowed probability below 1e-30 has lost its float32 precision (the
        model put its mass on disallowed ids)."""
        if bias is not None and float(bias.max()) > _BIAS_LIMIT * temp:
            return -1
        n = len(allowed)
        p = probs[block] if block is not None else np.take(probs, allowed, out=self._q[:n])
        if bias is not None:
            w = np.exp(bias / temp, dtype=np.float64)
            q = p * w
            q /= 1.0 + float(np.dot(p, w - 1.0))
            p = q
        top = _top_k(p, top_k)
        vals = p[top].tolist()
        if not vals[0] >= _TINY:
            return -1
        return self._draw(vals, top, allowed, top_p)

    def _draw(self, vals: list[float], top: np.ndarray, allowed: np.ndarray, top_p: float) -> int:
        """Nucleus over the ranked candidates ``vals`` (largest first), then one draw, as choice();
        -1 (no draw) when even the best is 0."""
        if not vals[0] > 0:
            return -1
        kept, c = 0, 0.0
        for v in vals:  # nucleus: keep while the mass before this candidate is <= top_p
            s = c + v
            if s - v > top_p:
                break
            kept += 1
            c = s
        u = self.rng.random_sample()
        total = c  # the kept values summed left to right: the last value of choice()'s cumsum
        c = 0.0
        for i in range(kept):
            c += vals[i]
            if c / total > u:
                return int(allowed[int(top[i])])
        return int(allowed[int(top[kept - 1])])


def _top_k(p: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values of `p`, largest first, ties by index: exactly the head of a
    stable argsort of -p, the ranking the sampler is held to. Past a few hundred ids (a free run's
    2048 durations) a partial sort picks the candidates first: 20 µs instead of a 115 µs full sort."""
    n = len(p)
    if n <= _FULL_SORT or 4 * k >= n:
        return np.negative(p).argsort(kind="stable")[:k]
    kth = p[np.argpartition(np.negative(p), k - 1)[:k]].min()
    candidates = np.flatnonzero(p >= kth)  # the head of the full order, ties at kth included, in id order
    return candidates[np.negative(p[candidates]).argsort(kind="stable")[:k]]
