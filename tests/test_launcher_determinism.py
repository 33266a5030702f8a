"""The same music from real processes: two launcher runs of the shipped default ensemble with one
seed record the same notes, and the same as the ensemble played in one event loop on virtual time.

The model parts run in their own processes on the wall clock, so every message reaches them a few
milliseconds before or after the clock tick it belongs with, and by a different margin each run
(docs/band.md, "The same music under any load"). Only the recording is compared: every note-on and
note-off of every part, to the recording's resolution.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import mido
import pytest
import yaml
from support.ensembles import SHIPPED_DEFAULT, run_launcher, write_ensemble
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble

pytestmark = [pytest.mark.network, pytest.mark.slow]

BARS = 4
SEED = 7
Events = dict[str, Counter[tuple[str, int, int, int]]]


def recorded_events(path: Path) -> Events:
    """Per part, its note-ons (tick, pitch, velocity) and note-offs (tick, pitch): a part may strike a
    pitch again while it sounds, and a MIDI file cannot say which note-off ends which note."""
    mid = mido.MidiFile(str(path))
    out: Events = {}
    for track in mid.tracks:
        tick, events = 0, Counter[tuple[str, int, int, int]]()
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                events[("on", tick, msg.note, msg.velocity)] += 1
            elif msg.type in ("note_on", "note_off"):
                events[("off", tick, msg.note, 0)] += 1
        out[track.name] = events
    return out


def play(tmp: Path, name: str) -> Events:
    out = tmp / name
    out.mkdir()
    path = write_ensemble(out, {"seed": SEED}, source=SHIPPED_DEFAULT)
    proc = run_launcher([str(path), "--bars", str(BARS), "--record", str(out / "out.mid"), "--quiet"])
    assert proc.returncode == 0, proc.stderr
    return recorded_events(out / "out.mid")


def test_two_runs_of_one_seed_record_the_same_notes(tmp_path: Path) -> None:
    first, second = play(tmp_path, "first"), play(tmp_path, "second")
    data = yaml.safe_load(SHIPPED_DEFAULT.read_text())
    parts = [data["human"]["name"]] + [a["name"] for a in data["agents"]]
    for name in parts:
        assert sum(n for k, n in first[name].items() if k[0] == "on") > BARS, name  # it played
        differ = (first[name] - second[name]) + (second[name] - first[name])
        assert not differ, (name, sorted(differ)[:8])
    # and what the in-process ensemble plays for the seed, where no message is ever early or late
    data["seed"] = SEED
    band = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=BARS)
    band.play()
    ppq = mido.MidiFile(str(tmp_path / "first" / "out.mid")).ticks_per_beat
    for name in parts:
        inproc = Counter[tuple[str, int, int, int]]()
        for start, duration, pitch, velocity in band.recorded(name):
            inproc[("on", round(start * ppq), pitch, velocity)] += 1
            inproc[("off", round((start + duration) * ppq), pitch, 0)] += 1
        differ = (first[name] - inproc) + (inproc - first[name])
        assert not differ, (name, sorted(differ)[:8])
