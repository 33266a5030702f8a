"""One model process serving several agents against one agent alone: events per CPU-second and memory.

Each arrangement runs in a fresh process pinned to one core (so CPU-seconds are the one core's), from
the same export, interleaved round by round in one run:

* ``alone``: one agent on its own ``ModelRuntime`` (as an agent's model process runs today);
* ``shared xK``: a ``SharedModel`` serving K agents, each a Generator set up as default.yaml's piano
  with its own seed and context, drawing in its own thread; their one-position calls batched.

Reported: the events all agents drew per CPU-second of the process, its ratio to ``alone``, the
batcher's mean rows per call, the process's peak resident memory (K separate processes would
hold K times ``alone``'s), and a re-plan's wall time: a player's note lands 2 beats back in agent
0's context, which rolls back, re-feeds and draws its first new event while the others draw on.
On the shipped model the weights are small and the per-call Python work
dominates, so sharing pays on big models (``--model medium``), where a call reads hundreds of MB.

    .venv/bin/python -m bench.shared_speed [--model medium|small|shipped|PATH] [--int8] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from agents.model.live_context import LiveNote
from agents.model.runtime import ModelRuntime
from agents.model.shared_model import BatchStats, SharedModel
from bench.model_folders import int8_folder, model_folder
from bench.model_runs import HUMAN, SEED, piano_generator

ROOT = Path(__file__).resolve().parent.parent
REPLAN_REPS = 7


def resolve(name: str, int8: bool) -> Path:
    """A bench model name (tiny, shipped, small, medium) or a model folder; its int8 copy if asked."""
    folder = Path(name) if Path(name).is_dir() else model_folder(name)
    return int8_folder(folder) if int8 else folder


def child(folder: Path, agents: int, events: int, prompt_notes: int, window: int) -> dict:
    """One arrangement, in this process: `agents` 0 is one agent alone on its own runtime."""
    shared = SharedModel(folder, slots=agents, max_events=window) if agents else None
    runtimes = ([shared.runtime() for _ in range(agents)] if shared
                else [ModelRuntime(folder, max_events=window)])
    setups = [piano_generator(rt, prompt_notes, window, seed=SEED + i) for i, rt in enumerate(runtimes)]
    if shared is not None:
        shared.batcher.stats = BatchStats()  # the prompts' prefills above ran alone: count the play only
    errors: list[BaseException] = []

    def play(i: int) -> None:
        gen, _ctx, p, chord_at = setups[i]
        try:
            if shared is None:
                for _ in range(events):
                    gen.step(p, chord_at)
                return
            with shared.drawing(runtimes[i]):  # type: ignore[arg-type]
                for _ in range(events):
                    gen.step(p, chord_at)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=play, args=(i,)) for i in range(len(runtimes))]
    c0, w0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if errors:
        raise errors[0]
    replans = replan_ms(shared, runtimes, setups, REPLAN_REPS)
    out = {"agents": len(runtimes), "events": events * len(runtimes), "cpu_s": cpu, "wall_s": wall,
           "replan_ms": statistics.median(replans), "replan_max_ms": max(replans),
           "events_per_cpu_s": events * len(runtimes) / cpu,
           "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if shared is not None:
        st = shared.batcher.stats
        out["mean_rows"] = {k: round(st.mean_batch(k), 2) for k in ("base", "token")}
    return out


def replan_ms(shared: SharedModel | None, runtimes: list, setups: list, reps: int) -> list[float]:
    """Wall milliseconds from a player's note landing 2 beats back in agent 0's context to its first
    new event (roll back, re-feed, draw), while every other agent keeps drawing."""
    stop = threading.Event()

    def draw(i: int) -> None:
        gen, _ctx, p, chord_at = setups[i]
        with shared.drawing(runtimes[i]) if shared else contextlib.nullcontext():  # type: ignore[arg-type]
            while not stop.is_set():
                gen.step(p, chord_at)

    others = [threading.Thread(target=draw, args=(i,)) for i in range(1, len(runtimes))]
    for t in others:
        t.start()
    gen, ctx, p, chord_at = setups[0]
    times = []
    try:
        with shared.drawing(runtimes[0]) if shared else contextlib.nullcontext():  # type: ignore[arg-type]
            for k in range(reps):
                end = ctx.beat_of_row(len(ctx) - 1)
                t0 = time.perf_counter()
                gen.apply(ctx.add_note(LiveNote(end - 2.0, 0.25, 60 + k % 12, 100, 0, HUMAN), owner=HUMAN))
                gen.sync()
                gen.step(p, chord_at)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        stop.set()
        for t in others:
            t.join()
    return times


def run_child(folder: Path, agents: int, events: int, prompt_notes: int, window: int, core: int) -> dict:
    cmd = [sys.executable, "-m", "bench.shared_speed", "--child", str(folder), "--agents", str(agents),
           "--events", str(events), "--prompt-notes", str(prompt_notes), "--window", str(window)]
    proc = subprocess.run(["taskset", "-c", str(core), *cmd], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"shared_speed child failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(folder: Path, counts: list[int], rounds: int, events: int, prompt_notes: int, window: int,
          core: int) -> dict:
    """Every arrangement once per round, interleaved; medians per arrangement and ratios to alone."""
    runs: dict[str, list[dict]] = {}
    for r in range(rounds):
        for k in [0, *counts]:
            name = "alone" if k == 0 else f"shared x{k}"
            res = run_child(folder, k, events, prompt_notes, window, core)
            runs.setdefault(name, []).append(res)
            print(f"  round {r + 1}/{rounds} {name:10s} {res['events_per_cpu_s']:7.1f} events/CPU-s "
                  f"{res['max_rss_mb']:7.0f} MB", file=sys.stderr, flush=True)
    table: dict[str, dict] = {}
    for name, rs in runs.items():
        table[name] = {"events_per_cpu_s": statistics.median(x["events_per_cpu_s"] for x in rs),
                       "replan_ms": statistics.median(x["replan_ms"] for x in rs),
                       "replan_max_ms": max(x["replan_max_ms"] for x in rs),
                       "max_rss_mb": statistics.median(x["max_rss_mb"] for x in rs),
                       "mean_rows": rs[-1].get("mean_rows")}
    alone = table["alone"]
    for row in table.values():
        row["speed_vs_alone"] = row["events_per_cpu_s"] / alone["events_per_cpu_s"]
        row["memory_vs_alone"] = row["max_rss_mb"] / alone["max_rss_mb"]
    one = table.get("shared x1")
    if one:
        for row in table.values():
            row["memory_vs_shared_x1"] = row["max_rss_mb"] / one["max_rss_mb"]
    return {"model": str(folder), "rounds": rounds, "events_per_agent": events, "window": window,
            "prompt_notes": prompt_notes, "core": core, "arrangements": table}


def print_table(res: dict) -> None:
    print(f"{res['model']}: one core, {res['events_per_agent']} events per agent, window {res['window']}")
    print(f"{'arrangement':12s} {'events/CPU-s':>13s} {'vs alone':>9s} {'MB':>7s} {'vs x1':>6s} "
          f"{'re-plan ms':>10s} {'max':>6s}  mean rows")
    for name, row in res["arrangements"].items():
        x1 = row.get("memory_vs_shared_x1")
        print(f"{name:12s} {row['events_per_cpu_s']:13.1f} {row['speed_vs_alone']:8.2f}x "
              f"{row['max_rss_mb']:7.0f} {'' if x1 is None else f'{x1:5.2f}x':>6s} {row['replan_ms']:10.1f} "
              f"{row['replan_max_ms']:6.1f}  {row['mean_rows'] or ''}")
    print("re-plan: wall time from a player's note 2 beats back to agent 0's first new event, the other "
          "agents drawing meanwhile (one core)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="medium", help="tiny, shipped, small, medium or a model folder")
    ap.add_argument("--int8", action="store_true", help="the model's int8 copy (bench/model_folders.py)")
    ap.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4], help="shared arrangements to run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--events", type=int, default=60, help="events each agent draws")
    ap.add_argument("--prompt-notes", type=int, default=128)
    ap.add_argument("--window", type=int, default=1024, help="context events each agent keeps")
    ap.add_argument("--core", type=int, default=0, help="the one core every arrangement runs on")
    ap.add_argument("--smoke", action="store_true", help="tiny model, a few events: checks it runs")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.agents[0], args.events, args.prompt_notes, args.window)))
        return 0
    if args.smoke:
        args.model = str(ROOT / "tests" / "fixtures" / "models" / "tiny_v2_lean")
        args.agents, args.rounds, args.events, args.prompt_notes = [1, 2], 1, 4, 8
        args.window = 128
    core = args.core if args.core in os.sched_getaffinity(0) else min(os.sched_getaffinity(0))
    folder = resolve(args.model, args.int8)
    res = bench(folder, args.agents, args.rounds, args.events, args.prompt_notes, args.window, core)
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
