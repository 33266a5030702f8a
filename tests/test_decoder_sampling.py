"""The decoder draws SkyTNT's own tokens (agents/model/decoder.py on the committed tiny random-weights
export, no torch): its skytnt mode step for step against SkyTNT's loop restated, its fast mode against
skytnt mode (also on a lean export's softmax), and bad arguments refused naming the field.

Sampling exactly as SkyTNT does is what lets a user's SkyTNT model sound here as it does in its app.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from support.models import LEAN, TINY
from support.tiny_generator import CHANNEL, TRACK, V, make

from agents.model.decoder import DecodeParams, Generator
from agents.model.live_context import LiveContext
from agents.model.prompt import setup_prefix
from agents.model.runtime import ModelRuntime
from bench.skytnt_reference import sample_top_p_k, softmax
from protocol.harmony import parse_chord


# ---- SkyTNT's generate(), restated from SkyTNT's app_onnx.py -------------------------
class SkytntLoop:
    """The app's loop with plain session.run and its KV cache; masks are SkyTNT's (patch/CC disabled,
    all other channels disabled) plus the two restrictions §9.1 allows: notes only and one track,
    and a pitch range. Re-runs the base from scratch when the context rewrote an earlier row."""

    def __init__(self, seed: int, pitch_range: tuple[int, int]) -> None:
        self.base = ort.InferenceSession(str(TINY / "onnx/model_base.onnx"))
        self.token = ort.InferenceSession(str(TINY / "onnx/model_token.onnx"))
        self.rng = np.random.RandomState(seed)
        self.pitch_range = pitch_range
        self.seq = np.zeros((0, 8), np.int64)
        self.past: dict[str, np.ndarray] = {}

    @staticmethod
    def _empty(session: ort.InferenceSession) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
                for i in session.get_inputs() if i.name.startswith("past")}

    def _mask(self, i: int, name: str) -> np.ndarray:
        mask = np.zeros(V.vocab_size, dtype=np.int64)
        if i == 0:
            mask[V.event_ids["note"]] = 1  # extension: no meta events, no EOS (patch/CC disabled as in §9)
            return mask
        param = V.events[name][i - 1]
        base, size = V.param_base[param], V.param_size[param]
        ids = list(range(base, base + size))
        if param == "channel":
            ids = [c for c in ids if c - base == CHANNEL]  # disable_channels = every other channel
        elif param == "track":
            ids = [base + TRACK]
        elif param == "pitch":
            ids = [base + p for p in range(self.pitch_range[0], self.pitch_range[1] + 1)]
        mask[ids] = 1
        return mask

    def next_event(self, rows: np.ndarray, p: DecodeParams) -> np.ndarray:
        n = len(self.seq)
        if n == 0 or n > len(rows) or not np.array_equal(self.seq, rows[:n]):
            n, self.past = 0, self._empty(self.base)
        outs = self.base.run(None, {"x": rows[None, n:], **self.past})
        names = [o.name for o in self.base.get_outputs()][1:]
        self.past = {k.replace("present", "past_key_values"): v for k, v in zip(names, outs[1:], strict=True)}
        self.seq = rows.copy()
        hidden = outs[0][:, -1:]
        tokens: list[int] = []
        name = ""
        past = self._empty(self.token)
        for i in range(8):
            if i == 0:
                feeds = {"hidden": hidden, "x": np.zeros((1, 0), np.int64)}
            else:
                feeds = {"hidden": np.zeros((1, 0, hidden.shape[2]), np.float32),
                         "x": np.array([[tokens[-1]]], np.int64)}
            y, *presents = self.token.run(None, {**feeds, **past})
            past = {k: v for k, v in zip(past, presents, strict=True)}
            scores = softmax(y[:, -1:] / p.temperature, -1) * self._mask(i, name)
            tokens.append(int(sample_top_p_k(scores, p.top_p, p.top_k, self.rng).item()))
            if i == 0:
                name = V.event_names[tokens[0]]
            elif len(V.events[name]) == i:
                break
        return np.array(tokens + [0] * (8 - len(tokens)), np.int64)


@pytest.mark.parametrize("params", [DecodeParams(), DecodeParams(temperature=0.8, top_p=0.9, top_k=8)])
def test_skytnt_mode_reproduces_skytnt_loop(params: DecodeParams) -> None:
    gen, ctx, _ = make(seed=11, sampling="skytnt", keep_order=False, fold_range=False)
    ref = SkytntLoop(11, gen.pitch_range)
    for _ in range(40):
        expected = ref.next_event(np.array(ctx.rows), params)
        gen.step(params)
        assert gen.last_row.tolist() == expected.tolist()


def test_fast_mode_gives_the_same_tokens_as_skytnt_mode() -> None:
    a, _, _ = make(seed=3, sampling="skytnt")
    b, _, _ = make(seed=3, sampling="fast")
    for _ in range(60):
        a.step(DecodeParams())
        b.step(DecodeParams())
        assert a.last_row.tolist() == b.last_row.tolist()


def test_fast_mode_on_the_models_softmax_gives_skytnts_tokens() -> None:
    """On a lean export the runtime's token graph also returns softmax(logits / T) (the shared-cache
    rewrite) and fast sampling reads the allowed ids' probabilities from it; the tokens must still be
    the ones SkyTNT's own operations draw from the logits, with a temperature and a chord bias too."""
    plans = [DecodeParams(), DecodeParams(temperature=0.8, chord_bias=2.0)]
    gens = []
    for sampling in ("skytnt", "fast"):
        rt = ModelRuntime(LEAN)
        assert rt.cache_mode == "shared"
        setup = setup_prefix("v2", bpm=120, programs=((1, 0, 0), (TRACK, CHANNEL, 33)))
        ctx = LiveContext("v2", prefix=setup)
        gens.append(Generator(rt, ctx, track=TRACK, channel=CHANNEL, seed=6, sampling=sampling,
                              pitch_range=(40, 76)))
    chord = parse_chord("Am7")
    for k in range(80):
        for gen in gens:
            gen.step(plans[k // 40], lambda beat: chord)
        assert gens[0].last_row.tolist() == gens[1].last_row.tolist(), k


@pytest.mark.parametrize(("kw", "field"), [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 1.5}, "top_p"), ({"top_k": -1}, "top_k"), ({"top_k": 4097}, "top_k"),
    ({"chord_bias": -1.0}, "chord_bias"),
    ({"density": -0.1}, "density"), ({"density": 4.5}, "density"), ({"density": float("inf")}, "density"),
    ({"weak_beat_bias": 1.5}, "weak_beat_bias"), ({"weak_beat_bias": -0.1}, "weak_beat_bias"),
])
def test_bad_decode_params_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DecodeParams(**kw)


@pytest.mark.parametrize(("kw", "field"), [
    ({"track": 128}, "track"), ({"channel": 16}, "channel"), ({"pitch_range": (70, 60)}, "pitch_range hi"),
    ({"pitch_range": (-1, 60)}, "pitch_range lo"), ({"sampling": "greedy"}, "sampling"),
])
def test_bad_generator_args_name_the_field(kw: dict, field: str) -> None:
    args = {"track": TRACK, "channel": CHANNEL} | kw
    with pytest.raises(ValueError, match=field):
        Generator(ModelRuntime(TINY), LiveContext("v2"), **args)


def test_runtime_and_step_misuse_name_the_field() -> None:
    with pytest.raises(ValueError, match="runtime"):
        Generator(ModelRuntime(TINY, max_events=64), LiveContext("v2"), track=0, channel=0)
    gen, ctx, _ = make()
    gen.step(DecodeParams())
    with pytest.raises(ValueError, match="not_before_beat"):
        gen.step(DecodeParams(), not_before_beat=ctx.beat_of_row(len(ctx) - 1) + 500)
    with pytest.raises(TypeError, match="params"):
        gen.step({"temperature": 1.0})  # type: ignore[arg-type]
