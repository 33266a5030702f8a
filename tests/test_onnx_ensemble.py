"""A whole ensemble on the `onnx` engine: real model processes, real ONNX sessions, a real recording.

The model is a tiny random-weights export (tests/fixtures/models/tiny_v2), so the music is noise by
design; what is checked is what the decoder guarantees whatever the weights: each agent plays only
its own channel and range, and following the chord plan moves notes onto chord tones.
"""

from __future__ import annotations

import json
from pathlib import Path

import mido
import pytest
from support.ensembles import ROOT, run_launcher, write_ensemble

from analysis.metrics import chord_tone_rate
from protocol.harmony import ChordPlan

pytestmark = [pytest.mark.network, pytest.mark.slow]

MODEL = str(ROOT / "tests" / "fixtures" / "models" / "tiny_v2")
CHORDS = "C | F | G7 | Am"
PARTS = {"bass": (1, (28, 52)), "piano": (2, (52, 84)), "lead": (4, (60, 96))}


def run(tmp: Path, bias: float, bars: int = 8) -> tuple[dict, dict[str, list[tuple[float, float, int, int]]]]:
    agents = [
        {
            "name": name,
            "channel": ch,
            "range": list(rng),
            "engine": {
                "type": "onnx",
                "model": MODEL,
                "seed": 11 + i,
                "chord_bias": bias,
                "bass": name == "bass",
                "density": 4.0,
                "max_rest_beats": 1,
                "temperature": 1.0,
            },
        }
        for i, (name, (ch, rng)) in enumerate(PARTS.items())
    ]
    tmp.mkdir(parents=True, exist_ok=True)
    yaml_path = write_ensemble(tmp, {"agents": agents, "chords": CHORDS})
    proc = run_launcher(
        [
            str(yaml_path),
            "--bars",
            str(bars),
            "--record",
            str(tmp / "out.mid"),
            "--report",
            str(tmp / "report.json"),
            "--quiet",
        ],
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp / "report.json").read_text())
    mid = mido.MidiFile(str(tmp / "out.mid"))
    tracks: dict[str, list[tuple[float, float, int, int]]] = {}
    for track in mid.tracks:
        t, name, on = 0, "", {}
        notes = []
        for m in track:
            t += m.time
            if m.type == "track_name":
                name = m.name
            elif m.type == "note_on" and m.velocity > 0:
                on[(m.channel, m.note)] = t
            elif m.type in ("note_off", "note_on") and (m.channel, m.note) in on:
                start = on.pop((m.channel, m.note))
                notes.append(
                    (start / mid.ticks_per_beat, (t - start) / mid.ticks_per_beat, m.note, m.channel)
                )
        tracks[name] = notes
    return report, tracks


def test_onnx_agents_keep_to_their_parts_and_follow_the_plan(tmp_path: Path) -> None:
    plan = ChordPlan.parse(CHORDS)
    figures = {}
    for bias in (0.0, 8.0):
        # Random weights put ~5 % of onsets on a strong beat (beat 1 or 3), so the run with the bias
        # plays 24 bars to hear a dozen of them; the rate over all notes needs no more than 8.
        report, tracks = run(tmp_path / f"bias{bias:g}", bias, bars=24 if bias else 8)
        assert report["stuck_notes"] == 0
        notes = []
        for name, (channel, (lo, hi)) in PARTS.items():
            part = report["parts"][name]
            assert part["notes"] > 0, (name, part)
            played = tracks[name]
            assert played, name
            assert {c for *_, c in played} == {channel}, f"{name} played on another part's channel"
            assert all(lo <= p <= hi for _, _, p, _ in played), f"{name} left its range"
            notes += [(s, d, p) for s, d, p, _ in played]
        strong, n_strong = chord_tone_rate(notes, plan, 4, strong_only=True)
        every, n_all = chord_tone_rate(notes, plan, 4, strong_only=False)
        figures[bias] = {
            "strong_beat_rate": strong,
            "strong_notes": n_strong,
            "all_rate": every,
            "notes": n_all,
        }
    print("chord-tone rate, bias off vs on:", json.dumps(figures))
    off, on = figures[0.0], figures[8.0]
    assert on["all_rate"] > off["all_rate"] + 0.3, figures
    assert on["strong_notes"] >= 4 and on["strong_beat_rate"] >= 0.8, figures
