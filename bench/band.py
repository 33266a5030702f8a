"""What a musician hears first: does each agent play its instrument's part, and the same part on a
busy machine?

Plays ensembles/default.yaml and ensembles/band.yaml (bass, piano, guitar, sax, trumpet, drums
behind a replayed player) for ``--bars`` bars, once per seed, idle and then beside two CPU-bound
processes, records them, and measures every part from the recording alone (analysis/band.py):

* polyphony (mean notes sounding while the part sounds): a bass line or a horn has 1.0;
* the bass's lowest-voice share (of the time the bass and another agent sound, the bass lowest);
* unison share (an agent's notes that start on a pitch another agent sounds);
* velocity spread, and beat 1 against the off-beats;
* notes per part idle and busy, and the share of the idle run's notes the busy run played exactly,
  with what says whether each run kept up: beats the model had not drawn in time (`behind_beats`)
  and other parts' notes heard after the turn they counted in (`late_heard`);
* drums: a fill at every phrase end, a crash after it, identical consecutive 4-bar phrases;
* pitch-class entropy, scale and groove consistency and the strong-beat chord-tone rate of each
  model part (analysis/metrics.py), beside the corpus's per-voice values.

The corpus column comes from music21's Bach chorales (each voice a part): polyphony, the bass's
lowest share and the voices' unison share, measured by the same functions.

With ``--inprocess`` the ensembles play in one event loop on virtual time instead
(tests/support/busy_band.py), idle and on a simulated busy machine that keeps up (bus datagrams
delayed up to 40 ms, models reading and answering up to 50 ms late, drawing now and then and pausing
their windows; ``--load`` scales the delays): what a busy run plays then depends on the code alone,
not on what else the machine runs.

    .venv/bin/python -m bench.band [--bars 32] [--seeds 1 2 3] [--ensembles default band]
                                   [--no-busy] [--inprocess [--load 1.0]] [--json PATH] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from analysis.band import band_summary
from analysis.metrics import chord_tone_rate, summary
from protocol.ensemble import load_ensemble
from protocol.harmony import ChordPlan

ROOT = Path(__file__).resolve().parent.parent
ENSEMBLES = {"default": ROOT / "ensembles" / "default.yaml", "band": ROOT / "ensembles" / "band.yaml"}
REFERENCE = {"pitch_class_entropy": 2.711, "scale_consistency": 0.941, "groove_consistency": 0.874}
GOALS = {"bass_polyphony": 1.05, "lowest_share": 0.95, "unison_share": 0.10, "velocity_std": 8.0,
         "busy_notes": 0.10, "chord_tones": 0.90}
HORNS = ("trumpet", "sax", "alto_sax", "tenor_sax", "trombone", "clarinet", "flute", "voice")


def roles_of(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Role and instrument of every part, as the agents resolve them; the player is `human`."""
    ens = load_ensemble(path)
    roles = {a.name: a.role or "comp" for a in ens.agents}
    instruments = {a.name: a.instrument or "" for a in ens.agents}
    if ens.human is not None:
        roles[ens.human.name] = "human"
    return roles, instruments


def play(path: Path, seed: int, bars: int, workdir: Path, busy: bool) -> tuple[Path, dict[str, Any]]:
    """One run of the ensemble at ``seed`` (free ports), beside two CPU burners when ``busy``;
    returns the recording and each agent's final stats."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.ensembles import write_ensemble

    workdir.mkdir(parents=True, exist_ok=True)
    yaml_path = write_ensemble(workdir, {"seed": seed}, source=path)
    record, stats = workdir / "session.mid", workdir / "stats"
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 if busy else 0)]
    try:
        cmd = [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--bars", str(bars),
               "--record", str(record), "--stats-dir", str(stats), "--quiet"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120 + 6 * bars)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    if proc.returncode != 0 or not record.exists():
        raise SystemExit(f"{path.name} seed {seed}: the run failed (exit {proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-2000:]}")
    agents = {}
    for f in stats.glob("agent-*.json"):
        agents[f.stem.removeprefix("agent-")] = json.loads(f.read_text())
    return record, agents


def measure(record: Path, path: Path, bars: int) -> dict[str, dict[str, float]]:
    from launcher.plot import read_tracks

    tracks, _ = read_tracks(record)
    return measure_parts({t.name: sorted(t.notes) for t in tracks}, path, bars)


def measure_parts(notes_by_part: dict[str, list[tuple[float, float, int, int]]], path: Path,
                  bars: int) -> dict[str, dict[str, float]]:
    """Every measure of every part, from its notes (start, duration, pitch, velocity)."""
    ens = yaml.safe_load(path.read_text())
    bpb = int(ens.get("meter", 4))
    roles, _ = roles_of(path)
    plan = ChordPlan.parse(ens.get("chords", "C"), loop=bool(ens.get("loop", True)),
                           key=str(ens.get("key", "C")))
    parts = {name: notes for name, notes in notes_by_part.items() if name in roles}
    out = band_summary(parts, roles, bpb, bars)
    for name, notes in parts.items():
        if roles[name] in ("bass", "comp", "melody"):
            triples = [(s, d, p) for s, d, p, _ in notes]
            out[name].update({k: v for k, v in summary(triples, bpb).items()
                              if k in REFERENCE})
            out[name]["chord_tones"] = chord_tone_rate(triples, plan, bpb)[0]
    return out


def exact_share(idle: Path, busy: Path) -> dict[str, float]:
    """Per part, the share of the idle run's notes (start, pitch) the busy run played too."""
    from launcher.plot import read_tracks

    return exact_share_of({t.name: t.notes for t in read_tracks(idle)[0]},
                          {t.name: t.notes for t in read_tracks(busy)[0]})


def exact_share_of(idle: dict[str, list[tuple[float, float, int, int]]],
                   busy: dict[str, list[tuple[float, float, int, int]]]) -> dict[str, float]:
    a = {n: {(round(s * 16), p) for s, _, p, _ in notes} for n, notes in idle.items()}
    b = {n: {(round(s * 16), p) for s, _, p, _ in notes} for n, notes in busy.items()}
    return {n: len(notes & b.get(n, set())) / len(notes) for n, notes in a.items() if notes}


def play_inprocess(path: Path, seed: int, bars: int, load: float | None) -> dict[str, Any]:
    """One seed of ``path`` in one event loop: idle, and with ``load`` (tests/support/busy_band.py's
    delays times this) busy; the same run record as a real run's."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.busy_band import play as play_band

    data = yaml.safe_load(path.read_text())
    data["seed"] = seed
    idle, planners = play_band(data, path.parent, bars, busy=False)
    parts = {n: idle.recorded(n) for n in idle.conductor.recorder.notes}
    run: dict[str, Any] = {"seed": seed, "idle": measure_parts(parts, path, bars),
                           "behind": {n: p.behind_beats for n, p in planners.items()},
                           "late": {n: p.late_heard for n, p in planners.items()}}
    if load is not None:
        busy, planners = play_band(data, path.parent, bars, busy=True, seed=seed, scale=load)
        busy_parts = {n: busy.recorded(n) for n in busy.conductor.recorder.notes}
        run["busy"] = measure_parts(busy_parts, path, bars)
        run["busy_ratio"] = {p: run["busy"][p]["notes"] / v["notes"] for p, v in run["idle"].items()
                             if v["notes"] and p in run["busy"]}
        run["busy_exact"] = exact_share_of(parts, busy_parts)
        run["busy_behind"] = {n: p.behind_beats for n, p in planners.items()}
        run["busy_late"] = {n: p.late_heard for n, p in planners.items()}
    return run


def corpus(pieces: int) -> dict[str, Any]:
    """The same measures on Bach chorales, each voice a part (soprano..bass)."""
    from music21 import corpus as m21

    from analysis.band import lowest_share, polyphony, unison_share

    polys, lows, unis = [], [], []
    voices: dict[str, list[tuple[float, float, int]]] = {"melody": [], "comp": [], "bass": []}
    mmt: dict[str, list[dict[str, float]]] = {"melody": [], "comp": [], "bass": []}
    for path in sorted(m21.getComposer("bach"))[:pieces * 3:3]:
        try:
            score = m21.parse(path)
        except Exception:  # a file music21 cannot read is not the measure's business
            continue
        parts = {}
        for i, part in enumerate(score.parts[:4]):
            notes = [(float(n.offset), float(n.quarterLength), int(n.pitch.midi), 80)
                     for n in part.flatten().notes if hasattr(n, "pitch") and n.quarterLength > 0]
            parts[f"v{i}"] = notes
        if len(parts) < 4:
            continue
        for role, names in (("melody", ("v0",)), ("comp", ("v1", "v2")), ("bass", ("v3",))):
            for v in names:
                triples = [(s, d, p) for s, d, p, _ in parts[v]]
                voices[role] += triples
                mmt[role].append(summary(triples, 4))
        polys.append(statistics.mean(polyphony(n) for n in parts.values()))
        lows.append(lowest_share(parts, "v3"))
        unis.append(statistics.mean(unison_share(parts).values()))
    out: dict[str, Any] = {"polyphony": statistics.mean(polys), "lowest_share": statistics.mean(lows),
                           "unison_share": statistics.mean(unis), "pieces": float(len(polys))}
    # the matching corpus part of each role: basses, inner voices (comping), sopranos (melody)
    out["by_role"] = {role: {k: statistics.mean(r[k] for r in rows) for k in REFERENCE}
                      for role, rows in mmt.items() if rows}
    return out


def _ok(good: bool) -> str:
    return "ok" if good else "MISS"


def verdicts(results: dict[str, Any]) -> list[str]:
    """One line per goal, each against the worst seed."""
    lines = []
    for ens, runs in results["ensembles"].items():
        idle = [r["idle"] for r in runs]
        parts = idle[0].keys()
        roles = results["roles"][ens]
        for part in parts:
            role, inst = roles[part]
            if role == "human":
                continue
            rows = [r[part] for r in idle if part in r]
            if role == "drums":
                fills = min(r["fill_share"] for r in rows)
                same = max(r["identical_consecutive_phrases"] for r in rows)
                lines.append(f"{ens}/{part} fill at phrase ends {fills:.2f} {_ok(fills >= 1)}; "
                             f"identical consecutive phrases {same:.0f} {_ok(same == 0)}")
                continue
            poly = max(r["polyphony"] for r in rows)
            if role == "bass":
                low = min(r.get("lowest_share", 1.0) for r in rows)
                lines.append(f"{ens}/{part} polyphony {poly:.2f} {_ok(poly <= GOALS['bass_polyphony'])}"
                             f"; lowest {low:.3f} {_ok(low >= GOALS['lowest_share'])}")
            elif inst in HORNS:
                lines.append(f"{ens}/{part} polyphony {poly:.2f} {'ok' if poly <= 1.0 + 1e-9 else 'MISS'}")
            uni = max(r.get("unison_share", 0.0) for r in rows)
            std = min(r["velocity_std"] for r in rows)
            accent = min(r["velocity_downbeat"] - r["velocity_offbeat"] for r in rows)
            tones = min(r.get("chord_tones", 1.0) for r in rows)
            lines.append(f"{ens}/{part} unisons {uni:.3f} {_ok(uni <= GOALS['unison_share'])}; "
                         f"velocity std {std:.1f} {_ok(std >= GOALS['velocity_std'])}; "
                         f"beat 1 - off-beats {accent:+.1f} {_ok(accent > 0)}; "
                         f"strong-beat chord tones {tones:.2f} {_ok(tones >= GOALS['chord_tones'])}")
            reference = results.get("corpus", {}).get("by_role", {}).get(role, REFERENCE)
            for k, ref in reference.items():
                vals = [r[k] for r in rows if k in r]
                if vals:
                    v = statistics.mean(vals)
                    off = (v - ref) / ref
                    lines.append(f"{ens}/{part} {k} {v:.3f} vs corpus {role} voices {ref:.3f} ({off:+.1%}) "
                                 f"{_ok(abs(off) <= 0.10)}")
            for r in runs:
                if "busy_ratio" in r and part in r["busy_ratio"]:
                    ratio, exact = r["busy_ratio"][part], r["busy_exact"].get(part, 0.0)
                    ok = abs(ratio - 1) <= GOALS["busy_notes"]
                    lines.append(f"{ens}/{part} seed {r['seed']}: busy/idle notes {ratio:.2f} "
                                 f"{_ok(ok)}, same notes {exact:.0%}, behind beats "
                                 f"{r['behind'].get(part, 0)} idle / {r['busy_behind'].get(part, 0)} busy, "
                                 f"notes heard late {r.get('late', {}).get(part, 0)} idle / "
                                 f"{r.get('busy_late', {}).get(part, 0)} busy")
    return lines


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    cols = ["notes", "notes_per_bar", "polyphony", "max_polyphony", "lowest_share", "unison_share",
            "velocity_std", "velocity_downbeat", "velocity_offbeat", "chord_tones", "fill_share",
            "identical_consecutive_phrases"]
    for ens, runs in results["ensembles"].items():
        table = Table(title=f"ensembles/{ens}.yaml, {results['bars']} bars, mean over seeds "
                            f"{[r['seed'] for r in runs]} (idle)")
        table.add_column("part")
        for c in cols:
            table.add_column(c.replace("_", " "), justify="right")
        for part in runs[0]["idle"]:
            cells = [part]
            for c in cols:
                vals = [r["idle"][part][c] for r in runs if c in r["idle"].get(part, {})]
                cells.append(f"{statistics.mean(vals):.2f}" if vals else "-")
            table.add_row(*cells)
        console.print(table)
    if "corpus" in results:
        c = results["corpus"]
        console.print(f"corpus (Bach chorales, {c['pieces']:.0f}, each voice a part): polyphony "
                      f"{c['polyphony']:.3f}, bass lowest {c['lowest_share']:.3f}, "
                      f"unisons {c['unison_share']:.3f}")
    for line in results["verdicts"]:
        console.print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--ensembles", nargs="+", default=list(ENSEMBLES), choices=list(ENSEMBLES))
    ap.add_argument("--no-busy", action="store_true", help="skip the runs beside two CPU-bound processes")
    ap.add_argument("--corpus", type=int, default=10, help="Bach chorales for the corpus column (0: none)")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--keep", metavar="DIR", help="keep the recordings here")
    ap.add_argument("--inprocess", action="store_true",
                    help="play in one event loop on virtual time, busy as simulated (no real processes)")
    ap.add_argument("--load", type=float, default=1.0, help="--inprocess: the simulated delays times this")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds: default.yaml, 2 bars, one seed, idle (and busy with --inprocess)")
    args = ap.parse_args(argv)
    if args.smoke:
        # in one event loop the busy run costs a second: it stays
        args.bars, args.seeds, args.ensembles, args.corpus = 2, [1], ["default"], 0
        args.no_busy = not args.inprocess
    t0 = time.perf_counter()
    results: dict[str, Any] = {"bars": args.bars, "load_average": os.getloadavg(), "ensembles": {},
                               "roles": {}, "inprocess": args.inprocess}
    if args.corpus:
        results["corpus"] = corpus(args.corpus)
    with tempfile.TemporaryDirectory(prefix="barcelona-band-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        for name in args.ensembles:
            path = ENSEMBLES[name]
            roles, instruments = roles_of(path)
            results["roles"][name] = {p: (r, instruments.get(p, "")) for p, r in roles.items()}
            runs = []
            for seed in args.seeds:
                if args.inprocess:
                    runs.append(play_inprocess(path, seed, args.bars, None if args.no_busy else args.load))
                    continue
                idle_rec, idle_stats = play(path, seed, args.bars, work / f"{name}-{seed}-idle", busy=False)
                run: dict[str, Any] = {"seed": seed, "idle": measure(idle_rec, path, args.bars),
                                       "behind": {a: s.get("behind_beats", 0) for a, s in idle_stats.items()},
                                       "late": {a: s.get("late_heard", 0) for a, s in idle_stats.items()}}
                if not args.no_busy:
                    busy_dir = work / f"{name}-{seed}-busy"
                    busy_rec, busy_stats = play(path, seed, args.bars, busy_dir, busy=True)
                    busy = measure(busy_rec, path, args.bars)
                    run["busy"] = busy
                    run["busy_ratio"] = {p: busy[p]["notes"] / v["notes"] for p, v in run["idle"].items()
                                         if v["notes"] and p in busy}
                    run["busy_exact"] = exact_share(idle_rec, busy_rec)
                    run["busy_behind"] = {a: s.get("behind_beats", 0) for a, s in busy_stats.items()}
                    run["busy_late"] = {a: s.get("late_heard", 0) for a, s in busy_stats.items()}
                runs.append(run)
            results["ensembles"][name] = runs
    results["verdicts"] = verdicts(results)
    results["seconds"] = time.perf_counter() - t0
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
