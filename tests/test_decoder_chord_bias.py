"""Chord bias (agents/model/decoder.py on the tiny export): it raises the chord-tone share, leans a bass
to the root where a chord begins, and is full on strong beats and a share elsewhere.

The tiny model's weights are random, so what shows is the bias alone; strong beats are those the
quality bench (analysis/metrics.py) judges, checked here to stay so.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.tiny_generator import make

from agents.model.decoder import DecodeParams, is_strong_beat
from analysis.metrics import is_strong_beat as metrics_strong_beat
from protocol.harmony import ChordPlan


def chord_tone_fraction(strength: float, bass: bool = False, on: str = "any",
                        plan_text: str = "Dm7 | G7 | Cmaj7 | A7") -> tuple[float, float]:
    """The chord-tone and root fractions of 150 notes (``on``: of those on strong or weak beats)."""
    plan = ChordPlan.parse(plan_text)
    gen, _, _ = make(seed=21, pitch_range=(36, 84))
    params = DecodeParams(chord_bias=strength, bass=bass)
    tones = roots = n = 0
    while n < 150:
        note = gen.step(params, lambda beat: plan.chord_at(beat, 4))
        if gen.restruck:
            continue  # a rejected draw: no note
        assert note is not None
        strong = is_strong_beat(note.start_beat, 4)
        if on == "weak beat":  # on a beat that is not a strong one
            if strong or note.start_beat % 1:
                continue
        elif on != "any" and strong != (on == "strong"):
            continue
        n += 1
        chord = plan.chord_at(note.start_beat, 4)
        assert chord is not None
        tones += note.pitch % 12 in chord.tones
        roots += note.pitch % 12 == chord.root
    return tones / n, roots / n


def test_chord_bias_raises_the_chord_tone_fraction() -> None:
    weak, _ = chord_tone_fraction(0.0)
    strong, _ = chord_tone_fraction(4.0)
    print(f"chord-tone fraction: bias 0 -> {weak:.2f}, bias 4 -> {strong:.2f}")
    assert strong > weak + 0.25


def test_a_bass_leans_to_the_root_on_strong_beats_and_moves_between_them() -> None:
    _, strong_plain = chord_tone_fraction(4.0, on="strong")
    _, strong_bass = chord_tone_fraction(4.0, bass=True, on="strong")
    _, weak_plain = chord_tone_fraction(4.0, on="weak")
    _, weak_bass = chord_tone_fraction(4.0, bass=True, on="weak")
    print(f"root fraction, strong beats: {strong_plain:.2f} -> bass {strong_bass:.2f}; "
          f"weak: {weak_plain:.2f} -> bass {weak_bass:.2f}")
    assert strong_bass > strong_plain + 0.2
    assert weak_bass < weak_plain + 0.1


def test_a_bass_leans_to_the_root_where_a_chord_begins_between_the_strong_beats() -> None:
    """One chord a beat: beats 2 and 4 begin a chord too, and the bass states it there."""
    plan = "Dm7 G7 Cmaj7 A7 | Em7 A7 Dm7 G7"
    _, plain = chord_tone_fraction(4.0, on="weak beat", plan_text=plan)
    _, bass = chord_tone_fraction(4.0, bass=True, on="weak beat", plan_text=plan)
    print(f"root fraction off the strong beats, a chord a beat: {plain:.2f} -> bass {bass:.2f}")
    assert bass > plain + 0.2


def test_chord_bias_is_full_on_strong_beats_and_a_share_elsewhere() -> None:
    """A bias so strong that only chord tones survive it: with no share off the strong beats, notes
    there are the model's own (the tiny random model's: mostly not chord tones) while strong-beat
    notes stay chord tones; with the full share every note is a chord tone."""
    plan = ChordPlan.parse("C | G7")

    def fractions(weak_share: float) -> tuple[float, float]:
        gen, _, _ = make(seed=5, pitch_range=(36, 84))
        params = DecodeParams(chord_bias=20.0, weak_beat_bias=weak_share, density=2.0)
        hits: dict[bool, list[bool]] = {True: [], False: []}
        for _ in range(300):
            note = gen.step(params, lambda beat: plan.chord_at(beat, 4))
            if gen.restruck:
                continue  # a rejected draw: no note
            assert note is not None
            chord = plan.chord_at(note.start_beat, 4)
            assert chord is not None
            hits[is_strong_beat(note.start_beat, 4)].append(note.pitch % 12 in chord.tones)
        assert len(hits[True]) >= 5 and len(hits[False]) >= 50
        return float(np.mean(hits[True])), float(np.mean(hits[False]))

    strong_none, weak_none = fractions(0.0)
    strong_full, weak_full = fractions(1.0)
    print(f"chord tones, strong/weak beats: share 0 -> {strong_none:.2f}/{weak_none:.2f}, "
          f"share 1 -> {strong_full:.2f}/{weak_full:.2f}")
    assert strong_none == strong_full == weak_full == 1.0
    assert weak_none < 0.7


@pytest.mark.parametrize("bar_beats", [2, 3, 4, 6, 7])
def test_strong_beats_are_the_ones_the_quality_bench_judges(bar_beats: int) -> None:
    for slot in range(16 * bar_beats * 2):
        beat = 100 * bar_beats + slot / 16
        assert is_strong_beat(beat, bar_beats) == metrics_strong_beat(beat, bar_beats), beat
