"""Chord symbols: pitch classes, tensions and roles, checked against spelled-out chords."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.harmony import (
    NO_PITCH_CLASS,
    Chord,
    ChordError,
    PitchRole,
    classify_pitch,
    parse_chord,
    pitch_class_roles,
)

PC = {
    "C": 0,
    "C#": 1,
    "Db": 1,
    "D": 2,
    "D#": 3,
    "Eb": 3,
    "E": 4,
    "Fb": 4,
    "F": 5,
    "E#": 5,
    "F#": 6,
    "Gb": 6,
    "G": 7,
    "G#": 8,
    "Ab": 8,
    "A": 9,
    "A#": 10,
    "Bb": 10,
    "B": 11,
    "Cb": 11,
    "B#": 0,
}


def pcs(notes: str) -> set[int]:
    return {PC[n] for n in notes.split()}


# symbol, root, bass, chord tones (spelled), spelled independently of the parser.
SYMBOLS = [
    ("C", "C", "C", "C E G"),
    ("Cmaj", "C", "C", "C E G"),
    ("Cm", "C", "C", "C Eb G"),
    ("C-", "C", "C", "C Eb G"),
    ("Cmin", "C", "C", "C Eb G"),
    ("C7", "C", "C", "C E G Bb"),
    ("Cmaj7", "C", "C", "C E G B"),
    ("CM7", "C", "C", "C E G B"),
    ("CΔ", "C", "C", "C E G B"),
    ("CΔ7", "C", "C", "C E G B"),
    ("Dm7", "D", "D", "D F A C"),
    ("D-7", "D", "D", "D F A C"),
    ("Dmin7", "D", "D", "D F A C"),
    ("Dmi7", "D", "D", "D F A C"),
    ("G7", "G", "G", "G B D F"),
    ("Bm7b5", "B", "B", "B D F A"),
    ("Bø7", "B", "B", "B D F A"),
    ("Bø", "B", "B", "B D F A"),
    ("Bm7(b5)", "B", "B", "B D F A"),
    ("B°7", "B", "B", "B D F Ab"),
    ("Bdim7", "B", "B", "B D F Ab"),
    ("Bo7", "B", "B", "B D F Ab"),
    ("Bdim", "B", "B", "B D F"),
    ("B°", "B", "B", "B D F"),
    ("C+", "C", "C", "C E G#"),
    ("Caug", "C", "C", "C E G#"),
    ("C+7", "C", "C", "C E G# Bb"),
    ("C7#5", "C", "C", "C E G# Bb"),
    ("G7alt", "G", "G", "G B F"),
    ("C6/9", "C", "C", "C E G A D"),
    ("C69", "C", "C", "C E G A D"),
    ("Cm6/9", "C", "C", "C Eb G A D"),
    ("C6", "C", "C", "C E G A"),
    ("Cm6", "C", "C", "C Eb G A"),
    ("Csus2", "C", "C", "C D G"),
    ("Csus4", "C", "C", "C F G"),
    ("Csus", "C", "C", "C F G"),
    ("G7sus4", "G", "G", "G C D F"),
    ("G7sus", "G", "G", "G C D F"),
    ("G9", "G", "G", "G B D F A"),
    ("G11", "G", "G", "G D F A C"),
    ("G13", "G", "G", "G B D F A E"),
    ("Dm9", "D", "D", "D F A C E"),
    ("Dm11", "D", "D", "D F A C E G"),
    ("Cmaj9", "C", "C", "C E G B D"),
    ("Cmaj13", "C", "C", "C E G B D A"),
    ("Cadd9", "C", "C", "C E G D"),
    ("Cmadd9", "C", "C", "C Eb G D"),
    ("G7b9", "G", "G", "G B D F Ab"),
    ("G7#9", "G", "G", "G B D F A#"),
    ("G7#11", "G", "G", "G B D F C#"),
    ("G7b13", "G", "G", "G B D F Eb"),
    ("G7b5", "G", "G", "G B Db F"),
    ("G9#11", "G", "G", "G B D F A C#"),
    ("G13b9", "G", "G", "G B D F Ab E"),
    ("G7b9b13", "G", "G", "G B D F Ab Eb"),
    ("G7#5#9", "G", "G", "G B D# F A#"),
    ("G7(b9,#11)", "G", "G", "G B D F Ab C#"),
    ("Dm7b9", "D", "D", "D F A C Eb"),
    ("Fmaj7#11", "F", "F", "F A C E B"),
    ("CmM7", "C", "C", "C Eb G B"),
    ("Cm(maj7)", "C", "C", "C Eb G B"),
    ("C-Δ7", "C", "C", "C Eb G B"),
    ("C/E", "C", "E", "C E G"),
    ("Am7/G", "A", "G", "A C E G"),
    ("C/F#", "C", "F#", "C E G F#"),
    ("C6/9/E", "C", "E", "C E G A D"),
    ("C5", "C", "C", "C G"),
    ("Bb7", "Bb", "Bb", "Bb D F Ab"),
    ("B♭7", "Bb", "Bb", "Bb D F Ab"),
    ("F#m7b5", "F#", "F#", "F# A C E"),
    ("Ebmaj7", "Eb", "Eb", "Eb G Bb D"),
    ("Dbm", "Db", "Db", "Db E Ab"),
    ("C#7", "C#", "C#", "C# E# G# B"),
]


@pytest.mark.parametrize(("symbol", "root", "bass", "tones"), SYMBOLS)
def test_symbol_pitch_classes(symbol: str, root: str, bass: str, tones: str) -> None:
    chord = parse_chord(symbol)
    assert set(chord.tones) == pcs(tones)
    assert len(chord.tones) == len(set(chord.tones))
    assert chord.root == PC[root]
    assert chord.bass == PC[bass]
    assert chord.tones[0] == chord.root
    assert not set(chord.tones) & set(chord.tensions)
    assert chord.symbol == symbol


def test_table_covers_at_least_forty_symbols() -> None:
    assert len(SYMBOLS) >= 40


@pytest.mark.parametrize(
    ("symbol", "tensions"),
    [
        ("Cmaj7", "D F# A"),
        ("C", "D F# A"),
        ("G7", "A E"),
        ("Dm7", "E G"),
        ("Bø7", "C# E G"),
        ("B°7", "C# E G A#"),
        ("G7alt", "Ab A# C# Eb"),
        ("G7b9", "A# C# E"),
        ("C+", "D F# Bb"),
        ("G7sus4", "A E"),
        ("C6/9", "F#"),
        ("CmM7", "D F A"),
    ],
)
def test_available_tensions(symbol: str, tensions: str) -> None:
    assert set(parse_chord(symbol).tensions) == pcs(tensions)


def test_spellings_of_one_quality_agree() -> None:
    groups = [
        ["Cm7b5", "Cø7", "Cø", "C-7b5", "Cmin7b5", "Cm7-5"],
        ["Cdim7", "C°7", "Co7"],
        ["Cmaj7", "CM7", "CΔ", "CΔ7", "CMaj7", "Cma7"],
        ["Cm7", "C-7", "Cmin7", "Cmi7"],
        ["C+", "Caug"],
        ["C6/9", "C69", "C6add9"],
        ["C7b9", "C7(b9)", "C7-9", "C7♭9"],
        ["Db7", "C#7", "D♭7", "C♯7"],
    ]
    for group in groups:
        first = parse_chord(group[0])
        for symbol in group[1:]:
            other = parse_chord(symbol)
            assert (other.root, other.tones, other.tensions) == (first.root, first.tones, first.tensions), (
                symbol
            )


@pytest.mark.parametrize("symbol", ["N.C.", "NC", "n.c."])
def test_no_chord(symbol: str) -> None:
    chord = parse_chord(symbol)
    assert chord.is_no_chord
    assert chord.tones == () and chord.tensions == ()
    assert chord.root == NO_PITCH_CLASS and chord.bass == NO_PITCH_CLASS
    assert all(classify_pitch(chord, p) is PitchRole.FREE for p in range(60, 72))


@pytest.mark.parametrize("symbol", ["H7", "Cxyz", "c", "C/9", "", "   ", "C7b9x", "Cmaj7/", "C 7", "x2", "%"])
def test_unknown_symbol_is_one_line_error_naming_it(symbol: str) -> None:
    with pytest.raises(ChordError) as info:
        parse_chord(symbol)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert "\n" not in message
    assert repr(symbol) in message
    assert info.value.bar is None


def test_over_long_symbol_is_refused() -> None:
    with pytest.raises(ChordError, match="over-long"):
        parse_chord("C" + "7" * 100)


def test_parse_chord_type_error() -> None:
    with pytest.raises(TypeError, match="symbol"):
        parse_chord(7)  # type: ignore[arg-type]


def test_chord_error_pickles_across_processes() -> None:
    error = pickle.loads(pickle.dumps(ChordError("Zz", 3)))
    assert (error.symbol, error.bar, str(error)) == ("Zz", 3, "unknown chord symbol 'Zz' in bar 3")


def test_chord_is_frozen_hashable_and_validated() -> None:
    chord = parse_chord("G7")
    with pytest.raises(dataclasses.FrozenInstanceError):
        chord.root = 0  # type: ignore[misc]
    assert hash(chord) == hash(parse_chord("G7"))
    with pytest.raises(ValueError, match="root"):
        Chord("X", 12, 0, (0,), (), "")
    with pytest.raises(ValueError, match="tones"):
        Chord("X", 0, 0, (0, 13), (), "")


ROOTS = ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
QUALITIES = [
    "",
    "m",
    "7",
    "maj7",
    "m7",
    "ø7",
    "°7",
    "+",
    "7alt",
    "6/9",
    "sus4",
    "7sus4",
    "9",
    "13",
    "7b9",
    "7#9#11",
    "m7b9",
    "maj9#11",
    "add9",
    "mM7",
    "m11",
    "dim",
]


@given(st.sampled_from(QUALITIES), st.integers(0, 11))
def test_transposing_the_root_transposes_every_pitch_class(quality: str, shift: int) -> None:
    base = parse_chord("C" + quality)
    moved = parse_chord(ROOTS[shift] + quality)
    assert moved.tones == tuple((pc + shift) % 12 for pc in base.tones)
    assert moved.tensions == tuple(
        sorted(((pc + shift) % 12 for pc in base.tensions), key=lambda pc: (pc - moved.root) % 12)
    )


def test_classify_pitch() -> None:
    cmaj7 = parse_chord("Cmaj7")
    assert classify_pitch(cmaj7, 60) is PitchRole.CHORD_TONE
    assert classify_pitch(cmaj7, 71) is PitchRole.CHORD_TONE
    assert classify_pitch(cmaj7, 62) is PitchRole.TENSION
    assert classify_pitch(cmaj7, 65) is PitchRole.AVOID  # the 11th over a major third
    g7 = parse_chord("G7")
    assert classify_pitch(g7, 36) is PitchRole.AVOID  # C over G7
    assert classify_pitch(g7, 0) is PitchRole.AVOID
    assert classify_pitch(g7, 127) is PitchRole.CHORD_TONE  # G9
    with pytest.raises(ValueError, match="pitch"):
        classify_pitch(g7, 128)
    with pytest.raises(TypeError, match="pitch"):
        classify_pitch(g7, 60.0)  # type: ignore[arg-type]


@given(st.sampled_from([s for s, *_ in SYMBOLS]))
def test_roles_partition_the_twelve_pitch_classes(symbol: str) -> None:
    chord = parse_chord(symbol)
    roles = pitch_class_roles(chord)
    assert len(roles) == 12
    assert {pc for pc in range(12) if roles[pc] is PitchRole.CHORD_TONE} == set(chord.tones)
    assert {pc for pc in range(12) if roles[pc] is PitchRole.TENSION} == set(chord.tensions)
    assert PitchRole.FREE not in roles
