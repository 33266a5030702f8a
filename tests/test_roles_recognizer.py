"""What the conductor hears the player take: the part a bar reads as (conductor/bar_parts.py), a part
beyond doubt part-way through a bar, and the recognizer's hysteresis (conductor/role_recognizer.py).

Every later decision (who yields, when) rests on reading a bar right, so the reading is tested on
hand-written bars, seeded synthetic players and random streams, apart from what is done with it.
"""

from __future__ import annotations

import random

import pytest
from support.played_bars import bass_bar, chord_bar, drum_bar, melody_bar, notes

from bench.roles import STYLES, per_bar, reactions
from conductor.bar_parts import PlayedNote, bar_roles, early_roles
from conductor.role_recognizer import RoleRecognizer


# -- one bar ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("played", "roles"),
    [
        (bass_bar(), {"bass"}),
        (chord_bar(), {"comp"}),
        (melody_bar(), {"melody"}),
        (drum_bar(), {"drums"}),
        # a pianist: left-hand roots under right-hand chords
        (notes((0, 1.5, 36), (2, 1.5, 43)) + chord_bar(), {"bass", "comp"}),
        # left-hand roots under right-hand shells (two notes): the bass makes them chords
        (notes((0, 1.5, 36), (0, 1.5, 58), (0, 1.5, 64), (2, 1.5, 43), (2, 1.5, 58), (2, 1.5, 65)),
         {"bass", "comp"}),
        # held chords under a tune above them
        (notes((0, 2, 48), (0, 2, 52), (0, 2, 55), (2, 2, 48), (2, 2, 53), (2, 2, 57)) + melody_bar(),
         {"comp", "melody"}),
        # low close voicings are comping, not a bass line
        (chord_bar(voicing=(48, 52, 55)), {"comp"}),
        # a trombone's tune in the tenor register is a melody
        (melody_bar(base=55), {"melody"}),
        # a bass line played legato (each note rings into the next) and one played staccato
        (notes(*((i, 1.12, 38 + 2 * i) for i in range(4))), {"bass"}),
        (notes(*((i, 0.1, 38 + 2 * i) for i in range(4))), {"bass"}),
        # a bass line that leaps an octave is still one line
        (notes((0, 0.9, 36), (1, 0.9, 48), (2, 0.9, 36), (3, 0.9, 48)), {"bass"}),
        # a pickup note is no part; neither is silence
        (notes((3.5, 0.4, 67)), set()),
        ([], set()),
    ],
    ids=["bass", "comp", "melody", "drums", "lh-bass+chords", "lh-bass+shells", "chords+tune",
         "low-voicings", "trombone", "legato-bass", "staccato-bass", "octave-bass", "pickup", "silence"],
)
def test_a_bar_reads_as_the_part_it_plays(played: list[PlayedNote], roles: set[str]) -> None:
    assert bar_roles(played, 0.0, 4.0) == roles


def test_a_chord_held_over_the_bar_line_is_still_comping() -> None:
    pad = notes((0, 8, 60), (0, 8, 64), (0, 8, 67))
    assert bar_roles(pad, 4.0, 8.0) == {"comp"}


def test_a_note_struck_just_before_the_bar_line_belongs_to_the_next_bar() -> None:
    tune = melody_bar(1, base=72)
    early = [PlayedNote(n.start - 0.03, n.end, n.pitch, 80, 0) if n.start == 4 else n for n in tune]
    assert bar_roles(chord_bar(0) + early, 0.0, 4.0) == {"comp"}


def test_decisions_are_causal_a_held_note_counts_up_to_the_bar_line() -> None:
    rec = RoleRecognizer(4)
    for t, p in ((0, 36), (1, 40), (2, 43)):
        rec.note(t, 0.9, p, 80, 1)
    rec.note_on(38, 80, 3.0, 1)  # not released yet
    assert rec.decide(4.0) == {"bass"}
    rec.note(3.0, 0.9, 38, 80, 1)  # its note-off closes it: one note, not two
    assert len(rec._notes) == 4


def test_a_note_whose_note_off_never_came_stops_counting() -> None:
    rec = RoleRecognizer(4, return_bars=1)
    for n in chord_bar(0):
        rec.note_on(n.pitch, 80, n.start, 0)  # every note-off lost
    assert rec.decide(4.0) == {"comp"}
    for line in (8.0, 12.0, 16.0):
        rec.decide(line)
    assert rec.roles == frozenset()


@pytest.mark.parametrize("style", STYLES, ids=[s.name for s in STYLES])
def test_synthetic_players_are_heard_bar_by_bar(style) -> None:  # type: ignore[no-untyped-def]
    """Seeded synthetic players with a player's looseness (bench/roles.py): most bars exactly right.
    (A bar where a player plays one short note or rests reads as nothing; the hysteresis covers it.)"""
    right, total = per_bar(style, seeds=6)
    assert right / total >= 0.8, (style.name, right, total)


def test_over_all_styles_bars_are_read_right_and_parts_change_within_two_bars() -> None:
    right = total = 0
    for style in STYLES:
        r, t = per_bar(style, seeds=6)
        right, total = right + r, total + t
    assert right / total >= 0.9
    r = reactions(seeds=4)
    assert len(r["take"]) >= 20 and len(r["return"]) >= 20
    # heard part-way through its first bar: the agent rests from the next bar line
    assert sorted(r["take"])[len(r["take"]) // 2] == 1
    assert max(r["take"]) <= 3
    assert sorted(r["take bass"])[len(r["take bass"]) // 2] == 1
    assert sorted(r["take comp"])[len(r["take comp"]) // 2] == 1
    assert sorted(r["return"])[len(r["return"]) // 2] == 2  # two bars without it, and it is back
    # judged at bar lines only (no part-way judgment): a bar to hear it, a bar to reach a bar line
    late = reactions(seeds=4, early=False)
    assert sorted(late["take"])[len(late["take"]) // 2] == 2
    assert sorted(late["return"])[len(late["return"]) // 2] == 3
    # the parts held are the same either way, and no part taken part-way was not played
    assert r["settled"] == late["settled"] and r["spurious"] == late["spurious"]
    assert r["unconfirmed"] <= 1


# -- part-way through a bar --------------------------------------------------------------------------
def causal(played: list[PlayedNote], now: float) -> list[PlayedNote]:
    """As heard at `now`: a note not released by then is still held."""
    return [n if n.end is not None and n.end <= now
            else PlayedNote(n.start, None, n.pitch, n.velocity, n.channel) for n in played if n.start <= now]


@pytest.mark.parametrize(
    ("played", "roles"),
    [
        (bass_bar(), {"bass"}),  # three quarters of a walking bass
        (notes((0, 1.6, 36), (2, 1.6, 43)), {"bass"}),  # a two-feel bass, low
        (notes((0, 1.6, 38), (2, 1.6, 50)), set()),  # ... with a D3: two notes are not enough
        (notes((0, 0.9, 45), (1, 0.9, 43), (2, 0.9, 72)), set()),  # a melody dipping low for two notes
        (notes((0, 0.9, 55), (1, 0.9, 50), (2, 0.9, 48)), set()),  # ... or sliding down into it
        (chord_bar(), {"comp"}),  # a chord struck: a melody player strikes none
        (notes((0, 4, 60), (0, 4, 64), (0, 4, 67)), {"comp"}),  # a whole-bar chord
        (notes((0, 0.45, 72), (0.5, 0.45, 74), (1, 0.9, 76)), {"melody"}),
        (notes((0, 1.5, 72), (1.5, 1.5, 74)), set()),  # two notes of a tune
        (drum_bar(), {"drums"}),
        (notes((0, 1.5, 36), (2, 1.5, 43)) + chord_bar(), {"bass", "comp"}),  # a pianist's two hands
        (notes((1.5, 0.9, 36)), set()),
    ],
    ids=["walking", "two-feel", "two-feel-d3", "dip", "slide", "chords", "pad", "tune", "tune-2",
         "drums", "lh-bass+chords", "one-note"],
)
def test_a_part_is_beyond_doubt_part_way_through_a_bar_only_on_more_evidence(
        played: list[PlayedNote], roles: set[str]) -> None:
    assert early_roles(causal(played, 2.4), 0.0, 2.4) == roles


# -- hysteresis ---------------------------------------------------------------------------------------
def feed(rec: RoleRecognizer, played: list[PlayedNote]) -> None:
    for n in played:
        assert n.end is not None
        rec.note(n.start, n.end - n.start, n.pitch, n.velocity, n.channel)


def test_a_part_is_taken_after_a_bar_and_left_after_return_bars_without_it() -> None:
    rec = RoleRecognizer(4, return_bars=2)
    script = [bass_bar(0), bass_bar(1), [], bass_bar(3), [], [], []]
    held = []
    for bar, played in enumerate(script):
        feed(rec, played)
        held.append(set(rec.decide(4.0 * (bar + 1))))
    # taken at the first bar line; one bar's rest does not give it back; two do
    assert held == [{"bass"}, {"bass"}, {"bass"}, {"bass"}, {"bass"}, set(), set()]


def test_switching_parts_takes_the_new_one_at_once_and_leaves_the_old_after_return_bars() -> None:
    rec = RoleRecognizer(4, return_bars=2)
    held = []
    for bar in range(6):
        feed(rec, bass_bar(bar) if bar < 3 else melody_bar(bar))
        held.append(set(rec.decide(4.0 * (bar + 1))))
    assert held[2] == {"bass"}
    assert held[3] == {"bass", "melody"}
    assert held[5] == {"melody"}


def test_one_bar_of_chords_in_a_bass_line_does_not_flip_the_part() -> None:
    rec = RoleRecognizer(4, return_bars=2)
    held = []
    for bar in range(5):
        feed(rec, chord_bar(bar, (48, 52, 55)) if bar == 2 else bass_bar(bar))
        held.append(set(rec.decide(4.0 * (bar + 1))))
    assert all("bass" in h for h in held)


def test_random_streams_never_raise() -> None:
    rng = random.Random(5)
    for _ in range(300):
        played = [PlayedNote(rng.uniform(-4, 8), None if rng.random() < 0.2 else rng.uniform(-4, 12),
                             rng.randint(0, 127), rng.randint(1, 127), rng.choice((0, 9)))
                  for _ in range(rng.randint(0, 30))]
        played = [n for n in played if n.end is None or n.end > n.start]
        assert bar_roles(played, 4.0, 8.0) <= {"bass", "comp", "melody", "drums"}


def test_a_flood_of_notes_is_bounded() -> None:
    rec = RoleRecognizer(4)
    for i in range(5000):
        rec.note(i * 0.001, 0.5, 60 + i % 12, 80, 0)
    assert len(rec._notes) <= 1024
    assert rec.decide(8.0) <= {"bass", "comp", "melody"}
