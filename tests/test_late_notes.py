"""A stalled agent leaves out the notes it can no longer play in time, instead of playing them late.

WHY real processes: the stall is the kernel's (SIGSTOP, as a swapping machine or a debugger stops a
process), and what is checked is what the agent's timing thread does when it runs again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.ensembles import ROOT, read_json, wait_for, write_ensemble
from support.procs import alive, children, cmdline

from agents.agent import DROP_LATE_S

PATTERNS = ROOT / "ensembles" / "patterns.yaml"


def _agent_pid(launcher: int, name: str) -> int:
    pids = [k for k in children(launcher) if " -m agents " in cmdline(k) and f" {name}" in cmdline(k)
            and alive(k)]
    assert len(pids) == 1, pids
    return pids[0]


@pytest.mark.slow
@pytest.mark.network
def test_a_stalled_agent_leaves_out_what_it_would_play_late_and_no_note_sticks(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path, source=PATTERNS)
    stats, report = tmp_path / "stats", tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", "--bars", "10",
         "--stats-dir", str(stats), "--report", str(report)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    stopped: int | None = None
    try:
        wait_for(lambda: read_json(stats / "agent-piano.json").get("notes", 0) >= 4, 60, "the piano playing")
        stopped = _agent_pid(proc.pid, "piano")
        os.kill(stopped, signal.SIGSTOP)
        time.sleep(1.5)  # the stall itself (3 beats at 120 BPM): nothing to wait on but time
        os.kill(stopped, signal.SIGCONT)
        stopped = None
        _, err = proc.communicate(timeout=90)
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    parts = json.loads(report.read_text())["parts"]
    assert parts["piano"]["dropped_late"] >= 1, parts["piano"]
    # what it did start, it started in time, whatever was due during the stall (the note-offs of a
    # chord sounding when it stopped go out late: the notes must end)
    assert parts["piano"]["timing_ms"]["onset_max"] <= DROP_LATE_S * 1000 + 50, parts["piano"]
    assert all(parts[p]["dropped_late"] == 0 for p in ("bass", "drums")), parts
    assert json.loads(report.read_text())["stuck_notes"] == 0
