"""Faults inflicted for real: an agent killed with SIGKILL mid-note leaves nothing droning."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.ensembles import ROOT, wait_for, write_ensemble
from support.jack import JackServer, MidiCapture
from support.procs import children, cmdline

pytestmark = [pytest.mark.network, pytest.mark.slow]


def start_pads(tmp_path: Path, client: str) -> subprocess.Popen[str]:
    """An 8-bar run of one part holding a chord nearly a whole bar, to the capture port `client`."""
    pads = {
        "name": "pads",
        "channel": 3,
        "range": [48, 76],
        "engine": {"type": "pattern", "voicing": "chord", "rhythm": [{"beat": 0, "duration": 3.9}]},
        "output": {"type": "midi", "port": f"{client}:in", "api": "jack"},
    }
    yaml_path = write_ensemble(tmp_path, {"agents": [pads]})
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--bars", "8", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkilled_agent_mid_note_is_silenced_and_plays_on(tmp_path: Path, jack_server: JackServer) -> None:
    with MidiCapture(client_name="fcap") as cap:
        proc = start_pads(tmp_path, "fcap")
        try:
            # Wait until chord notes are sounding (on, not yet off), then kill the agent without warning.
            wait_for(lambda: cap.stuck_notes(), 30, "a sounding chord")
            [pid] = [k for k in children(proc.pid) if " pads " in cmdline(k) + " "]
            os.kill(pid, signal.SIGKILL)
            killed = time.perf_counter()
            held = cap.stuck_notes()
            assert held, "the chord should still be sounding at the kill"
            # The restarted agent silences its channel as it opens, before it plays again.
            wait_for(lambda: not (cap.stuck_notes() & held), 10, "the killed agent's notes to be released")
            released = time.perf_counter() - killed
            wait_for(
                lambda: [c for c in cap.notes_on() if c.time > killed], 15, "the restarted agent to play"
            )
            assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
        assert cap.stuck_notes() == set()
    assert released < 10


def test_a_sigkilled_output_host_mid_note_is_silenced_and_every_part_plays_on(
    tmp_path: Path, jack_server: JackServer
) -> None:
    """The machine's one writer (agents/output_host.py) killed with the chord sounding: its agents end
    with it, the launcher restarts them all, and the part's channel is silenced as the new host
    opens it, before it plays again."""
    with MidiCapture(client_name="hcap") as cap:
        proc = start_pads(tmp_path, "hcap")
        try:
            wait_for(lambda: cap.stuck_notes(), 30, "a sounding chord")
            [host] = [k for k in children(proc.pid) if "agents.output_host" in cmdline(k)]
            os.kill(host, signal.SIGKILL)
            killed = time.perf_counter()
            held = cap.stuck_notes()
            assert held, "the chord should still be sounding at the kill"
            wait_for(lambda: not (cap.stuck_notes() & held), 15, "the chord to be released")
            wait_for(
                lambda: [c for c in cap.notes_on() if c.time > killed], 20, "the part to play again"
            )
            assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
            err = proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
        assert cap.stuck_notes() == set()
    assert "outputs outputs exited" in err and "restarting it" in err, err
