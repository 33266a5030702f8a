"""Ensemble files for tests: the shipped YAML with free loopback ports and test-specific overrides."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mido
import yaml

from bench.ensemble_procs import free_udp_block
from support.net_fixtures import free_port

ROOT = Path(__file__).resolve().parents[2]
# Tests run the model-free ensemble: every note is predictable, so timing and routing can be checked
# to the note. The shipped default (with the model) has its own test.
DEFAULT = ROOT / "ensembles" / "patterns.yaml"
SHIPPED_DEFAULT = ROOT / "ensembles" / "default.yaml"


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_ensemble(tmp: Path, overrides: dict[str, Any] | None = None, *, source: Path = DEFAULT) -> Path:
    """A copy of `source` with free ports and absolute paths, written to tmp/ensemble.yaml."""
    data = yaml.safe_load(source.read_text())
    n = len(data.get("agents", [])) + 2
    data = merge(data, {"bus": {"osc": {"base_port": free_udp_block(n)}}, "control": {"port": free_port()}})
    human = data.get("human")
    if human and human.get("source", {}).get("path"):
        human["source"]["path"] = str((source.parent / human["source"]["path"]).resolve())
    data = merge(data, overrides or {})
    path = tmp / "ensemble.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_launcher(
    args: list[str], timeout: float = 120.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "run_ensemble.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def play_bars(yaml_path: Path, bars: int, out: Path, *extra: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run the launcher for `bars` bars with --record out/out.mid and --report; return the report."""
    proc = run_launcher(
        [
            str(yaml_path),
            "--bars",
            str(bars),
            "--record",
            str(out / "out.mid"),
            "--report",
            str(out / "report.json"),
            "--quiet",
            *extra,
        ],
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "report.json").read_text())


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll a condition until it holds; fail with `what` named if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)  # a poll step: the loop above is bounded by the deadline
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def recorded_notes(path: Path) -> dict[str, int]:
    """Per part (track name), how many note-ons a recording holds."""
    counts: dict[str, int] = {}
    for track in mido.MidiFile(str(path)).tracks:
        names = [m.name for m in track if m.type == "track_name"]
        if names:
            counts[names[0]] = sum(1 for m in track if m.type == "note_on" and m.velocity > 0)
    return counts


def start_launcher(yaml_path: Path, *extra: str, env: dict[str, str] | None = None,
                   new_session: bool = False) -> subprocess.Popen[str]:
    """run_ensemble.py with its stdout on a pipe, as `out=$(python run_ensemble.py ...)` has it;
    ``new_session``: in a process group of its own, as a terminal's job is."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=new_session,
    )


def finish_launcher(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[str, str]:
    """Wait for a launcher and for EOF on its stdout: a process left holding it would hang here."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        what = f"the launcher, or a process it left, kept stdout open for {timeout} s"
        raise AssertionError(f"{what}\n{err}") from None
    return out, err


def recorded_onsets(path: Path, track: str) -> list[float]:
    """The beats at which a recorded MIDI file's track strikes a note."""
    mid = mido.MidiFile(str(path))
    for t in mid.tracks:
        if any(m.type == "track_name" and m.name == track for m in t):
            beats, now = [], 0
            for m in t:
                now += m.time
                if m.type == "note_on" and m.velocity > 0:
                    beats.append(now / mid.ticks_per_beat)
            return beats
    raise AssertionError(f"no track {track} in {path}")
