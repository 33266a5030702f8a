"""Reading a recording back gives the notes that were recorded, a pitch struck again included.

A part that strikes a pitch again on the beat its last note of that pitch ends (a comping chord
held, then repeated) leaves a note-on and a note-off on one tick, in either order. Read as one
sounding note per key, the second note-on replaced the first and the note-off ended the second a tick
later: one note lost and one a tick long. Every measure of a recording (`bench/band.py`,
`bench/quality.py`, `--plot`) reads it this way, so a real run's piano counted 264 notes where it had
committed 303, and its groove looked steadier than the part's.

WHY real files: the reader is checked on what the conductor's own Recorder writes.
"""

from __future__ import annotations

from pathlib import Path

from conductor.recorder import Recorder
from launcher.plot import read_tracks
from protocol.messages import Note


def test_a_pitch_struck_again_as_its_last_note_ends_reads_as_two_notes(tmp_path: Path) -> None:
    rec = Recorder([("piano", 2, 0)])
    played = [(0.0, 1.0, 67), (0.0, 1.0, 72), (1.0, 1.0, 67), (1.0, 0.5, 64), (1.5, 2.0, 67), (2.0, 1.0, 72)]
    for start, length, pitch in played:
        rec.add(Note(start, length, pitch, 90, 2, "piano"))
    rec.save(tmp_path / "take.mid")
    (piano,), _ = read_tracks(tmp_path / "take.mid")
    # 67 at 1.5 overlaps 67 at 1.0: the first note-off ends the note that sounded first
    assert sorted((s, d, p) for s, d, p, _ in piano.notes) == sorted(played)
