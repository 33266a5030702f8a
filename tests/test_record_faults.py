"""The recording and the report survive faults: every note the agents played is in the recording, and
the report counts what the recording holds, after a conductor restart and through a broker outage.

WHY real faults: notes are fire-and-forget on the bus, so what a fault loses is exactly what a real
process kill or broker stop loses (a UDP port gone, a TCP link dropped with data in flight). The
agents' own counts (their stats files: notes played, notes committed) are the ground truth compared
against the MIDI file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import mido
import pytest
from support.broker import Mosquitto
from support.ensembles import ROOT, read_json, recorded_notes, wait_for, write_ensemble
from support.procs import alive, children, cmdline

pytestmark = [pytest.mark.network, pytest.mark.slow]

AGENTS = ("bass", "piano", "drums")
HUMAN = "melody"


def start(yaml_path: Path, tmp: Path, bars: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", "--bars", str(bars),
         "--record", str(tmp / "out.mid"), "--report", str(tmp / "report.json"),
         "--stats-dir", str(tmp / "stats")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip


def agent_stats(tmp: Path) -> dict[str, dict[str, Any]]:
    return {a: read_json(tmp / "stats" / f"agent-{a}.json") for a in AGENTS}


def max_onset(path: Path, part: str) -> int:
    """The most notes `part` starts at one moment in the recording (a chord's size)."""
    for track in mido.MidiFile(str(path)).tracks:
        if [m.name for m in track if m.type == "track_name"][:1] == [part]:
            tick, starts = 0, Counter[int]()
            for m in track:
                tick += m.time
                if m.type == "note_on" and m.velocity > 0:
                    starts[tick] += 1
            return max(starts.values(), default=1)
    return 1


def finish(proc: subprocess.Popen[str], timeout: float) -> str:
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


def check_counts(tmp: Path, err: str) -> dict[str, Any]:
    """Report == recording for every part; every note an agent played is in the recording."""
    report = json.loads((tmp / "report.json").read_text())
    file_counts = recorded_notes(tmp / "out.mid")
    # every note committed: played, or left out by a stall (docs/timing.md)
    played = {a: s["notes"] + s.get("dropped_late", 0) for a, s in agent_stats(tmp).items()}
    recording = {a: s.get("recording", {}) for a, s in agent_stats(tmp).items()}
    summary = {"file": file_counts, "played": played,
               "report": {p: (v["notes"], v.get("recorded")) for p, v in report["parts"].items()},
               "agents_recording": recording}  # fmt: skip
    print(f"\n{json.dumps(summary)}")
    for part in (*AGENTS, HUMAN):
        sounded = report["parts"][part]["notes"] + report["parts"][part].get("dropped_late", 0)
        assert sounded == file_counts[part], (part, summary, err[-2000:])
        assert report["parts"][part]["recorded"] == file_counts[part], (part, summary)
    for a in AGENTS:
        assert file_counts[a] == played[a] > 0, (a, summary)
    assert report["stuck_notes"] == 0
    return summary


def test_conductor_restart_mid_run_loses_nothing_from_the_recording_or_the_report(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path)
    proc = start(yaml_path, tmp_path, bars=14)
    stopped = False
    try:
        wait_for(lambda: all(s.get("notes", 0) >= 4 for s in agent_stats(tmp_path).values()), 30,
                 "every agent playing")  # fmt: skip
        [conductor] = [k for k in children(proc.pid) if " -m conductor " in cmdline(k) and alive(k)]
        # The launcher brings a conductor back within about a second; frozen, it waits for our cue, so
        # the agents surely play (and send into the void) while no conductor is there.
        os.kill(proc.pid, signal.SIGSTOP)
        stopped = True
        os.kill(conductor, signal.SIGKILL)
        down = {a: s.get("notes", 0) for a, s in agent_stats(tmp_path).items()}
        wait_for(lambda: all(s.get("notes", 0) >= down[a] + 3 for a, s in agent_stats(tmp_path).items()),
                 10, "every agent to play notes while the conductor is down")  # fmt: skip
        os.kill(proc.pid, signal.SIGCONT)
        stopped = False
        err = finish(proc, 90)
    finally:
        if stopped:
            os.kill(proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert "conductor exited with -9; restarting it" in err, err
    summary = check_counts(tmp_path, err)
    # The notes played while it was down reached the recording because they were sent again.
    assert all(summary["agents_recording"][a].get("resent", 0) >= 1 for a in AGENTS), summary


def test_broker_outage_mid_run_loses_nothing_from_the_recording(tmp_path: Path, mosquitto: Mosquitto) -> None:
    yaml_path = write_ensemble(
        tmp_path, {"bus": {"transport": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}}}
    )
    proc = start(yaml_path, tmp_path, bars=16)
    try:
        wait_for(lambda: all(s.get("notes", 0) >= 4 for s in agent_stats(tmp_path).values()), 30,
                 "every agent playing")  # fmt: skip
        before = {a: s.get("notes", 0) for a, s in agent_stats(tmp_path).items()}
        mosquitto.stop()
        time.sleep(2.0)  # the outage itself
        during = {a: s.get("notes", 0) - before[a] for a, s in agent_stats(tmp_path).items()}
        mosquitto.start()
        err = finish(proc, 90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(n >= 1 for n in during.values()), during  # they played on through the outage
    summary = check_counts(tmp_path, err)
    assert all(summary["agents_recording"][a].get("resent", 0) >= 1 for a in AGENTS), summary


def test_a_stop_by_sigterm_records_what_was_played_not_what_was_planned(tmp_path: Path) -> None:
    """Agents commit about a beat ahead; at a SIGTERM those notes never sound, so the file ends there."""
    yaml_path = write_ensemble(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", "--record",
         str(tmp_path / "out.mid"), "--report", str(tmp_path / "report.json"),
         "--stats-dir", str(tmp_path / "stats")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    try:
        wait_for(lambda: all(s.get("notes", 0) >= 8 for s in agent_stats(tmp_path).values()), 30,
                 "every agent playing")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        finish(proc, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = json.loads((tmp_path / "report.json").read_text())
    file_counts = recorded_notes(tmp_path / "out.mid")
    played = {a: s["notes"] for a, s in agent_stats(tmp_path).items()}
    print(f"\nsigterm: file {file_counts} played {played}")
    for a in AGENTS:
        assert report["parts"][a]["recorded"] == file_counts[a], (a, file_counts, report["parts"][a])
        # The launcher signals the agents a moment before the conductor: a note due in that moment
        # is recorded but not played (at most one); on a loaded machine an agent slow to take its
        # signal may still sound the chord due then, after the conductor's last beat. Either way one
        # onset at most; the beat of commits ahead would be more.
        chord = max_onset(tmp_path / "out.mid", a)
        assert -chord <= file_counts[a] - played[a] <= max(1, chord), (a, file_counts, played)
    assert report["parts"][HUMAN]["notes"] == file_counts[HUMAN]
