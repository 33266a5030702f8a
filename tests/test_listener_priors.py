"""The listener's priors for two voices: a bass's place in the chord, a chord's function in the key."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conductor.chord_prior import bass_prior, bass_weight, key_prior
from conductor.harmony_match import TEMPLATES
from conductor.listener import Listener
from conductor.listener_params import Params

# The lowest note's vote before it knew inversions: the root, or any other chord tone a little;
# and every diatonic chord the same prior.
UNIFORM = replace(Params(), bass_third=Params().bass_tone, bass_fifth=Params().bass_tone, function=0.0)
VOTES = (0.3, 0.2, 0.0, 0.1)  # root, third, fifth, seventh


def two_voices(pairs: list[tuple[int, int]], params: Params | None = None, key: str = "C") -> list[str]:
    """Bass and melody in quarter notes, a decision at each onset from what sounds then and before."""
    listener = Listener(key=key, params=params or Params())
    out = []
    for beat, pitches in enumerate(pairs):
        for p in pitches:
            listener.note_on(p, 80, float(beat))
        heard = listener.decide(float(beat))
        assert heard is not None
        out.append(heard.chord)
        for p in pitches:
            listener.note_off(p, beat + 1.0)
    return out


@pytest.mark.parametrize(
    ("key", "pairs", "chords"),
    [
        # I IV I6 V I: at I6 the bass has the tonic's third (E under C), which also fits vi (A C E)
        ("C", [(48, 67), (41, 69), (40, 72), (43, 71), (36, 72)], ["C", "F", "C", "G", "C"]),
        ("Eb", [(51, 70), (44, 72), (43, 75), (46, 74), (39, 75)], ["Eb", "Ab", "Eb", "Bb", "Eb"]),
    ],
)
def test_a_bass_on_the_third_is_read_as_a_first_inversion(
    key: str, pairs: list[tuple[int, int]], chords: list[str]
) -> None:
    assert two_voices(pairs, key=key) == chords
    # with the lowest note voting for any chord tone alike, the same notes are heard as vi
    assert two_voices(pairs, UNIFORM, key=key)[2] != chords[2]


@pytest.mark.parametrize(
    ("key", "pairs", "dominant"),
    [
        ("C", [(48, 64), (47, 74), (48, 72)], "G"),  # I V6 I: B under D
        ("Am", [(45, 72), (44, 71), (45, 69)], "E"),  # i V6 i: G# under B
    ],
)
def test_a_leading_tone_in_the_bass_is_the_dominant_not_a_diminished_chord(
    key: str, pairs: list[tuple[int, int]], dominant: str
) -> None:
    """A diminished triad seldom stands on its root: the leading tone in the bass is V6's third."""
    got = two_voices(pairs, key=key)
    assert got[1] == dominant and got[0] == got[2], got
    assert two_voices(pairs, UNIFORM, key=key)[1] != dominant  # the plain vote reads the bass as the root


def test_the_bass_votes_root_then_third_then_seventh_then_fifth() -> None:
    c = TEMPLATES[""]
    votes = {place: bass_prior(0, c, "", place, VOTES) for place in (0, 4, 7)}
    assert votes[0] > votes[4] > votes[7]  # C over C, over E, over G
    assert bass_prior(7, TEMPLATES["7"], "7", 5, VOTES) == VOTES[3]  # G7 over F (V4/2)
    assert bass_prior(0, c, "", 2, VOTES) == 0.0  # D is no tone of C
    assert bass_prior(0, c, "", None, VOTES) == 0.0
    dim = TEMPLATES["dim"]  # B D F: its third in the bass is its usual place
    assert bass_prior(11, dim, "dim", 2, VOTES) == VOTES[0]
    assert bass_prior(11, dim, "dim", 11, VOTES) == VOTES[1]


def test_the_key_prior_ranks_functions_and_ignores_chords_outside_the_key() -> None:
    c_major = {name: key_prior(root, q, 0, False, 0.25, 0.5) for name, root, q in [
        ("I", 0, ""), ("V7", 7, "7"), ("ii", 2, "m"), ("iii", 4, "m"), ("E", 4, ""), ("Cm", 0, "m"),
    ]}  # fmt: skip
    assert c_major["I"] == c_major["V7"] == 0.25
    assert c_major["I"] > c_major["ii"] > c_major["iii"] > 0.0
    assert c_major["E"] == c_major["Cm"] == 0.0
    assert key_prior(4, "m", 0, False, 0.25, 0.0) == 0.25  # function 0: every diatonic chord alike
    a_minor_v = key_prior(4, "", 9, True, 0.25, 0.5)
    assert a_minor_v == 0.25 and key_prior(4, "m", 9, True, 0.25, 0.5) == 0.0  # V is major in minor


def test_a_low_note_is_a_bass_a_high_one_under_a_melody_is_not() -> None:
    p = Params()
    assert bass_weight(40, p.bass_low, p.bass_high) == 1.0  # E2
    assert bass_weight(p.bass_low, p.bass_low, p.bass_high) == 1.0
    assert 0.0 < bass_weight(61, p.bass_low, p.bass_high) < 1.0
    assert bass_weight(72, p.bass_low, p.bass_high) == 0.0  # C5
    assert bass_weight(None, p.bass_low, p.bass_high) == 0.0


def test_an_inner_voice_under_a_melody_does_not_vote_as_a_bass() -> None:
    """Melody and alto, no bass: A4 under D5 after C is D minor (ii), not A's sus4 built on the alto."""
    upper = [(64, 72), (69, 74)]
    assert two_voices(upper) == ["C", "Dm"]
    no_fade = replace(Params(), bass_low=127, bass_high=128)  # every lowest note a bass, however high
    assert two_voices(upper, no_fade)[-1] == "Asus4"
