"""The default ensemble with its bass and piano on a big model: does the band keep up?

ensembles/default.yaml as shipped (the melody replayed as the player, the drums, the chord plan), but
bass and piano on a medium-shaped export (tv2o-medium's shapes, random weights: bench/model_folders.py)
quantised to int8 at load (`engine.quantize: int8`, the user's path), run for real by the launcher,
in two arrangements one after the other in one run:

* ``separate``: each part's model in a process of its own (two copies of the weights);
* ``shared``: ``engine.share: true``, both parts in one model process, their steps batched.

Per part: notes, late notes, the beats its model had not drawn when they were due (``behind_beats``:
the part then plays only the chord on its strong beats), its re-plans (each note of the player
re-plans both parts: a re-plan that misses its commit window shows up as behind beats), and timing.
A random-weights model plays noise, but it costs what the real one does.

    .venv/bin/python -m bench.medium_ensemble [--bars 16] [--smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.ensemble_procs import free_port, free_udp_block
from bench.model_folders import model_folder

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("bass", "piano")


def ensemble_yaml(directory: Path, model: Path, quantize: str, share: bool) -> Path:
    """default.yaml on free loopback ports, with bass and piano on `model`."""
    source = ROOT / "ensembles" / "default.yaml"
    data = yaml.safe_load(source.read_text())
    data["bus"]["osc"]["base_port"] = free_udp_block(len(data["agents"]) + 2)
    data["control"]["port"], data["control"]["reply_port"] = free_port(), free_port()
    data["human"]["source"]["path"] = str((source.parent / data["human"]["source"]["path"]).resolve())
    for a in data["agents"]:
        if a["name"] in PARTS:
            a["engine"].update(model=str(model), quantize=quantize, share=share)
    path = directory / f"ensemble-{'shared' if share else 'separate'}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def play(model: Path, quantize: str, share: bool, bars: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="medium-ensemble-") as tmp:
        d = Path(tmp)
        path, report = ensemble_yaml(d, model, quantize, share), d / "report.json"
        proc = subprocess.run([sys.executable, str(ROOT / "run_ensemble.py"), str(path), "--quiet",
                               "--bars", str(bars), "--report", str(report)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600 + 10 * bars)
        if proc.returncode != 0 or not report.exists():
            raise RuntimeError(f"the ensemble run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        rep = json.loads(report.read_text())
    parts = {}
    for name in PARTS:
        p = rep["parts"][name]
        m = p.get("model", {})
        parts[name] = {"notes": p["notes"], "late_notes": p["late_notes"], "dropped_late": p["dropped_late"],
                       "behind_beats": m.get("behind_beats"), "replans": m.get("replans"),
                       "model_events": m.get("model_events"), "late_heard": m.get("late_heard"),
                       "timing_p99_ms": p["timing_ms"]["p99"], "restarts": p["restarts"]}
    return {"parts": parts, "stuck_notes": rep["stuck_notes"], "duration_s": rep["duration_s"],
            "model_processes": rep.get("model_processes", {})}


def bench(model: Path, quantize: str, bars: int) -> dict[str, Any]:
    if quantize == "int8":  # quantised once, here, so that no run's start waits for it
        from agents.model.int8_cache import describe, int8_model

        folder, figures = int8_model(model)
        print(f"  {describe(folder, figures)}", file=sys.stderr, flush=True)
    runs = {}
    for share in (False, True):
        name = "shared" if share else "separate"
        print(f"  {name}: {bars} bars ...", file=sys.stderr, flush=True)
        runs[name] = play(model, quantize, share, bars)
    return {"model": str(model), "quantize": quantize, "bars": bars, "runs": runs}


def print_table(res: dict[str, Any]) -> None:
    print(f"default.yaml, bass and piano on {res['model']} (quantize {res['quantize']}), {res['bars']} bars")
    print(f"{'arrangement':10s} {'part':6s} {'notes':>5s} {'late':>4s} {'behind':>6s} {'replans':>7s} "
          f"{'events':>6s} {'p99 ms':>7s}")
    for name, run in res["runs"].items():
        for part, p in run["parts"].items():
            print(f"{name:10s} {part:6s} {p['notes']:5d} {p['late_notes']:4d} {p['behind_beats']!s:>6s} "
                  f"{p['replans']!s:>7s} {p['model_events']!s:>6s} {p['timing_p99_ms']:7.3f}")
        for host, m in run["model_processes"].items():
            print(f"{'':10s} {host}: mean rows per call {m.get('mean_rows')}, peak {m.get('max_rss_mb')} MB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--model", default="medium", help="a bench model name or a model folder")
    ap.add_argument("--smoke", action="store_true", help="the shipped model, 2 bars: checks it runs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.smoke:
        model, quantize, bars = ROOT / "models" / "default", "none", 2
    else:
        model = Path(args.model) if Path(args.model).is_dir() else model_folder(args.model)
        quantize, bars = "int8", args.bars
    res = bench(model, quantize, bars)
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
