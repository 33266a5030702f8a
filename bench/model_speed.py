"""Events per second per agent, and re-plan latency after a human note, against SkyTNT's own loop.

Per model, in the same process, interleaved round by round with the same seed, prompt and masks, in
CPU-seconds of the bench's thread (a shared machine's other processes then do not count):

* ``skytnt``: a faithful re-implementation of app_onnx's generate(): plain
  ``session.run`` per call with the KV cache fed back as numpy arrays, a Python-built int64 mask per
  position, softmax over the full vocabulary, argsort sampling, ``np.concatenate`` growth.
* ``ours/skytnt-sampling``: the same generate() loop (every event appended as drawn, as SkyTNT's app
  does) on ``ModelRuntime`` (IO binding, the shared in-place cache on lean exports or preallocated
  double buffers, logits into one array) with ``Sampler(mode="skytnt")``: the runtime's gain alone.
* ``ours/fast``: ``Sampler(mode="fast")``: also samples on the allowed ids only (from the token graph's
  softmax on the shared cache) and skips the token-model call at positions with one allowed id (event
  type, track, channel). This is the shipped model's generation speed.
* ``ours/fast int8`` (exported models): the same on ``onnxruntime.quantization.quantize_dynamic``
  (int8 weights, dynamic uint8 activations); the logit error it costs is reported.

Masks for these runs are SkyTNT's own (patch/CC disabled, every other channel disabled) plus the
restrictions §9.1 allows (notes only, the agent's track, a pitch range), identical in both loops, so
the tokens can be compared ("equal rows": leading rows identical to SkyTNT's loop; an int8 model's
activations are quantised per call, and our cache feeds the prompt in other chunks than SkyTNT's one
call, so its streams part once a draw falls near a boundary). ORT runs 1 intra-op thread everywhere
(agents share 2 cores).

The agent (shipped model): a ``Generator`` set up as ensembles/default.yaml's piano, with its own-order
rule, chord plan, bias and temperature, from a 128-note context, and in steady state at the context
window it keeps for the model (``context_events``) against the 1024 events it keeps for a model that
records no training window, each on the shared cache and on the same files as exported.

Models: ``tiny`` (the test fixture), ``shipped`` (models/default, trained; also timed as an agent
plays it, in events per CPU-second), ``small`` (4 layers, 128 wide) and ``medium`` (tv2o-medium
shapes: 12 x 1024, 16 heads, ffn 4096; token model 3 layers, 4 heads), random weights exported with
our exporter (its default lean graphs) and cached under ~/.cache/barcelona/bench/ (the medium export
is ~940 MB). ``tiny`` is a plain TorchScript export, so it also shows a user's SkyTNT export's path.

``--baseline FOLDER`` also plays the agent on another model folder (e.g. a plain export of the same
weights: ``training.export.export_model(..., lean=False)``, or an older copy of models/default) in the same
rounds, interleaved, and reports the ratio: on a shared machine only side-by-side ratios compare.

    .venv/bin/python -m bench.model_speed [--quick|--smoke] [--json PATH] [--baseline FOLDER]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agents.engines.model_worker import DEFAULT_CONTEXT_EVENTS, context_events
from agents.model.decoder import DecodeParams, Generator
from agents.model.live_context import LiveContext, LiveNote
from agents.model.prompt import setup_prefix
from agents.model.runtime import ModelRuntime
from agents.model.sampling import Sampler
from agents.model.vocab import VOCAB_V2 as V
from bench.skytnt_reference import SkytntLoop, softmax

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "barcelona" / "bench"
SHAPES = {"small": {"layers": 4, "width": 128, "heads": 4, "ffn": 512},
          "medium": {"layers": 12, "width": 1024, "heads": 16, "ffn": 4096}}
TRACK, CHANNEL, HUMAN, PITCHES = 2, 1, 1, (36, 84)
SEED = 1234


def model_folder(name: str) -> Path:
    """The tiny fixture, the shipped model, or a random-weights export made once and kept in the cache."""
    if name == "tiny":
        return ROOT / "tests" / "fixtures" / "models" / "tiny_v2"
    if name == "shipped":
        return ROOT / "models" / "default"
    folder = CACHE / f"{name}-s0-lean"  # the exporter's default build; older caches were plain
    if not (folder / "onnx" / "model_token.onnx").exists():
        from training.export import export_model, random_model  # torch only when (re)building

        print(f"exporting random {name} model to {folder} (once) ...", flush=True)
        tmp = CACHE / f".tmp-{name}-{os.getpid()}"
        export_model(random_model(0, **SHAPES[name]), tmp, config_name=f"bench-{name}")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


def int8_folder(src: Path) -> Path:
    """quantize_dynamic of both graphs (MatMul weights to int8), cached beside the fp32 export."""
    from training.quantize import quantize_int8

    folder = src.with_name(src.name + "-int8")
    if not (folder / "onnx" / "model_token.onnx").exists():
        print(f"quantising {src.name} to int8 (once) ...", flush=True)
        tmp = src.with_name(f".tmp-int8-{os.getpid()}")
        (tmp / "onnx").mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "config.json", tmp / "config.json")
        for f in ("model_base.onnx", "model_token.onnx"):
            shutil.copy(src / "onnx" / f, tmp / "onnx" / f)
            quantize_int8(tmp / "onnx" / f)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


# ---- our path ------------------------------------------------------------------------------------
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


def run_agent(rt: ModelRuntime, n: int, prompt_notes: int = 128, window: int = 4096) -> tuple[float, float]:
    """(events per CPU-second, share of them still in the context at the end) of a Generator set up
    as ensembles/default.yaml's piano (its range, chord plan, chord_bias, temperature and onset grid,
    the agent's own order rule) on a context of at most `window` events, trimmed as an agent's is. CPU
    time of this thread, not wall time: on a shared machine it leaves out the time another process
    held the core. The share tells progress from churn: an event that replaced an identical note at
    its slot cost as much as any other and added nothing."""
    import yaml

    from protocol.harmony import ChordPlan

    ens = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    piano = next(a for a in ens["agents"] if a["name"] == "piano")
    plan, bpb = ChordPlan.parse(ens["chords"], loop=True, key=ens.get("key", "C")), int(ens.get("meter", 4))
    rt.reset()
    ctx = human_context(prompt_notes, max_events=window)
    e = piano["engine"]
    gen = Generator(rt, ctx, track=TRACK, channel=CHANNEL, pitch_range=tuple(piano["range"]), seed=SEED,
                    max_duration_beats=8.0, onset_grid=round(16 * e.get("grid", 1 / 16)))
    gen.sync()
    p = DecodeParams(temperature=e.get("temperature", 1.0), chord_bias=e.get("chord_bias", 0.0))
    placed = 0
    t0 = time.thread_time()
    for _ in range(n):
        before = len(ctx)
        gen.step(p, lambda beat: plan.chord_at(beat, bpb))
        placed += len(ctx) != before  # grew, or trimmed after growing; a re-strike leaves it as it was
    return n / (time.thread_time() - t0), placed / n


def bench_model(name: str, n: int, rounds: int, prompt_notes: int, reps: int, int8: bool,
                baseline: Path | None = None) -> dict:
    folder = model_folder(name)
    p = DecodeParams()
    ref = SkytntLoop(folder, track=TRACK, channel=CHANNEL, pitch_range=PITCHES)
    rt = ModelRuntime(folder)  # one set of sessions serves both samplers
    runtimes = {"ours/skytnt-sampling": rt, "ours/fast": rt}
    if int8:
        runtimes["ours/fast int8"] = ModelRuntime(int8_folder(folder))
    per_event: dict[str, list[float]] = {k: [] for k in ["skytnt", *runtimes]}
    ratios: dict[str, list[float]] = {k: [] for k in runtimes}
    equal: dict[str, str] = {}
    agent: list[float] = []
    kept: list[float] = []
    base_rt = ModelRuntime(baseline) if baseline is not None and name == "shipped" else None
    base_agent: list[float] = []
    # Steady state at the window an agent keeps for this model and at the 1024 events it keeps for a
    # model whose config does not say, each on the shared cache and on the same files as exported
    # (the copying cache): what the window and the cache each buy, side by side.
    window = context_events(str(folder))
    copy_rt = ModelRuntime(folder, cache_mode="buffers") if rt.cache_mode == "shared" else None
    steady: dict[tuple[str, int], list[float]] = {}
    for k in range(rounds):
        if name == "shipped":
            order = [(rt, agent), (base_rt, base_agent)] if base_rt is not None else [(rt, agent)]
            for r, sink in order[:: 1 if k % 2 == 0 else -1]:  # alternate who runs first
                speed, share = run_agent(r, n, window=window)
                sink.append(speed)
                if sink is agent:
                    kept.append(share)
            combos = [(r, w) for w in (window, DEFAULT_CONTEXT_EVENTS) for r in (rt, copy_rt) if r]
            for r, w in combos[:: 1 if k % 2 == 0 else -1]:
                speed, _ = run_agent(r, STEADY_EVENTS if n >= 300 else n, (3 * w) // 4, w)
                steady.setdefault((r.cache_mode, w), []).append(speed)
        prompt = np.array(human_context(prompt_notes).rows)
        ref_rows, t = ref.generate(prompt, n, SEED, p)
        ref_ms = statistics.mean(t[1:]) * 1e3  # event 0 also prefills the prompt in SkyTNT's loop
        per_event["skytnt"].append(ref_ms)
        for key, rt in runtimes.items():
            rows, t = run_ours(rt, prompt_notes, n, "skytnt" if "skytnt" in key else "fast", p)
            ms = statistics.mean(t[1:]) * 1e3
            per_event[key].append(ms)
            ratios[key].append(ref_ms / ms)
            k = leading_equal(rows, ref_rows)
            equal[key] = f"{k}/{n}"
    out: dict = {"events": n, "rounds": rounds, "prompt_rows": len(prompt), "variants": {}}
    for key, values in per_event.items():
        ms = statistics.median(values)
        out["variants"][key] = {"ms_per_event": ms, "events_per_s": 1e3 / ms, "runs_ms": values,
                                "speedup_vs_skytnt": statistics.median(ratios[key]) if key in ratios else 1.0,
                                "equal_rows": equal.get(key, "-")}
    if agent:
        out["agent_events_per_cpu_s"] = {"median": statistics.median(agent), "runs": agent,
                                         "kept_share": statistics.median(kept)}
    if steady:
        out["agent_steady"] = {f"{mode} window {w}": {"median": statistics.median(v), "runs": v}
                               for (mode, w), v in steady.items()}
        out["agent_steady"]["window"] = window
        mine = steady[("shared", window)]
        for (mode, w), v in steady.items():
            if (mode, w) != ("shared", window):
                out["agent_steady"][f"ratio to {mode} window {w}"] = statistics.median(
                    a / b for a, b in zip(mine, v, strict=True))
    if base_agent:
        out["baseline_agent_events_per_cpu_s"] = {
            "folder": str(baseline), "median": statistics.median(base_agent), "runs": base_agent,
            "ratio": statistics.median(a / b for a, b in zip(agent, base_agent, strict=True))}
    out["replan"] = {key: replan(rt, "fast", reps, p) for key, rt in runtimes.items() if "fast" in key}
    t_ref = []
    for _ in range(max(1, reps // 2)):  # SkyTNT's app has no rollback: the whole context runs again
        prompt = np.array(human_context(256).rows)
        t0 = time.perf_counter()
        ref.generate(prompt, 1, SEED, p)
        t_ref.append((time.perf_counter() - t0) * 1e3)
    out["replan"]["skytnt (full re-run)"] = {"ms": statistics.median(t_ref), "context": len(prompt)}
    if int8:
        rows = np.concatenate([prompt, ref_rows[: min(n, 16)]])
        out["int8_fidelity"] = fidelity(runtimes["ours/fast"], runtimes["ours/fast int8"], rows, len(prompt))
    return out


def print_table(results: dict) -> None:
    print(f"\n{'model':8s} {'variant':22s} {'ms/event':>9s} {'events/s':>9s} {'speedup':>8s}  equal rows")
    for model, r in results["models"].items():
        for key, v in r["variants"].items():
            print(f"{model:8s} {key:22s} {v['ms_per_event']:9.2f} {v['events_per_s']:9.1f} "
                  f"{v['speedup_vs_skytnt']:7.2f}x  {v['equal_rows']}")
    print(f"\n{'model':8s} {'re-plan after a human note':32s} {'ms':>8s} {'re-feed ms':>11s} {'rows':>5s}")
    for model, r in results["models"].items():
        for key, v in r["replan"].items():
            print(f"{model:8s} {key:32s} {v['ms']:8.1f} {v.get('refeed_ms', float('nan')):11.1f} "
                  f"{v.get('rows_refed', v['context']):5}")
    for model, r in results["models"].items():
        if "agent_events_per_cpu_s" in r:
            print(f"\n{model}: as an agent plays it (default.yaml's piano: own order, chord plan, its "
                  f"chord_bias and temperature): {r['agent_events_per_cpu_s']['median']:.0f} events per "
                  f"CPU-second, 1 thread, from a 128-note context; "
                  f"{r['agent_events_per_cpu_s']['kept_share']:.0%} of them placed a new note (the rest "
                  "struck again a note the part held at that slot)")
        if "agent_steady" in r:
            c, w = r["agent_steady"], r["agent_steady"]["window"]
            print(f"{model}: agent in steady state ({STEADY_EVENTS} events from a prompt filling 3/4 of its "
                  f"context, trims included), events per CPU-second:")
            for key, v in c.items():
                if isinstance(v, dict):
                    ratio = c.get(f"ratio to {key}")
                    print(f"    {key:26s} {v['median']:5.0f}" + (f"   (window {w} shared: x{ratio:.2f})"
                                                                 if ratio else "   <- as agents run it"))
        if "baseline_agent_events_per_cpu_s" in r:
            b = r["baseline_agent_events_per_cpu_s"]
            print(f"{model}: baseline {b['folder']} in the same rounds: {b['median']:.0f} events per "
                  f"CPU-second; ratio (median of per-round ratios) x{b['ratio']:.2f}")
    for model, r in results["models"].items():
        if "int8_fidelity" in r:
            f = r["int8_fidelity"]
            print(f"\n{model} int8 vs fp32 over {f['positions']} token positions: max |dlogit| "
                  f"{f['max_abs_logit_diff']:.4f}, mean KL {f['mean_kl']:.2e}, "
                  f"top-1 agree {f['top1_agreement']:.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny + medium at short length (< 2 minutes)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny + shipped, a few events, no export: proves the bench runs, measures nothing")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    ap.add_argument("--models", nargs="*", choices=["tiny", "shipped", "small", "medium"],
                    help="subset to run")
    ap.add_argument("--baseline", type=Path, metavar="FOLDER",
                    help="also time the agent on this model folder, interleaved with the shipped one")
    args = ap.parse_args(argv)
    if args.smoke:  # the models already on disk: nothing to export or quantise
        plan = {"tiny": (8, 1, 16, 2, False), "shipped": (8, 1, 16, 2, False)}
    elif args.quick:
        plan = {"tiny": (100, 2, 64, 5, False), "shipped": (100, 3, 64, 5, False),
                "medium": (10, 2, 64, 3, True)}
    else:
        plan = {"tiny": (300, 3, 128, 9, False), "shipped": (300, 5, 128, 9, False),
                "small": (300, 3, 128, 9, True), "medium": (40, 3, 128, 5, True)}
    if args.models:
        plan = {k: v for k, v in plan.items() if k in args.models}
    results: dict = {"machine": platform.machine(), "cpus": os.cpu_count(), "onnxruntime": ort.__version__,
                     "intra_op_threads": 1, "seed": SEED, "quick": args.quick,
                     "smoke": args.smoke, "models": {}}
    for name, (n, rounds, prompt_notes, reps, int8) in plan.items():
        t0 = time.perf_counter()
        results["models"][name] = bench_model(name, n, rounds, prompt_notes, reps, int8, args.baseline)
        print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    print_table(results)
    print("\nCPU time of the bench's thread; ORT intra-op threads: 1 per session (agents share 2 cores); "
          "medians over interleaved rounds; speedup = median of per-round ratios; event 0 (prompt "
          "prefill) excluded.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
