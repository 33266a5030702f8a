"""The player takes the bass in a real run: conductor and agents as processes on real UDP sockets, the
player replayed from a MIDI file. The bass agent plays the player's first bar with them, rests from
the next bar line with its last note ringing, and plays again two bars after the player stops; the
recording, the report and the agents' stats say so, and nothing is left sounding."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest
from support.ensembles import play_bars, write_ensemble

pytestmark = [pytest.mark.network, pytest.mark.slow]

PPQ = 480


def write_bass_line(path: Path, bars: int) -> None:
    """Four walking quarters a bar in the bass register, then the file ends."""
    mid = mido.MidiFile(ticks_per_beat=PPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    for b in range(bars):
        for i, step in enumerate((0, 4, 7, 5)):
            track.append(mido.Message("note_on", note=36 + step, velocity=90, time=0))
            track.append(mido.Message("note_off", note=36 + step, velocity=0, time=int(PPQ * 0.9)))
            if (b, i) != (bars - 1, 3):
                track.append(mido.Message("note_off", note=0, velocity=0, time=int(PPQ * 0.1)))
    mid.save(str(path))


def recorded(path: Path) -> dict[str, list[tuple[float, float, int]]]:
    """Each track's notes as (start beat, length in beats, pitch)."""
    out: dict[str, list[tuple[float, float, int]]] = {}
    mid = mido.MidiFile(str(path))
    for track in mid.tracks:
        name, tick, held, notes = "", 0, {}, []
        for msg in track:
            tick += msg.time
            if msg.type == "track_name":
                name = msg.name
            elif msg.type == "note_on" and msg.velocity > 0:
                held[msg.note] = tick
            elif msg.type in ("note_on", "note_off") and msg.note in held:
                start = held.pop(msg.note)
                notes.append((start / mid.ticks_per_beat, (tick - start) / mid.ticks_per_beat, msg.note))
        out[name] = sorted(notes)
    return out


def test_the_bass_agent_makes_room_for_the_players_bass_line_and_comes_back(tmp_path: Path) -> None:
    write_bass_line(tmp_path / "bass.mid", bars=4)
    yaml_path = write_ensemble(tmp_path, {
        "tempo": 240,
        "human": {"source": {"type": "file", "path": str(tmp_path / "bass.mid"), "loop": False}},
    })
    report = play_bars(yaml_path, 10, tmp_path, timeout=90)
    notes = recorded(tmp_path / "out.mid")
    bass = {round(s, 2): d for s, d, _ in notes["bass"]}
    # heard by beat 2.6 of bar 1 (1.4 beats at 240 BPM before the bar line: the agents' commit
    # distance and the message's way), so the bass rests from bar 2 (beat 4); the player's last bar
    # is bar 4, bars 5 and 6 pass without a bass, and the bass is back on bar 7 (beat 24), then the
    # held final chord (beat 40)
    assert sorted(bass) == [0, 2, 24, 26, 28, 30, 32, 34, 36, 38, 40], sorted(bass)
    assert bass[2] == pytest.approx(1.5, abs=0.01)  # its last note before the rest ends as planned
    # the other parts play on through every bar
    assert {int(s // 4) for s, _, _ in notes["piano"]} >= set(range(10))
    assert {int(s // 4) for s, _, _ in notes["drums"]} >= set(range(10))
    assert report["stuck_notes"] == 0
    assert report["parts"]["bass"]["yielded_bars"] == 5
    assert report["parts"]["piano"]["yielded_bars"] == 0
    roles = report["conductor"]["roles"]
    assert roles["mode"] == "auto" and roles["parts"]["bass"] == "bass"
    assert roles["changes"][0]["player"] == ["bass"]
    assert roles["changes"][0]["yields"] == {"bass": {"from_bar": 2, "until_bar": None}}
    assert {"bass": {"from_bar": 2, "until_bar": 7}} in [c["yields"] for c in roles["changes"]]
    # what the agent sent is what the recording holds: the notes it left out were never sent
    part = report["parts"]["bass"]
    assert part["notes"] + part["dropped_late"] == part["recorded"] == len(bass)  # a stall leaves notes out
