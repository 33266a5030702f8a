"""A part that commits after another knows the notes the other will strike while its own note still
sounds, and keeps off their pitches (agents/engines/commit_voicing.py): the horn's held note met
the piano's next chord on its own pitch when only the note's start was looked at."""

from __future__ import annotations

from typing import Any

from agents.engines.commit_voicing import others_sounding
from agents.model.live_context import LiveContext, LiveNote
from agents.model.prompt import setup_prefix

PIANO, HORN, DRUMS = 2, 5, 9


def heard_by_turn(note: Any, beat: float) -> bool:
    """The piano commits a beat and a half ahead of the horn: its notes that start up to 1.1 beats
    after the horn's note count for the horn's commit (the rule's shape: agents/engines/
    planner_hearing.py)."""
    return beat - (note.start_beat - (1.5 if note.track == PIANO else 0.0)) >= 0.4


def test_a_note_struck_while_this_one_sounds_counts_as_far_as_this_commit_knows_it() -> None:
    ctx = LiveContext("v2", prefix=setup_prefix("v2", bpm=120))
    struck = ((4.0, 60), (5.0, 64), (5.5, 67))
    notes = [(0.0, LiveNote(start, 1.0, pitch, 80, 1, PIANO)) for start, pitch in struck]

    def sounding(until: float | None) -> list[tuple[int, int]]:
        return others_sounding(4.0, ctx, {HORN, DRUMS}, notes, [], heard_by_turn, until)

    assert sounding(None) == [(PIANO, 60)], "at its start: only what sounds there"
    assert sorted(sounding(6.0)) == [(PIANO, 60), (PIANO, 64)], "the piano's note at 5.5 is not known yet"
    assert sounding(4.5) == [(PIANO, 60)], "a note after this one ends is no clash"
    # the model's context holds the others' earlier notes: the same rule reads them there
    ctx.add_note(LiveNote(5.0, 1.0, 72, 80, 1, PIANO), owner=PIANO)
    ctx.add_note(LiveNote(5.0, 1.0, 40, 80, 1, DRUMS), owner=DRUMS)
    assert (PIANO, 72) in sounding(6.0) and (DRUMS, 40) not in sounding(6.0)

