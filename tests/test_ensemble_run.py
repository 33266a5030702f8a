"""Whole ensembles as a user runs them: real processes, real UDP sockets, a real MIDI file out."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import mido
import pytest
from support.ensembles import play_bars, start_launcher, wait_for, write_ensemble
from support.monitor import BusMonitor
from support.net_fixtures import free_port
from support.procs import alive, children, cmdline

pytestmark = [pytest.mark.network, pytest.mark.slow]

REPORT_PART_KEYS = {"notes", "late_notes", "dropped_late", "timing_ms", "sync", "invalid_messages",
                    "restarts"}


def check_report(report: dict, agents: list[str], human: str | None) -> None:
    assert report["stuck_notes"] == 0
    for name in agents + ([human] if human else []):
        part = report["parts"][name]
        assert REPORT_PART_KEYS <= set(part), name
        assert set(part["timing_ms"]) >= {"p50", "p99", "max"}
        assert set(part["sync"]) >= {"offset_ms", "rtt_ms"}
    for name in agents:
        assert report["parts"][name]["notes"] > 0, name
        assert report["parts"][name]["restarts"] == 0


def check_recording(path: Path, parts: list[str]) -> dict[str, int]:
    mid = mido.MidiFile(str(path))
    counts = {}
    for track in mid.tracks:
        names = [m.name for m in track if m.type == "track_name"]
        if names and names[0] in parts:
            counts[names[0]] = sum(1 for m in track if m.type == "note_on" and m.velocity > 0)
    assert set(counts) == set(parts)
    return counts


def test_pattern_ensemble_plays_records_and_reports(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path)  # the model-free ensemble: every note predictable
    bars = 8
    report = play_bars(yaml_path, bars, tmp_path)
    assert report["bus"] == "osc"
    check_report(report, ["bass", "piano", "drums"], "melody")
    counts = check_recording(tmp_path / "out.mid", ["melody", "bass", "piano", "drums"])
    assert all(counts[p] > 0 for p in ("bass", "piano", "drums", "melody")), counts
    # Bass plays two notes a bar, then holds the final chord's root: what the agent reports sending
    # is what the recording holds.
    assert counts["bass"] == 2 * bars + 1
    # The run ends on the bar line with the held chord: nothing spills past its release, so what was
    # sent is what was recorded.
    # the recording has what the part committed: what it played, and what a stall left out
    bass = report["parts"]["bass"]
    assert bass["notes"] + bass["dropped_late"] == counts["bass"]


def test_sigterm_stops_every_process_within_two_seconds(tmp_path: Path) -> None:
    monitor_port = free_port()
    yaml_path = write_ensemble(tmp_path, {"bus": {"osc": {"monitor_port": monitor_port}}})
    mon = BusMonitor("demo", monitor_port)
    proc = start_launcher(yaml_path, "--report", str(tmp_path / "r.json"))
    try:
        mon.wait(lambda: len(mon.notes("piano")) >= 3, 30, "piano notes on the bus")
        kids = children(proc.pid)
        assert len(kids) == 5  # the conductor, three agents and the output process that plays them
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        proc.wait(timeout=10)
        wait_for(
            lambda: not any(alive(k) for k in kids),
            2.0 - (time.monotonic() - t0) + 0.5,
            "every child to exit",
        )
        assert time.monotonic() - t0 <= 2.5
    finally:
        mon.close()
        if proc.poll() is None:
            proc.kill()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["stuck_notes"] == 0
    assert all(p["stuck_notes"] == 0 for n, p in report["parts"].items() if p["role"] == "agent")


def test_a_killed_agent_is_restarted_and_plays_on(tmp_path: Path) -> None:
    monitor_port = free_port()
    yaml_path = write_ensemble(tmp_path, {"bus": {"osc": {"monitor_port": monitor_port}}})
    mon = BusMonitor("demo", monitor_port)
    proc = start_launcher(yaml_path, "--bars", "12", "--report", str(tmp_path / "r.json"))
    try:
        mon.wait(lambda: len(mon.notes("bass")) >= 2, 30, "bass notes on the bus")
        bass = [k for k in children(proc.pid) if " bass " in cmdline(k) + " "]
        assert len(bass) == 1
        os.kill(bass[0], signal.SIGKILL)
        killed = time.monotonic()
        # Rejoin time proper (goal 2 s) is measured in bench/faults.py on an idle machine; here the
        # bound only has to catch a restart that never comes back.
        mon.wait(lambda: mon.notes("bass", after=killed + 0.05), 8.0, "the restarted bass to commit a note")
        # The others played on meanwhile.
        assert mon.notes("drums", after=killed)
        proc.wait(timeout=60)
    finally:
        mon.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["parts"]["bass"]["restarts"] == 1
    assert report["parts"]["piano"]["restarts"] == 0


def test_the_same_run_over_mqtt_against_a_real_mosquitto(tmp_path: Path, mosquitto) -> None:
    yaml_path = write_ensemble(
        tmp_path, {"bus": {"transport": "mqtt", "mqtt": {"host": mosquitto.host, "port": mosquitto.port}}}
    )
    report = play_bars(yaml_path, 4, tmp_path)
    assert report["bus"] == "mqtt"
    check_report(report, ["bass", "piano", "drums"], "melody")
    counts = check_recording(tmp_path / "out.mid", ["melody", "bass", "piano", "drums"])
    assert counts["bass"] == 2 * 4 + 1  # and the final chord's root
    for name in ("bass", "piano", "drums"):
        assert report["parts"][name]["sync"]["rtt_ms"] > 0
        # Clock sync goes straight to the conductor over UDP, not through the broker (bus.sync: udp).
        assert report["parts"][name]["sync"]["via"] == "udp"
