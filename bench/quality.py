"""How musical the shipped model is: the corpus, the model free-running, and agents in a real ensemble.

Three sources, measured with the same functions (analysis/metrics.py: MusPy's pitch-class entropy,
scale consistency and groove consistency, plus note density and pitch range):

* ``corpus``: the held-out pieces of the training corpus, split exactly as ``python -m training``
  splits it (music21 Bach + folk, every piece in C major / A minor, 5 % held out, seed 0), both per
  voice (one part, as an agent plays one part) and whole pieces.
* ``free run``: the model sampled from BOS with SkyTNT's defaults (training/card.py's loop), several
  pieces, per voice and whole.
* ``ensemble``: ensembles/default.yaml played by the launcher for ``--bars`` bars with ``--record``;
  the bass and piano tracks are measured, and their strong-beat chord-tone rate is taken against the
  YAML's chord plan. While it plays, the resident memory (VmRSS) of each model agent's process and of
  its model process is sampled from /proc; the peak of each is reported.

Goals (issue "A default model that ships"): agents within 10 % of the per-voice corpus on the three
MMT metrics, strong-beat chord-tone rate >= 0.9, RSS <= 150 MB per agent. The per-voice corpus is the
fair reference for one agent's part: a whole chorale has four voices, so its bars are busier and its
groove more regular than any single line.

    .venv/bin/python -m bench.quality [--smoke] [--bars 16] [--pieces 4] [--json PATH] [--plot PNG]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from agents.model.vocab import VOCAB_V2
from analysis.metrics import NoteTriple, chord_tone_rate, summary
from protocol.harmony import ChordPlan

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "default"
ENSEMBLE = ROOT / "ensembles" / "default.yaml"
SMOKE_MIDI = ROOT / "tests" / "fixtures" / "skytnt"
MODEL_AGENTS = ("bass", "piano")
DRUMS = 9
MMT = ("pitch_class_entropy", "scale_consistency", "groove_consistency")
TOLERANCE = 0.10
# per-voice corpus values from a full run, for --ensemble-only (tuning runs that skip the corpus)
REFERENCE = {"pitch_class_entropy": 2.711, "scale_consistency": 0.941, "groove_consistency": 0.874}
CHORD_GOAL = 0.90
RSS_GOAL_MB = 150.0
_V = VOCAB_V2


# ---- notes from token rows ----------------------------------------------------------------------
def rows_to_voices(rows: np.ndarray) -> dict[tuple[int, int], list[NoteTriple]]:
    """Pitched notes per (track, channel), in beats; time1 counts beats from the previous event."""
    voices: dict[tuple[int, int], list[NoteTriple]] = {}
    beat = 0
    for row in rows:
        ev = _V.decode(row)
        if ev is None:
            continue
        beat += ev[1]
        if ev[0] == "note" and ev[4] != DRUMS:
            voices.setdefault((ev[3], ev[4]), []).append((beat + ev[2] / 16, max(1, ev[7]) / 16, ev[5]))
    return voices


def mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each measure over pieces (or voices) that have at least two notes."""
    rows = [r for r in rows if r["notes"] >= 2]
    if not rows:
        return {}
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"n": len(rows)}


def measure_rows(pieces: Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    """Per-voice, lowest-voice (the bass agent's counterpart) and whole-piece means over pieces."""
    per_voice, lowest, whole = [], [], []
    for rows in pieces:
        voices = [sorted(v) for v in rows_to_voices(rows).values() if len(v) >= 2]
        per_voice += [summary(v) for v in voices]
        if len(voices) > 1:
            lowest.append(summary(min(voices, key=lambda v: float(np.mean([p for _, _, p in v])))))
        whole.append(summary(sorted(n for v in voices for n in v)))
    return {"per voice": mean_rows(per_voice), "lowest voice": mean_rows(lowest), "whole": mean_rows(whole)}


# ---- the three sources --------------------------------------------------------------------------
def corpus_pieces(smoke: bool = False) -> list[np.ndarray]:
    """The held-out pieces, split as training/__main__.py splits them (tokens cached by training).

    `smoke`: the two MIDI files of the test fixtures instead of music21's corpus (whose first
    tokenization takes minutes), read through the same loader, key change and split.
    """
    from training.data import load_corpus, to_c

    if smoke:
        corpus = to_c(load_corpus((), midi_dir=SMOKE_MIDI, workers=1, cache=False))
    else:
        corpus = to_c(load_corpus(("bach", "folk"), workers=2))
    return corpus.split(0.05, seed=0)[1].pieces


def free_run(pieces: int, events: int) -> tuple[list[np.ndarray], float]:
    """Model pieces sampled from BOS with SkyTNT's defaults, and the events/s of that loop."""
    from agents.model.runtime import ModelRuntime
    from training.card import generate

    rt = ModelRuntime(MODEL)
    out, speeds = [], []
    for seed in range(pieces):
        rows, speed = generate(rt, events, seed)
        out.append(rows)
        speeds.append(speed)
    return out, statistics.median(speeds)


def _mem_kb(pid: int, file: str = "status", field: str = "VmRSS:") -> int:
    """VmRSS from /proc/PID/status, or Pss from smaps_rollup: RSS counts the pages a forked model
    process still shares with its agent twice, PSS splits them, so PSS adds up across processes."""
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _agent_pids(launcher: int) -> dict[str, int]:
    """Agent name -> pid, for the launcher's children started as `python -m agents YAML NAME ...`."""
    found = {}
    for pid in _children(launcher):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "agents" in argv and argv.index("agents") + 2 < len(argv):
            found[argv[argv.index("agents") + 2]] = pid
    return found


RSS = dict[str, dict[str, float]]


def ensemble_run(bars: int, workdir: Path, engine: dict[str, object],
                 chords: str | None = None) -> tuple[Path, RSS, dict]:
    """Play ensembles/default.yaml (free ports) for `bars` bars with --record, sampling RSS meanwhile;
    `engine` overrides the model agents' engine settings and `chords` the chord plan (to try values
    before changing the YAML). Returns the recording, the peak RSS (MB) of each model agent and its
    model process, and the YAML as played (its plan is the one the chord-tone rate is judged by)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.ensembles import SHIPPED_DEFAULT, write_ensemble

    ens = yaml.safe_load(ENSEMBLE.read_text())
    for agent in ens["agents"]:
        for key, value in engine.items():
            who, _, setting = key.rpartition(".")
            if agent["name"] in MODEL_AGENTS and who in ("", agent["name"]):
                agent["engine"][setting] = value
    if chords is not None:
        ens["chords"] = chords
    path = write_ensemble(workdir, {"agents": ens["agents"], "chords": ens["chords"]}, source=SHIPPED_DEFAULT)
    record = workdir / "session.mid"
    cmd = [sys.executable, str(ROOT / "run_ensemble.py"), str(path), "--bars", str(bars), "--record",
           str(record), "--quiet"]
    rss: RSS = {a: {"agent_mb": 0.0, "model_mb": 0.0, "agent+model_pss_mb": 0.0} for a in MODEL_AGENTS}
    log_path = workdir / "launcher.log"
    # The log goes to a file, not a pipe: a process that outlives the launcher would hold a pipe open
    # and the read would never end. Its own session, so whatever outlives it can be found and ended.
    with open(log_path, "wb") as log_file, subprocess.Popen(
        cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
    ) as proc:
        while proc.poll() is None:
            for name, pid in _agent_pids(proc.pid).items():
                if name in rss:
                    r = rss[name]
                    kids = _children(pid)
                    r["agent_mb"] = max(r["agent_mb"], _mem_kb(pid) / 1024)
                    r["model_mb"] = max(r["model_mb"], sum(_mem_kb(k) for k in kids) / 1024)
                    pss = sum(_mem_kb(k, "smaps_rollup", "Pss:") for k in (pid, *kids))
                    r["agent+model_pss_mb"] = max(r["agent+model_pss_mb"], pss / 1024)
            time.sleep(0.25)  # a sampling period, not a wait for a condition
    end_leftovers(proc.pid)
    log = log_path.read_text(errors="replace")
    if proc.returncode != 0 or not record.exists():
        raise SystemExit(f"the ensemble run failed (exit {proc.returncode}):\n{log[-3000:]}")
    return record, rss, ens


def end_leftovers(session: int) -> None:
    """SIGKILL whatever of the launcher's session still runs after it exited, one `leftover: PID
    CMDLINE` line each on stderr (as tests/support/reaper.py names them): every process should have
    ended with the launcher, and one left behind would hold the machine for good."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":  # fields[3] is the session id
            print(f"leftover: {stat.parent.name} {cmd}", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(stat.parent.name), signal.SIGKILL)


def measure_recording(record: Path, ens: dict) -> dict[str, dict[str, float]]:
    from launcher.plot import read_tracks

    bpb = int(ens.get("meter", 4))
    plan = ChordPlan.parse(ens["chords"], loop=bool(ens.get("loop", True)), key=str(ens.get("key", "C")))
    tracks, _ = read_tracks(record)
    out = {}
    parts = {t.name: sorted((s, d, p) for s, d, p, _ in t.notes) for t in tracks}
    parts["bass+piano"] = sorted(n for a in MODEL_AGENTS for n in parts.get(a, []))
    for name in (*MODEL_AGENTS, "bass+piano"):
        notes = parts.get(name, [])
        row = summary(notes, bpb)
        rate, judged = chord_tone_rate(notes, plan, bpb)
        row["strong_beat_chord_tone_rate"], row["strong_beat_notes"] = rate, judged
        out[name] = row
    return out


# ---- report -------------------------------------------------------------------------------------
def verdicts(results: dict) -> list[str]:
    """One line per goal, pass or miss, against the per-voice corpus (the bass also against the lowest
    voices, its musical counterpart, for information)."""
    ref = results.get("corpus", {}).get("per voice") or REFERENCE
    low = results.get("corpus", {}).get("lowest voice", {})
    lines = []
    for part in MODEL_AGENTS:
        row = results["ensemble"][part]
        for k in MMT:
            off = (row[k] - ref[k]) / ref[k]
            extra = f"; lowest voices {low[k]:.3f}" if part == "bass" and k in low else ""
            lines.append(f"{part} {k}: {row[k]:.3f} vs corpus {ref[k]:.3f} ({off:+.1%}) "
                         f"{'ok' if abs(off) <= TOLERANCE else 'MISS'}{extra}")
        rate, judged = row["strong_beat_chord_tone_rate"], row["strong_beat_notes"]
        lines.append(f"{part} strong-beat chord-tone rate: {rate:.3f} of {judged} notes "
                     f"{'ok' if rate >= CHORD_GOAL else 'MISS'} (goal >= {CHORD_GOAL})")
        for k, v in results["rss_mb"][part].items():
            what = "PSS" if "pss" in k else "RSS"
            lines.append(f"{part} peak {k.replace('_pss_mb', '').replace('_mb', '')} {what}: {v:.0f} MB "
                         f"{'ok' if v <= RSS_GOAL_MB else 'MISS'} (goal <= {RSS_GOAL_MB:.0f})")
    return lines


def print_table(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Shipped model quality (models/default)")
    cols = [("source", "source"), ("notes", "notes"), ("pitch_class_entropy", "PC entropy"),
            ("scale_consistency", "scale cons."), ("groove_consistency", "groove cons."),
            ("strong_beat_chord_tone_rate", "strong-beat chord tones"), ("notes_per_bar", "notes/bar"),
            ("pitch_range", "range")]
    for _, title in cols:
        table.add_column(title, justify="left" if title == "source" else "right")
    rows = [(f"corpus held-out, {k} (n={v.get('n', 0)})", v) for k, v in results.get("corpus", {}).items()]
    rows += [(f"free run, {k} (n={v.get('n', 0)})", v) for k, v in results.get("free_run", {}).items()]
    rows += [(f"ensemble {k}", v) for k, v in results["ensemble"].items()]
    for label, v in rows:
        cells = [label]
        for key, _ in cols[1:]:
            x = v.get(key)
            cells.append("-" if x is None or (isinstance(x, float) and math.isnan(x)) else
                         f"{x:.0f}" if key in ("notes", "pitch_range") else f"{x:.3f}")
        table.add_row(*cells)
    console = Console(width=150)
    console.print(table)
    for line in verdicts(results):
        console.print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=16, help="bars the ensemble plays")
    ap.add_argument("--pieces", type=int, default=4, help="free-running pieces")
    ap.add_argument("--events", type=int, default=300, help="events per free-running piece")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    ap.add_argument("--plot", metavar="PNG", help="draw the ensemble passage with its chord plan here")
    ap.add_argument("--keep", metavar="MID", help="keep the ensemble recording here")
    ap.add_argument("--ensemble-only", action="store_true", help="skip the corpus and the free run")
    ap.add_argument("--engine", metavar="KEY=VALUE", action="append", default=[],
                    help="set both model engines' chord_bias=5, or one's: bass.density=0.8")
    ap.add_argument("--chords", metavar="PLAN", help="play (and judge) this chord plan instead of the YAML's")
    ap.add_argument("--smoke", action="store_true",
                    help="2 fixture pieces, 1 free-run piece of 16 events, 4 bars: proves the bench runs, "
                         "measures nothing")
    args = ap.parse_args(argv)
    if args.smoke:
        args.pieces, args.events, args.bars = 1, 16, 4
    engine = {k: yaml.safe_load(v) for k, v in (e.split("=", 1) for e in args.engine)}
    t0 = time.perf_counter()
    results: dict = {"load_average": os.getloadavg(), "smoke": args.smoke}
    if not args.ensemble_only:
        results["corpus"] = measure_rows(corpus_pieces(args.smoke))
        pieces, speed = free_run(args.pieces, args.events)
        results["free_run"] = measure_rows(pieces)
        results["free_run_events_per_s"] = speed
    with tempfile.TemporaryDirectory(prefix="barcelona-quality-") as tmp:
        record, rss, ens = ensemble_run(args.bars, Path(tmp), engine, args.chords)
        results["ensemble"] = measure_recording(record, ens)
        results["rss_mb"] = rss
        results["engine_settings"] = {a["name"]: a["engine"] for a in ens["agents"]
                                      if a["name"] in MODEL_AGENTS}
        results["chords"] = ens["chords"]
        if args.keep:
            Path(args.keep).write_bytes(record.read_bytes())
        if args.plot:
            from launcher.plot import plot_piano_roll

            plot_piano_roll(record, args.plot, chords=ens["chords"], beats_per_bar=int(ens.get("meter", 4)),
                            loop=bool(ens.get("loop", True)), key=str(ens.get("key", "C")), size=(1400, 700),
                            title=f"ensembles/default.yaml, {args.bars} bars: bass and piano by "
                                  "models/default")
    results["seconds"] = time.perf_counter() - t0
    results["verdicts"] = verdicts(results)
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
