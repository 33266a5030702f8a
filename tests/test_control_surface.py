"""Steering a running ensemble the way Max/MSP and TouchOSC do: floats for ints, wildcard addresses.

Each change must show in the recording at the right bar: a tempo change on the next bar line, a
mute from the next uncommitted note, a chord-plan edit from the edited bar.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from support.ensembles import ROOT, write_ensemble
from support.monitor import BusMonitor
from support.net_fixtures import free_port

from protocol.harmony import parse_chord
from protocol.timeline import Timeline

pytestmark = [pytest.mark.network, pytest.mark.slow]


def send(port: int, address: str, *args: tuple[str, object]) -> None:
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b.build().dgram, ("127.0.0.1", port))


def notes_by_track(path: Path) -> tuple[dict[str, list[tuple[float, int]]], list[tuple[float, float]]]:
    mid = mido.MidiFile(str(path))
    tracks, tempos = {}, []
    for track in mid.tracks:
        t, name, notes = 0, None, []
        for m in track:
            t += m.time
            if m.type == "track_name":
                name = m.name
            elif m.type == "note_on" and m.velocity > 0:
                notes.append((t / mid.ticks_per_beat, m.note))
            elif m.type == "set_tempo":
                tempos.append((t / mid.ticks_per_beat, mido.tempo2bpm(m.tempo)))
        tracks[name] = notes
    return tracks, tempos


def test_tempo_mute_and_plan_changes_land_at_the_right_bar(tmp_path: Path) -> None:
    monitor_port = free_port()
    yaml_path = write_ensemble(tmp_path, {"bus": {"osc": {"monitor_port": monitor_port}}, "chords": "C"})
    control_port = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    mon = BusMonitor("demo", monitor_port)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_ensemble.py"),
            str(yaml_path),
            "--bars",
            "9",
            "--record",
            str(tmp_path / "out.mid"),
            "--report",
            str(tmp_path / "r.json"),
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def beat() -> float:
            tl = mon.timeline()
            return tl.beat_at(time.monotonic()) if tl is not None and tl.playing else -1.0

        mon.wait(lambda: beat() >= 5.0, 30, "bar 1 to be under way")
        # Bar 1 (beats 4-8): tempo as a float32, like Max's [udpsend]; takes effect at bar 2 (beat 8).
        send(control_port, "/barcelona/demo/tempo", ("f", 150.0))
        mon.wait(lambda: beat() >= 13.0, 30, "bar 3")
        # Bar 3: a new two-bar plan (C then F, looping) replaces the one-bar plan of C.
        send(control_port, "/barcelona/demo/plan", ("s", "C | F"))
        mon.wait(lambda: beat() >= 21.0, 30, "bar 5")
        mute_beat = beat()
        send(control_port, "/barcelona/demo/agent/b*/mute", ("f", 1.0))
        # A stranger's garbage and a bad value change nothing.
        send(control_port, "/barcelona/demo/tempo", ("s", "fast"))
        send(control_port, "/barcelona/demo/agent/bass/temperature", ("f", float("nan")))
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        mon.close()
        if proc.poll() is None:
            proc.kill()
    tracks, tempos = notes_by_track(tmp_path / "out.mid")
    assert any(abs(b - 8.0) < 1e-6 and abs(t - 150.0) < 0.01 for b, t in tempos), tempos
    # The new plan alternates C and F bars from when it arrived: a bar with F in the bass after beat 16.
    f_pc, c_pc = parse_chord("F").root, parse_chord("C").root
    bass = tracks["bass"]
    assert any(b >= 16 and p % 12 == f_pc for b, p in bass)
    assert all(p % 12 in (c_pc, parse_chord("C").tones[2]) for b, p in bass if b < 12)
    # Muted from the next uncommitted note: at most one beat of lookahead after the mute was sent.
    assert bass and not [b for b, _ in bass if b > mute_beat + 2.0], bass
    assert [b for b, _ in tracks["piano"] if b > mute_beat + 2.0], "only b* was muted"
    assert any(isinstance(m, Timeline) for _, m in mon.messages)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["conductor"]["invalid_reasons"].get("bad_value.tempo") == 1
    assert report["conductor"]["invalid_reasons"].get("bad_value.temperature") == 1
