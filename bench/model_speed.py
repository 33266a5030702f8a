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

Beside them (``--no-shared`` leaves them out): agents sharing one model process against one alone on
the medium export's int8 copy (bench/shared_speed.py), and, in a full run, ensembles/default.yaml with
bass and piano on the medium export, each part in its own model process and both in one
(bench/medium_ensemble.py).

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
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agents.engines.worker_config import DEFAULT_CONTEXT_EVENTS, context_events
from agents.model.decoder import DecodeParams
from agents.model.runtime import ModelRuntime
from bench import medium_ensemble, shared_speed
from bench.model_folders import int8_folder, model_folder
from bench.model_runs import (
    CHANNEL,
    PITCHES,
    SEED,
    STEADY_EVENTS,
    TRACK,
    fidelity,
    human_context,
    leading_equal,
    replan,
    run_agent,
    run_ours,
)
from bench.skytnt_reference import SkytntLoop


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


def shared_run(smoke: bool, quick: bool) -> dict:
    """Agents sharing one model process against one alone (bench/shared_speed.py): on the medium
    export's int8 copy, where a call reads 230 MB of weights; the lean test fixture for a smoke."""
    core = min(os.sched_getaffinity(0))
    if smoke:
        lean = shared_speed.ROOT / "tests" / "fixtures" / "models" / "tiny_v2_lean"
        return shared_speed.bench(lean, [1, 2], 1, 4, 8, 128, core)
    folder = int8_folder(model_folder("medium"))
    if quick:
        return shared_speed.bench(folder, [2, 4], 1, 10, 64, 1024, core)
    return shared_speed.bench(folder, [1, 2, 4], 3, 40, 128, 1024, core)


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
    ap.add_argument("--no-shared", action="store_true",
                    help="leave out agents sharing one model process (bench/shared_speed.py) and the "
                         "default ensemble on the medium export (bench/medium_ensemble.py)")
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
    if not args.no_shared:
        results["shared"] = shared_run(args.smoke, args.quick)
        if not (args.smoke or args.quick):  # the band on the medium export: minutes of real time
            results["ensemble"] = medium_ensemble.bench(model_folder("medium"), "int8", 16)
    print_table(results)
    if "shared" in results:
        print()
        shared_speed.print_table(results["shared"])
    if "ensemble" in results:
        print()
        medium_ensemble.print_table(results["ensemble"])
    print("\nCPU time of the bench's thread; ORT intra-op threads: 1 per session (agents share 2 cores); "
          "medians over interleaved rounds; speedup = median of per-round ratios; event 0 (prompt "
          "prefill) excluded.")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
