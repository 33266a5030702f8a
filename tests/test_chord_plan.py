"""The chord plan: bars of symbols, repeats and loops, the chord at a beat, edits, its text form."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.harmony import (
    MAX_BARS,
    ChordError,
    ChordPlan,
    ChordSpan,
    parse_chord,
)


def test_parse_plain_plan() -> None:
    plan = ChordPlan.parse("Dm7 G7 | Cmaj7 | Am7 D7 | G7", key="C")
    assert plan.bars == (("Dm7", "G7"), ("Cmaj7",), ("Am7", "D7"), ("G7",))
    assert plan.loop is True and plan.key == "C"
    assert plan.chords[0][1] == parse_chord("G7")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("|: A | B :| C", "A | B | A | B | C"),
        ("|: A | B :| x3 | C", "A | B | A | B | A | B | C"),
        ("|: A :| x1 | B", "A | B"),
        ("A | % | B x2", "A | A | B | B"),
        ("A B :|", "A B | A B"),
        ("||A||B||", "A | B"),
        ("|: A :||: B :|", "A | A | B | B"),
        ("|: A :| B x2", "A | A | B | B"),
        ("C |: Dm7 G7 :| x2 | %", "C | Dm7 G7 | Dm7 G7 | Dm7 G7"),
    ],
)
def test_repeat_syntax_expands(text: str, expected: str) -> None:
    assert ChordPlan.parse(text).to_text() == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("% | A", "first bar"),
        ("|: A", "closing"),
        ("|: A |: B :|", "nest"),
        ("A x0", "repeat count"),
        ("A | x2", "repeat count near bar 2"),
        ("", "at least one bar"),
        (" | | ", "at least one bar"),
        (f"A x{MAX_BARS + 1}", "over"),
        ("|: A | B :| x3000", "over"),
    ],
)
def test_bad_plan_text(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ChordPlan.parse(text)


def test_unknown_symbol_in_plan_names_the_bar() -> None:
    with pytest.raises(ChordError, match=r"^unknown chord symbol 'Zz7' in bar 3$") as info:
        ChordPlan.parse("C | F | G Zz7 | C")
    assert info.value.bar == 3


def test_construction_validates_each_field() -> None:
    with pytest.raises(TypeError, match="bars"):
        ChordPlan("C | G")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"bars\[1\]"):
        ChordPlan((("C",), (7,)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bars\[0\]"):
        ChordPlan(((),))
    with pytest.raises(TypeError, match="loop"):
        ChordPlan((("C",),), loop=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key"):
        ChordPlan((("C",),), key=None)  # type: ignore[arg-type]
    for key in ["H", "c", "Cmaj", "Am7", ""]:
        with pytest.raises(ValueError, match="key"):
            ChordPlan((("C",),), key=key)
    plan = ChordPlan([["C", "G"], ("F",)])  # type: ignore[arg-type]
    assert plan.bars == (("C", "G"), ("F",))


@pytest.mark.parametrize(
    ("key", "tonic", "minor"), [("C", 0, False), ("Am", 9, True), ("F#", 6, False), ("Bbm", 10, True)]
)
def test_key(key: str, tonic: int, minor: bool) -> None:
    plan = ChordPlan((("C",),), key=key)
    assert (plan.key_tonic, plan.key_is_minor) == (tonic, minor)


def test_chord_at_splits_bars_evenly() -> None:
    plan = ChordPlan.parse("Dm7 G7 | Cmaj7 | Am7 D7 Gm7 C7", loop=False)
    at = [plan.chord_at(b, 4) for b in (0, 1.99, 2, 3.99, 4, 7.5, 8, 8.99, 9, 10.5, 11.99)]
    names = [c.symbol if c else None for c in at]
    assert names == ["Dm7", "Dm7", "G7", "G7", "Cmaj7", "Cmaj7", "Am7", "Am7", "D7", "Gm7", "C7"]
    assert plan.chord_at(12, 4) is None
    assert plan.chord_at(-0.01, 4) is None
    assert plan.chord_at(0, 3) == parse_chord("Dm7")
    assert plan.chord_at(1.5, 3) == parse_chord("G7")


def test_chord_span_at() -> None:
    plan = ChordPlan.parse("Dm7 G7 | C")
    assert plan.chord_span_at(2.5, 4) == ChordSpan(parse_chord("G7"), 2.0, 4.0)
    assert plan.chord_span_at(13.0, 4) == ChordSpan(parse_chord("C"), 12.0, 16.0)  # looped, not folded
    assert plan.length_beats(4) == 8


def test_chord_at_validates_arguments() -> None:
    plan = ChordPlan.parse("C")
    with pytest.raises(ValueError, match="beats_per_bar"):
        plan.chord_at(0, 0)
    with pytest.raises(TypeError, match="beats_per_bar"):
        plan.chord_at(0, 4.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beat"):
        plan.chord_at(float("nan"), 4)
    with pytest.raises(TypeError, match="beat"):
        plan.chord_at("1", 4)  # type: ignore[arg-type]


SYMBOL_POOL = ["C", "Dm7", "G7", "Cmaj7", "Am7", "Bø7", "E7alt", "F6/9", "N.C.", "Ab+", "C/E", "Db°7"]
bars_strategy = st.lists(
    st.lists(st.sampled_from(SYMBOL_POOL), min_size=1, max_size=4), min_size=1, max_size=8
)


@given(bars_strategy, st.integers(-50, 50), st.integers(0, 255), st.integers(1, 7))
def test_looping_plan_is_periodic(bars: list[list[str]], periods: int, sixteenth: int, bpb: int) -> None:
    plan = ChordPlan(tuple(tuple(b) for b in bars), loop=True)
    beat = sixteenth / 16  # exact in binary, so shifts by whole periods are exact too
    length = plan.length_beats(bpb)
    assert plan.chord_at(beat + periods * length, bpb) == plan.chord_at(beat, bpb)
    assert plan.chord_at(beat, bpb) is not None


@given(bars_strategy, st.booleans(), st.sampled_from(["C", "Am", "F#", "Ebm"]))
def test_to_text_round_trips(bars: list[list[str]], loop: bool, key: str) -> None:
    plan = ChordPlan(tuple(tuple(b) for b in bars), loop=loop, key=key)
    assert ChordPlan.parse(plan.to_text(), loop=loop, key=key) == plan


@given(bars_strategy, st.integers(0, 16 * 8 * 7))
def test_non_looping_plan_ends(bars: list[list[str]], sixteenth: int) -> None:
    plan = ChordPlan(tuple(tuple(b) for b in bars), loop=False)
    beat = sixteenth / 16
    inside = beat < plan.length_beats(4)
    assert (plan.chord_at(beat, 4) is not None) == inside


def test_with_bar_returns_an_edited_copy() -> None:
    plan = ChordPlan.parse("C | F | G", key="C")
    edited = plan.with_bar(1, "Dm7 G7")
    assert edited.bars == (("C",), ("Dm7", "G7"), ("G",))
    assert plan.bars == (("C",), ("F",), ("G",))
    assert edited.chord_at(6, 4) == parse_chord("G7")
    assert plan.with_bar(3, ["Am"]).bars[-1] == ("Am",)
    assert plan.with_bar(0, ("C",)) == plan
    with pytest.raises(ValueError, match="index"):
        plan.with_bar(4, "C")
    with pytest.raises(ValueError, match="index"):
        plan.with_bar(-1, "C")
    with pytest.raises(ChordError, match="in bar 2"):
        plan.with_bar(1, "Qq")
    with pytest.raises(ValueError, match=r"bars\[1\]"):
        plan.with_bar(1, "")


def test_parsed_chords_are_shared_not_reparsed() -> None:
    plan = ChordPlan.parse("Dm7 G7 | Cmaj7 | Dm7 G7 | Cmaj7")
    assert plan.chords[0][0] is plan.chords[2][0]
    assert plan.chords[0][0] is parse_chord("Dm7")


def test_plan_is_a_hashable_value() -> None:
    a = ChordPlan.parse("C | G", key="C")
    b = ChordPlan((("C",), ("G",)), loop=True, key="C")
    assert a == b and hash(a) == hash(b)
    assert a != dataclasses.replace(a, loop=False)
    assert {a: 1}[b] == 1
