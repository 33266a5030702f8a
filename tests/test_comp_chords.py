"""A comping part's chords under the model's line (agents/engines/comp_chords.py): where they go, what
they leave alone, and the band's rules they keep."""

from __future__ import annotations

import pytest
import yaml
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble

from agents.engines.comp_chords import INNER_SOFTER, fill_chords
from agents.engines.onnx_engine import chord_notes
from agents.model.voicing import Voicing
from protocol.ensemble import EnsembleError, parse_ensemble
from protocol.harmony import ChordPlan
from protocol.messages import Note

BASS = 2
COMP = Voicing(role="comp", polyphony=4, span=16, bass_tracks=frozenset({BASS}),
               agent_tracks=frozenset({BASS}))
PLAN = ChordPlan.parse("C | G7 | Am | F", loop=True, key="C")


def note(start: float, pitch: int, length: float = 1.0, velocity: int = 90) -> Note:
    return Note(start, length, pitch, velocity, 2, "piano")


def fill(notes: list[Note], *, size: int = 3, polyphony: int = 4, later: tuple[float, ...] = (),
         held: tuple[float, ...] = (), others: tuple[tuple[int, int], ...] = (),
         voicing: Voicing = COMP) -> list[Note]:
    return fill_chords(notes, size=size, polyphony=polyphony, pitch_range=(48, 79), span=16,
                       voicing=voicing, plan=PLAN, beats_per_bar=4, later=later, held_ends=held,
                       sounding=lambda beat: list(others))


def pitches_at(notes: list[Note], start: float) -> list[int]:
    return sorted(n.pitch for n in notes if abs(n.start_beat - start) < 1e-9)


def test_a_chord_tone_on_a_beat_gets_a_close_triad_under_it() -> None:
    out = fill([note(0.0, 64, 2.0)], later=(1.0,))
    assert pitches_at(out, 0.0) == [55, 60, 64]  # G3 C4 under the model's E4
    inner = [n for n in out if n.pitch != 64]
    assert all(n.duration_beats == 1.0 for n in inner)  # to the part's next note, not past it
    assert all(n.velocity == 90 - INNER_SOFTER for n in inner)
    # a seventh chord of three notes leaves out its fifth: G7 under F4 is B3 and G3
    assert pitches_at(fill([note(4.0, 65)]), 4.0) == [55, 59, 65]


def test_off_beats_and_non_chord_tones_stay_single() -> None:
    assert pitches_at(fill([note(0.5, 64, 0.5)]), 0.5) == [64]  # a passing eighth
    assert pitches_at(fill([note(0.0, 62)]), 0.0) == [62]  # D over C: no cluster under it
    assert pitches_at(fill([note(0.0, 64)], size=1), 0.0) == [64]  # chord_notes 1: the line alone


def test_the_chord_keeps_off_other_parts_pitches_and_above_the_bass() -> None:
    # another part sounds C4: the chord takes the next C down instead of doubling it
    assert pitches_at(fill([note(0.0, 64)], others=((5, 60),)), 0.0) == [48, 55, 64]
    # the bass sounds G3: nothing of the chord goes to it or under it
    out = pitches_at(fill([note(0.0, 64)], others=((BASS, 55),)), 0.0)
    assert out == [60, 64] and min(out) > 55
    # unless the part may double
    doubling = Voicing(role="comp", doubling=True, bass_tracks=frozenset({BASS}))
    assert pitches_at(fill([note(0.0, 64)], others=((5, 60),), voicing=doubling), 0.0) == [55, 60, 64]


def test_the_chord_never_takes_the_part_past_its_polyphony() -> None:
    # two notes still held from before leave room for one more under a four-note part
    assert len(pitches_at(fill([note(0.0, 64)], held=(2.0, 2.0)), 0.0)) == 2
    # a held note of the same commit counts too
    out = fill([note(0.0, 67, 4.0), note(1.0, 64)], polyphony=3)
    assert len(pitches_at(out, 1.0)) == 2


def test_chord_notes_defaults_by_role_and_is_checked_in_the_yaml() -> None:
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    ens = parse_ensemble(data)
    by_name = {a.name: a for a in ens.agents}
    assert chord_notes(by_name["piano"]) == 3 and chord_notes(by_name["bass"]) == 1
    data["agents"][1]["engine"]["chord_notes"] = 0
    with pytest.raises(EnsembleError, match="chord_notes"):
        parse_ensemble(data)


def test_the_default_piano_comps_in_chords_and_the_bass_plays_one_line() -> None:
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    data["seed"] = 3
    ip = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=8)
    ip.play()
    piano = ip.recorded("piano")
    beats = {round(s) for s, _, _, _ in piano if abs(s - round(s)) < 1e-9}
    chords = [b for b in beats if sum(1 for s, _, _, _ in piano if abs(s - b) < 1e-9) >= 3]
    assert len(chords) >= len(beats) // 3, (len(chords), len(beats))
    bass = ip.recorded("bass")
    assert len({s for s, _, _, _ in bass}) == len(bass)  # one note at a time
