"""Our side of bench.model_speed, and the agent as it plays: what each run times on ``ModelRuntime``.

SkyTNT's generate() loop on our runtime and sampler (`run_ours`, against bench/skytnt_reference.py's
loop from the same prompt, seed and masks), a re-plan after a human note (`replan`), the int8
model's logits against fp32 (`fidelity`), and a ``Generator`` set up as ensembles/default.yaml's
piano (`run_agent`). The loop and the agent are timed in CPU-seconds of the calling thread (a shared
machine's other processes then do not count), a re-plan in wall time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agents.model.decoder import DecodeParams, Generator
from agents.model.live_context import LiveContext, LiveNote
from agents.model.prompt import setup_prefix
from agents.model.runtime import ModelRuntime
from agents.model.sampling import Sampler
from agents.model.vocab import VOCAB_V2 as V
from bench.skytnt_reference import softmax
from protocol.harmony import Chord

ROOT = Path(__file__).resolve().parent.parent
TRACK, CHANNEL, HUMAN, PITCHES = 2, 1, 1, (36, 84)
SEED = 1234


def human_context(n_notes: int, seed: int = 0, max_events: int = 4096) -> LiveContext:
    """Setup rows plus a human part of `n_notes` notes, 2 per beat: the prompt both loops start from."""
    setup = setup_prefix("v2", bpm=120, programs=((HUMAN, 0, 0), (TRACK, CHANNEL, 33)))
    ctx = LiveContext("v2", prefix=setup, max_events=max_events)
    rng = np.random.default_rng(seed)
    for i in range(n_notes):
        ctx.add_note(LiveNote(i * 0.5, 0.5, int(rng.integers(48, 80)), 90, 0, HUMAN), owner=HUMAN)
    return ctx


def free_run_masks() -> list[np.ndarray]:
    """SkyTNT's masks for a note event under the restrictions SkytntLoop uses (notes only, one track
    and channel, a pitch range), one array of allowed ids per token position."""
    def block(param: str, lo: int = 0, hi: int | None = None) -> np.ndarray:
        base = V.param_base[param]
        return np.arange(base + lo, base + (V.param_size[param] if hi is None else hi + 1), dtype=np.int64)

    fixed = {"track": TRACK, "channel": CHANNEL}
    masks = [np.array([V.event_ids["note"]], np.int64)]
    for param in V.events["note"]:
        if param in fixed:
            masks.append(block(param, fixed[param], fixed[param]))
        elif param == "pitch":
            masks.append(block(param, *PITCHES))
        else:
            masks.append(block(param))
    return masks


def run_ours(rt: ModelRuntime, prompt_notes: int, n: int, sampling: str, p: DecodeParams,
             ) -> tuple[np.ndarray, list]:
    """SkyTNT's generate() on our runtime and sampler: every event appended as drawn (SkyTNT's app
    never re-sorts its context), SkyTNT's masks; fast sampling skips the positions with one allowed
    id. Our rows and the CPU seconds each event took (its tokens, then its row into the base cache)."""
    rt.reset()
    rt.prefill(np.array(human_context(prompt_notes).rows))
    sampler = Sampler(V.vocab_size, seed=SEED, mode=sampling)
    masks, fast = free_run_masks(), sampling == "fast"
    row, rows, times = np.zeros(8, np.int64), [], []
    for _ in range(n):
        t0 = time.thread_time()
        for i, allowed in enumerate(masks):
            if fast and len(allowed) == 1:
                row[i] = sampler.forced(int(allowed[0]))
                continue
            logits = rt.token_logits(row[:i], temperature=p.temperature)[0]
            probs = rt.probs if fast else None
            row[i] = sampler.sample(logits, allowed, temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                                    probs=None if probs is None else probs[0])
        rt.prefill(row[None])  # (1, 8): the decoder's shape, checked on the runtime's short path
        times.append(time.thread_time() - t0)
        rows.append(row.copy())
    return np.array(rows), times


def leading_equal(a: np.ndarray, b: np.ndarray) -> int:
    differ = np.flatnonzero((a != b).any(axis=1))
    return int(differ[0]) if len(differ) else len(a)


def replan(rt: ModelRuntime, sampling: str, reps: int, p: DecodeParams) -> dict:
    """A human note lands 2 beats back in a 256-event context: rollback, re-feed, first new event."""
    rt.reset()
    ctx = human_context(256 - 3)
    gen = Generator(rt, ctx, track=TRACK, channel=CHANNEL, pitch_range=PITCHES, seed=SEED, sampling=sampling)
    gen.sync()
    total, refeed, rows = [], [], []
    for k in range(reps):
        end = ctx.beat_of_row(len(ctx) - 1)
        t0 = time.perf_counter()
        gen.apply(ctx.add_note(LiveNote(end - 2.0, 0.25, 60 + k % 12, 100, 0, HUMAN), owner=HUMAN))
        rows.append(gen.sync())
        t1 = time.perf_counter()
        gen.step(p)
        t2 = time.perf_counter()
        total.append((t2 - t0) * 1e3)
        refeed.append((t1 - t0) * 1e3)
    return {"ms": statistics.median(total), "refeed_ms": statistics.median(refeed),
            "rows_refed": statistics.median(rows), "context": len(ctx)}


def fidelity(fp32: ModelRuntime, int8: ModelRuntime, rows: np.ndarray, start: int) -> dict:
    """Teacher-forced token logits of the int8 model against fp32 at every position of rows[start:]."""
    for rt in (fp32, int8):
        rt.reset()
        rt.prefill(rows[:start])
    max_abs, kls, top1, n = 0.0, [], 0, 0
    for j in range(start, len(rows)):
        for i in range(8):
            a = fp32.token_logits(rows[j, :i]).astype(np.float64)[0]
            b = int8.token_logits(rows[j, :i]).astype(np.float64)[0]
            max_abs = max(max_abs, float(np.abs(a - b).max()))
            pa, pb = softmax(a, -1), softmax(b, -1)
            kls.append(float(np.sum(pa * (np.log(pa + 1e-30) - np.log(pb + 1e-30)))))
            top1 += int(np.argmax(a) == np.argmax(b))
            n += 1
        for rt in (fp32, int8):
            rt.prefill(rows[j])
    return {"positions": n, "max_abs_logit_diff": max_abs, "mean_kl": statistics.mean(kls),
            "top1_agreement": top1 / n}


STEADY_EVENTS = 600  # from a prompt filling 3/4 of the window: the context trims at least once


def piano_generator(rt: ModelRuntime, prompt_notes: int = 128, window: int = 4096, seed: int = SEED
                    ) -> tuple[Generator, LiveContext, DecodeParams, Callable[[float], Chord | None]]:
    """A Generator set up as ensembles/default.yaml's piano (its range, chord plan, chord_bias,
    temperature and onset grid, the agent's own order rule) on a context of at most `window` events
    after a human part of `prompt_notes` notes, synced to `rt`: (generator, context, params, chord_at)."""
    import yaml

    from protocol.harmony import ChordPlan

    ens = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    piano = next(a for a in ens["agents"] if a["name"] == "piano")
    plan, bpb = ChordPlan.parse(ens["chords"], loop=True, key=ens.get("key", "C")), int(ens.get("meter", 4))
    rt.reset()
    ctx = human_context(prompt_notes, max_events=window)
    e = piano["engine"]
    gen = Generator(rt, ctx, track=TRACK, channel=CHANNEL, pitch_range=tuple(piano["range"]), seed=seed,
                    max_duration_beats=8.0, onset_grid=round(16 * e.get("grid", 1 / 16)))
    gen.sync()
    p = DecodeParams(temperature=e.get("temperature", 1.0), chord_bias=e.get("chord_bias", 0.0))
    return gen, ctx, p, lambda beat: plan.chord_at(beat, bpb)


def run_agent(rt: ModelRuntime, n: int, prompt_notes: int = 128, window: int = 4096) -> tuple[float, float]:
    """(events per CPU-second, share of them still in the context at the end) of `piano_generator`
    on a context of at most `window` events, trimmed as an agent's is. CPU time of this thread, not
    wall time: on a shared machine it leaves out the time another process held the core. The share
    tells progress from churn: an event that replaced an identical note at its slot cost as much as
    any other and added nothing."""
    gen, ctx, p, chord_at = piano_generator(rt, prompt_notes, window)
    placed = 0
    t0 = time.thread_time()
    for _ in range(n):
        before = len(ctx)
        gen.step(p, chord_at)
        placed += len(ctx) != before  # grew, or trimmed after growing; a re-strike leaves it as it was
    return n / (time.thread_time() - t0), placed / n
