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
PLAN = ChordPlan.parse("C | G7 | Am | F | E7/G# Am", loop=True, key="C")


def note(start: float, pitch: int, length: float = 1.0, velocity: int = 90) -> Note:
    return Note(start, length, pitch, velocity, 2, "piano")


def fill(notes: list[Note], *, size: int = 3, polyphony: int = 4, later: tuple[Note, ...] = (),
         held: tuple[Note, ...] = (), others: tuple[tuple[int, int], ...] = (),
         voicing: Voicing = COMP) -> list[Note]:
    return fill_chords(notes, size=size, polyphony=polyphony, pitch_range=(48, 79), span=16,
                       voicing=voicing, plan=PLAN, beats_per_bar=4, later=later, held=held,
                       sounding=lambda beat: list(others))


def pitches_at(notes: list[Note], start: float) -> list[int]:
    return sorted(n.pitch for n in notes if abs(n.start_beat - start) < 1e-9)


def test_a_chord_tone_on_a_beat_gets_a_close_triad_under_it() -> None:
    out = fill([note(0.0, 64, 2.0)], later=(note(1.0, 67),))
    assert pitches_at(out, 0.0) == [55, 60, 64]  # G3 C4 under the model's E4
    inner = [n for n in out if n.pitch != 64]
    assert all(n.duration_beats == 1.0 for n in inner)  # to the part's next note on a beat, not past it
    assert all(n.velocity == 90 - INNER_SOFTER for n in inner)
    # a seventh chord of three notes leaves out its fifth: G7 under F4 is B3 and G3
    assert pitches_at(fill([note(4.0, 65)]), 4.0) == [55, 59, 65]


def test_a_low_chord_keeps_its_thirds_out_of_the_mud() -> None:
    # under C3, E2 would be a third below: the chord takes G2, a fourth under the C, and no more
    assert pitches_at(fill_chords([note(0.0, 48)], size=3, polyphony=4, pitch_range=(40, 72), span=14,
                                  voicing=COMP, plan=PLAN, beats_per_bar=4, later=(), held=(),
                                  sounding=lambda beat: []), 0.0) == [43, 48]


def test_the_chord_ends_at_the_lines_next_note_and_never_in_the_next_chord() -> None:
    out = fill([note(0.0, 64, 0.5), note(0.5, 62, 0.5)])  # E4 for an eighth, then a passing D4
    assert {n.pitch: n.duration_beats for n in out if n.start_beat == 0.0} == {55: 0.5, 60: 0.5, 64: 0.5}
    out = fill([note(2.0, 64, 2.5)])  # the model holds E4 over the bar line; G7 comes at beat 4
    assert max(n.start_beat + n.duration_beats for n in out if n.pitch != 64) == 4.0


def test_off_beats_weak_beats_and_non_chord_tones_stay_single() -> None:
    assert pitches_at(fill([note(0.5, 64, 0.5)]), 0.5) == [64]  # a passing eighth
    assert pitches_at(fill([note(1.0, 64)]), 1.0) == [64]  # beat 2 of the bar, the same chord: the line moves
    assert pitches_at(fill([note(2.0, 64)]), 2.0) == [55, 60, 64]  # beat 3 is strong
    assert pitches_at(fill([note(0.0, 62)]), 0.0) == [62]  # D over C: no cluster under it
    assert pitches_at(fill([note(0.0, 64)], size=1), 0.0) == [64]  # chord_notes 1: the line alone


def test_a_chord_change_on_a_weak_beat_is_voiced_and_its_slash_bass_left_to_the_bass() -> None:
    plan = ChordPlan.parse("C C G7 C", loop=True, key="C")  # G7 on beat 3... and C back on beat 4
    out = fill_chords([note(3.0, 64)], size=3, polyphony=4, pitch_range=(48, 79), span=16, voicing=COMP,
                      plan=plan, beats_per_bar=4, later=(), held=(), sounding=lambda beat: [])
    assert pitches_at(out, 3.0) == [55, 60, 64]  # the change back to C on beat 4
    out = fill_chords([note(1.0, 64)], size=3, polyphony=4, pitch_range=(48, 79), span=16, voicing=COMP,
                      plan=plan, beats_per_bar=4, later=(), held=(), sounding=lambda beat: [])
    assert pitches_at(out, 1.0) == [64]  # C written again on beat 2 is no change
    # E7/G# (bar 4, beats 16-18) under E4: D and B, no G# beside the bass's
    assert pitches_at(fill([note(16.0, 64)]), 16.0) == [59, 62, 64]
    # under D4 the nearest tone below would be the G#: it is skipped for the B
    assert pitches_at(fill([note(16.0, 62)]), 16.0) == [52, 59, 62]
    # the same chord under another name is no change
    plan = ChordPlan.parse("C CM G7 C", loop=True, key="C")
    out = fill_chords([note(1.0, 64)], size=3, polyphony=4, pitch_range=(48, 79), span=16, voicing=COMP,
                      plan=plan, beats_per_bar=4, later=(), held=(), sounding=lambda beat: [])
    assert pitches_at(out, 1.0) == [64]


def test_the_chord_keeps_off_other_parts_pitches_and_above_the_bass() -> None:
    # another part sounds C4: the chord takes the next C down instead of doubling it
    assert pitches_at(fill([note(0.0, 64)], others=((5, 60),)), 0.0) == [48, 55, 64]
    # the bass sounds G3: nothing of the chord goes to it or under it
    out = pitches_at(fill([note(0.0, 64)], others=((BASS, 55),)), 0.0)
    assert out == [60, 64] and min(out) > 55
    # nor under an A3 of the bass, though G3 is free
    assert pitches_at(fill([note(0.0, 64)], others=((BASS, 57),)), 0.0) == [60, 64]
    # and within the hand: a span of 8 semitones under E4 leaves room for C4 only
    out = fill_chords([note(0.0, 64)], size=3, polyphony=4, pitch_range=(48, 79), span=8, voicing=COMP,
                      plan=PLAN, beats_per_bar=4, later=(), held=(), sounding=lambda beat: [])
    assert pitches_at(out, 0.0) == [60, 64]
    # unless the part may double
    doubling = Voicing(role="comp", doubling=True, bass_tracks=frozenset({BASS}))
    assert pitches_at(fill([note(0.0, 64)], others=((5, 60),), voicing=doubling), 0.0) == [55, 60, 64]


def test_the_chord_never_takes_the_part_past_its_polyphony_nor_strikes_what_it_holds() -> None:
    # one note still held from before leaves room for one more under a four-note part (one voice
    # stays free for what a re-plan may draw), two leave none
    assert len(pitches_at(fill([note(0.0, 64)], held=(note(-1.0, 52, 3.0),)), 0.0)) == 2
    held = (note(-1.0, 52, 3.0), note(-1.0, 67, 3.0))
    assert len(pitches_at(fill([note(0.0, 64)], held=held), 0.0)) == 1
    # a held note of the same commit counts too
    out = fill([note(0.0, 67, 4.0), note(2.0, 64)], polyphony=4)
    assert len(pitches_at(out, 2.0)) == 2
    # the part's own C4 still sounds: the chord takes the C below it rather than strike it again
    assert pitches_at(fill([note(0.0, 64)], held=(note(-0.5, 60, 1.0),), polyphony=5), 0.0) == [48, 55, 64]


def test_chord_notes_defaults_by_role_and_is_checked_in_the_yaml() -> None:
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    ens = parse_ensemble(data)
    by_name = {a.name: a for a in ens.agents}
    assert chord_notes(by_name["piano"]) == 3 and chord_notes(by_name["bass"]) == 1
    data["agents"][1]["engine"]["chord_notes"] = 0
    with pytest.raises(EnsembleError, match="chord_notes"):
        parse_ensemble(data)
    data["agents"][1]["engine"]["chord_notes"] = 3
    data["agents"][0]["engine"]["chord_notes"] = 3  # the bass
    with pytest.raises(EnsembleError, match=r"agents\.0\.engine\.chord_notes: only a comping part"):
        parse_ensemble(data)


def test_the_default_piano_comps_in_chords_and_the_bass_plays_one_line() -> None:
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    data["seed"] = 3
    ip = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=8)
    ip.play()
    piano = ip.recorded("piano")
    strong = {round(s) for s, _, _, _ in piano if abs(s - round(s)) < 1e-9 and round(s) % 2 == 0}
    chords = [b for b in strong if sum(1 for s, _, _, _ in piano if abs(s - b) < 1e-9) >= 3]
    assert len(chords) >= len(strong) // 2, (len(chords), len(strong))
    bass = ip.recorded("bass")
    assert len({s for s, _, _, _ in bass}) == len(bass)  # one note at a time


def test_no_part_strikes_a_key_it_still_holds() -> None:
    """A pianist lets a key up before striking it again; the default piano's line struck a held key
    again on 29 of its 182 notes in 16 bars (its earlier note lasting past the repeat, or set before
    a re-plan drew the repeat), which a synth hears as a second voice on one key."""
    for seed in (1, 2):
        data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
        data["seed"] = seed
        ip = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=12)
        ip.play()
        for part in ("bass", "piano"):
            notes = sorted(ip.recorded(part))
            again = [(s, p) for i, (s, _, p, _) in enumerate(notes)
                     if any(s2 < s - 1e-9 < s + 1e-9 < s2 + d2 and p2 == p for s2, d2, p2, _ in notes[:i])]
            assert len(notes) > 40 and not again, (seed, part, again)
