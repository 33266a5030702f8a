"""Wall time of an ensemble played in one event loop on virtual time, against the same ensemble played
by the launcher as processes in real time.

The ensemble is what tests/test_inprocess_ensemble.py plays: ensembles/default.yaml's model bass
(models/default) beside patterns.yaml's piano, under the replayed melody, seed 7. In each round, on
the same machine one after the other:

* ``in-process``: tests/support/inprocess.py: the real Conductor and Agents, the OSC bus on an
  in-memory loopback, a virtual clock that jumps to the next timer, the model drawing in the loop's
  thread. ``build`` is constructing them (the model loads here), ``play`` the bars themselves, in
  wall and in CPU seconds of this process (the latter less moved by a shared machine's other load).
* ``in-process, no model``: patterns.yaml (every part written), to show what the loop itself costs.
* ``launcher``: ``run_ensemble.py --bars N`` on free loopback ports, process start to exit.

It also says whether the launcher's recording holds the same notes as the in-process run: a part's
notes are a function of musical time and its seed (agents/engines/model_worker.py's Planner), so a
model process that keeps up plays what the in-process one does.

    .venv/bin/python -m bench.inprocess [--bars 8] [--rounds 3] [--quick|--smoke] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mido
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/inprocess.py`
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tests") not in sys.path:  # the in-process ensemble is the tests' (tests/support)
    sys.path.insert(0, str(ROOT / "tests"))


def in_process(data: dict[str, Any], bars: int) -> dict[str, Any]:
    from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble

    t0 = time.perf_counter()
    band = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=bars)
    build = time.perf_counter() - t0
    cpu0 = time.process_time()
    play = band.play()
    cpu = time.process_time() - cpu0
    notes = {name: band.recorded(name) for name in [*band.agents, "melody"]}
    return {"build_s": build, "play_s": play, "play_cpu_s": cpu, "virtual_s": band.clock() - 1000.0,
            "notes": {k: len(v) for k, v in notes.items()}, "_notes": notes}


def launcher(data: dict[str, Any], bars: int, workdir: Path) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from support.ensembles import write_ensemble

    data = json.loads(json.dumps(data))
    data["human"]["source"]["path"] = str(ROOT / "ensembles" / data["human"]["source"]["path"])
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "source.yaml"
    source.write_text(yaml.safe_dump(data, sort_keys=False))
    path = write_ensemble(workdir, None, source=source)
    record = workdir / "out.mid"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "run_ensemble.py"), str(path), "--bars", str(bars),
                           "--record", str(record), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120 + 6 * bars)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"run_ensemble.py exited {proc.returncode}: {proc.stderr[-2000:]}")
    notes = recorded(record)
    return {"wall_s": wall, "notes": {k: len(v) for k, v in notes.items()}, "_notes": notes}


def recorded(path: Path) -> dict[str, list[tuple[float, float, int, int]]]:
    """(start, duration, pitch, velocity) per track of a recording, in beats, as the recorder wrote it."""
    mid = mido.MidiFile(str(path))
    out: dict[str, list[tuple[float, float, int, int]]] = {}
    for track in mid.tracks:
        tick, name, held, notes = 0, "", {}, []
        for m in track:
            tick += m.time
            if m.type == "track_name":
                name = m.name
            elif m.type == "note_on" and m.velocity > 0:
                held[(m.channel, m.note)] = (tick, m.velocity)
            elif m.type in ("note_off", "note_on") and (m.channel, m.note) in held:
                start, velocity = held.pop((m.channel, m.note))
                ppq = mid.ticks_per_beat
                notes.append((start / ppq, (tick - start) / ppq, m.note, velocity))
        if name and notes:
            out[name] = sorted(notes)
    return out


def same_onsets(a: list[tuple[float, float, int, int]], b: list[tuple[float, float, int, int]]) -> bool:
    """The same notes to the recording's resolution (1/480 beat), lengths aside (a MIDI file rounds)."""
    return [(round(s * 480), p, v) for s, _, p, v in a] == [(round(s * 480), p, v) for s, _, p, v in b]


TIMES = ("build_s", "play_s", "play_cpu_s")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one round")
    ap.add_argument("--smoke", action="store_true", help="2 bars, one round: seconds, the same code path")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    bars, rounds = (2, 1) if args.smoke else (args.bars, 1 if args.quick else args.rounds)
    from support.inprocess import mixed_data, patterns_data

    rows: dict[str, list[dict[str, Any]]] = {"in-process": [], "in-process, no model": [], "launcher": []}
    with tempfile.TemporaryDirectory(prefix="bench-inprocess-") as tmp:
        for r in range(rounds):
            rows["in-process"].append(in_process(mixed_data(), bars))
            rows["in-process, no model"].append(in_process(patterns_data(), bars))
            rows["launcher"].append(launcher(mixed_data(), bars, Path(tmp) / f"round{r}"))
    first = rows["in-process"][0]["_notes"]
    repeatable = all(row["_notes"] == first for row in rows["in-process"])
    played = [row["_notes"] for row in rows["launcher"]]
    same_as_launcher = {p: [same_onsets(first[p], notes.get(p, [])) for notes in played] for p in first}
    result: dict[str, Any] = {
        "bars": bars,
        "rounds": rounds,
        "python": sys.version.split()[0],
        "in_process": {k: summary([row[k] for row in rows["in-process"]]) for k in TIMES},
        "in_process_virtual_s": rows["in-process"][0]["virtual_s"],
        "in_process_no_model": {k: summary([row[k] for row in rows["in-process, no model"]])
                                for k in TIMES},
        "launcher_wall_s": summary([row["wall_s"] for row in rows["launcher"]]),
        "notes": {"in_process": rows["in-process"][0]["notes"], "launcher": rows["launcher"][0]["notes"]},
        "in_process_repeatable": repeatable,
        "launcher_same_notes": same_as_launcher,
    }
    print(f"{bars} bars, {rounds} round(s), Python {result['python']}; "
          "seconds of wall time (median, min..max)")
    print(f"{'':24} {'build':>22} {'play':>22} {'play, CPU s':>22}")
    for label, key in (("in-process", "in_process"), ("in-process, no model", "in_process_no_model")):
        cells = [f"{s['median']:.3f} ({s['min']:.3f}..{s['max']:.3f})" for s in result[key].values()]
        print(f"{label:24} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22}")
    w = result["launcher_wall_s"]
    print(f"{'launcher (processes)':24} {'':>22} {w['median']:>8.3f} ({w['min']:.3f}..{w['max']:.3f})")
    print(f"virtual time played in-process: {result['in_process_virtual_s']:.2f} s; "
          f"notes {result['notes']['in_process']} (launcher {result['notes']['launcher']})")
    print(f"in-process runs identical: {repeatable}; launcher played the same notes: "
          + ", ".join(f"{p} {sum(v)}/{len(v)}" for p, v in same_as_launcher.items()))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
