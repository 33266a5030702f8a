"""SkyTNT's own sampling step and generate() loop (app_onnx.generate), restated.

Kept apart from the product's sampler on purpose: benchmarks race against it and tests compare the
product's `skytnt` sampling mode to it, so it must stay a faithful, independent restatement.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from agents.model.vocab import VOCAB_V2 as V


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


class SkytntLoop:
    """The app's generate() loop (KV-cache version) with plain ``session.run``, numpy arrays fed back, a
    Python-built int64 mask per position and ``np.concatenate`` growth: what bench/model_speed races.
    Masks are SkyTNT's plus the restrictions §9.1 allows: notes only, one track and channel, a pitch
    range."""

    def __init__(self, folder: Path, *, track: int, channel: int, pitch_range: tuple[int, int]) -> None:
        self.track, self.channel, self.pitch_range = track, channel, pitch_range
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.base = ort.InferenceSession(str(folder / "onnx/model_base.onnx"), opts)
        self.token = ort.InferenceSession(str(folder / "onnx/model_token.onnx"), opts)
        self.e = self.base.get_outputs()[0].shape[2]

    @staticmethod
    def _empty(s: ort.InferenceSession) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
                for i in s.get_inputs() if i.name.startswith("past")}

    def generate(self, prompt: np.ndarray, n: int, seed: int, p: Any) -> tuple[np.ndarray, list]:
        """New rows and the CPU seconds (this thread's) each event took; ``p`` carries temperature,
        top_p and top_k."""
        rng = np.random.RandomState(seed)
        input_tensor, past, past_len = prompt[None], self._empty(self.base), 0
        cur_len, max_len, times = len(prompt), len(prompt) + n, []
        present_to_past = [o.name.replace("present", "past_key_values") for o in self.base.get_outputs()[1:]]
        tok_names = list(self._empty(self.token))
        while cur_len < max_len:
            t0 = time.thread_time()
            outs = self.base.run(None, {"x": input_tensor[:, past_len:], **past})
            hidden, past = outs[0][:, -1:], dict(zip(present_to_past, outs[1:], strict=True))
            next_token_seq, tpast, name = np.empty((1, 0), dtype=np.int64), self._empty(self.token), ""
            for i in range(8):
                mask = np.zeros((1, V.vocab_size), dtype=np.int64)
                if i == 0:
                    mask_ids = [V.event_ids["note"]]  # §9.1 extension: notes only
                else:
                    param = V.events[name][i - 1]
                    base, size = V.param_base[param], V.param_size[param]
                    mask_ids = list(range(base, base + size))
                    if param == "channel":
                        mask_ids = [c for c in mask_ids if c - base == self.channel]
                    elif param == "track":
                        mask_ids = [base + self.track]
                    elif param == "pitch":
                        mask_ids = [base + q for q in range(self.pitch_range[0], self.pitch_range[1] + 1)]
                mask[0, mask_ids] = 1
                mask = mask[:, None]
                if i == 0:
                    feeds = {"x": next_token_seq, "hidden": hidden}
                else:
                    feeds = {"x": next_token_seq[:, -1:], "hidden": np.zeros((1, 0, self.e), np.float32)}
                y, *presents = self.token.run(None, {**feeds, **tpast})
                tpast = dict(zip(tok_names, presents, strict=True))
                scores = softmax(y[:, -1:] / p.temperature, -1) * mask
                sample = sample_top_p_k(scores, p.top_p, p.top_k, rng)
                if i == 0:
                    next_token_seq, name = sample, V.event_names[int(sample.item())]
                else:
                    next_token_seq = np.concatenate([next_token_seq, sample], axis=1)
                    if len(V.events[name]) == i:
                        break
            next_token_seq = np.pad(next_token_seq, ((0, 0), (0, 8 - next_token_seq.shape[-1])))
            input_tensor = np.concatenate([input_tensor, next_token_seq[None]], axis=1)
            past_len, cur_len = cur_len, cur_len + 1
            times.append(time.thread_time() - t0)
        return input_tensor[0, len(prompt):], times
