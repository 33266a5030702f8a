"""Chord and key following: the listener in-process, the conductor publishing what it follows, the bench."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from conductor.listener import TEMPLATES, Listener, Params, chord_name
from protocol.harmony import ChordPlan, parse_chord

EB_MAJOR_MELODY = [63, 67, 70, 67, 65, 67, 68, 70, 72, 70, 68, 67, 65, 62, 63, 63]  # quarter notes


def test_every_template_is_a_symbol_the_plan_parses() -> None:
    for quality, intervals in TEMPLATES.items():
        for root in range(12):
            chord = parse_chord(chord_name(root, quality, "Eb"))
            assert chord.root == root
            assert set(chord.tones) == {(root + i) % 12 for i in intervals}


@pytest.mark.parametrize(
    ("pitches", "symbol"),
    [
        ((48, 64, 67, 72), "C"),
        ((51, 58, 63, 66), "Ebm"),
        ((43, 59, 62, 65), "G7"),
        ((50, 65, 69, 72), "Dm7"),
        ((47, 62, 65, 69), "Bm7b5"),
        ((47, 62, 65, 68), "Bdim7"),
        ((53, 69, 72, 76), "Fmaj7"),
    ],
)
def test_a_held_chord_is_heard_at_its_onset(pitches: tuple[int, ...], symbol: str) -> None:
    listener = Listener()
    for p in pitches:
        listener.note_on(p, 90, 0.0)  # at its onset: the length is not known yet
    heard = listener.decide(0.0)
    assert heard is not None
    assert parse_chord(heard.chord).root == parse_chord(symbol).root
    assert set(parse_chord(heard.chord).tones) == set(parse_chord(symbol).tones)


def test_nothing_heard_means_no_decision_and_a_note_off_ends_a_note() -> None:
    listener = Listener()
    assert listener.decide(0.0) is None
    listener.note_on(60, 90, 0.0)
    listener.note_on(64, 90, 0.0)
    listener.note_on(67, 90, 0.0)
    assert listener.decide(0.0).chord == "C"  # type: ignore[union-attr]
    for p in (60, 64, 67):
        listener.note_off(p, 0.5)
    for p in (57, 60, 64):
        listener.note_on(p, 90, 1.0)
    assert listener.decide(1.0).chord == "Am"  # type: ignore[union-attr]


def test_a_melody_outlining_e_flat_major_is_heard_in_e_flat_within_two_bars() -> None:
    listener = Listener(key="C")
    keys = []
    for beat, pitch in enumerate(EB_MAJOR_MELODY):
        listener.note(float(beat), 1.0, pitch, 80)
        keys.append(listener.decide(beat + 1.0).key)  # type: ignore[union-attr]
    assert keys[7] == "Eb", keys  # after two bars of 4/4
    assert keys[-1] == "Eb"


def test_a_modulation_is_followed_within_a_bar() -> None:
    from bench.listening import key_follow_bars

    assert key_follow_bars(0, 3) <= 1.0  # C major melody, then the same in E-flat


def test_one_passing_note_does_not_flip_the_chord() -> None:
    """Bass C held, melody E G E G | F# (a passing note on the beat) G E C: the band stays on C."""

    def chords(params: Params) -> list[str]:
        listener = Listener(params=params)
        listener.note_on(36, 90, 0.0)
        out = []
        for beat, pitch in enumerate([64, 67, 64, 67, 66, 67, 64, 60]):
            listener.note_on(pitch, 80, float(beat))
            out.append(listener.decide(float(beat)).chord)  # type: ignore[union-attr]
            listener.note_off(pitch, beat + 1.0)
        return out

    assert chords(Params()) == ["C"] * 8
    # the same notes without hysteresis do flip: the test can fail
    assert chords(replace(Params(), margin=-1.0, persist=1))[4] != "C"


def test_a_held_change_wins_within_a_beat_or_two() -> None:
    listener = Listener()
    for p in (48, 64, 67):
        listener.note(0.0, 4.0, p, 90)
    assert listener.decide(3.0).chord == "C"  # type: ignore[union-attr]
    for p in (41, 65, 69, 72):
        listener.note_on(p, 90, 4.0)
    got = [listener.decide(b).chord for b in (4.0, 5.0)]  # type: ignore[union-attr]
    assert "F" in got


def test_a_stuck_note_on_is_forgotten_and_memory_stays_small() -> None:
    listener = Listener()
    listener.note_on(61, 90, 0.0)  # never released
    for bar in range(40):
        for p in (48, 64, 67):
            listener.note(bar * 4.0, 4.0, p, 90)
        listener.decide(bar * 4.0 + 1)
    assert listener.decide(160.0).chord == "C"  # type: ignore[union-attr]
    assert len(listener._notes) < 60
    assert all(n.end is not None for n in listener._notes)


def test_followed_key_and_chord_make_a_plan_agents_parse() -> None:
    listener = Listener()
    for beat, pitch in enumerate(EB_MAJOR_MELODY):
        listener.note(float(beat), 1.0, pitch, 80)
    heard = listener.decide(16.0)
    assert heard is not None
    plan = ChordPlan.parse(heard.chord, key=heard.key)
    assert plan.key == "Eb"


def test_bench_smoke(tmp_path: Path) -> None:
    pytest.importorskip("music21")
    from bench import listening

    out = tmp_path / "listening.json"
    assert listening.main(["--smoke", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["chorales"]) == listening.SMOKE_CHORALES
    for cond in ("all", "sb"):
        for system in ("listener", "onset", "offline"):
            assert 0.0 <= data[cond][system]["root_quality"] <= data[cond][system]["root"] <= 1.0
    assert data["all"]["listener"]["root"] > 0.7  # far above chance (1/12) on real chorales
    assert data["key"]["C -> Eb"] <= 1.0
