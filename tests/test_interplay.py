"""A part leaves room under a busy tune and fills the tune's rests (agents/interplay.py)."""

from __future__ import annotations

import pytest

from agents.engines.model_worker import Planner
from agents.interplay import ROLE_STEADY, THINNEST, TuneActivity, density_factor, onset_grid
from bench.reaction import config, perform
from protocol.messages import Note

BARS = 8


def test_the_busier_the_tune_the_thinner_the_part() -> None:
    factors = [density_factor(n) for n in (0, 4, 8, 16, 64)]
    assert factors == sorted(factors, reverse=True)
    assert factors[0] == factors[1] == 1.0  # up to a tune in quarters: the part's own density
    assert factors[-1] == THINNEST


def test_a_busy_tune_moves_the_part_to_longer_values() -> None:
    assert onset_grid(4, density_factor(4)) == 4
    assert onset_grid(4, density_factor(8)) == 8  # eighths in the tune: the part on eighths
    assert onset_grid(4, density_factor(16)) == 16  # sixteenths: on the beat
    assert onset_grid(16, density_factor(8)) == 16  # never finer than the part's own


def test_a_horn_beside_the_tune_plays_a_background() -> None:
    """Under a tune in quarters a comping part plays its own density; a horn (a melody part) thins,
    to the beat, and plays in full only where the tune rests."""
    steady = ROLE_STEADY["melody"]
    assert density_factor(4) == 1.0  # four onsets in the bar listened to: quarters
    horn = density_factor(4, steady=steady)
    assert THINNEST <= horn < 0.72 and onset_grid(4, horn) == 16  # on the beat
    assert density_factor(1, steady=steady) == density_factor(0, steady=steady) == 1.0


def test_the_bass_leans_half_as_far() -> None:
    assert density_factor(16, strength=0.5) == pytest.approx(density_factor(16) ** 0.5)
    assert density_factor(16, strength=0.0) == 1.0


def test_only_notes_a_lag_before_the_window_count() -> None:
    tune = TuneActivity(lag_beats=2.0, strength=1.0)
    for beat in range(8):
        tune.add(beat / 2)  # eighths over beats 0..4
    before = tune.factor(6.0)  # hears the stretch 0..4
    tune.add(4.5)  # a note 1.5 beats before the window: not heard by it
    assert tune.factor(6.0) == before < 1.0
    tune.add(3.75)  # within the stretch and the lag
    assert tune.factor(6.0) < before


def test_a_note_counts_from_the_window_its_replan_begins() -> None:
    """A note heard only at its note-off re-plans the part from a later beat: windows before it never
    count it, however late this machine drew them."""
    tune = TuneActivity(lag_beats=1.0, strength=1.0)
    for beat in range(8):
        tune.add(beat / 2, from_beat=6.0)
    assert tune.factor(5.0) == 1.0
    assert tune.factor(6.0) < 1.0


def test_chord_notes_are_one_onset() -> None:
    one, chord = TuneActivity(0.0, 1.0), TuneActivity(0.0, 1.0)
    for beat in range(8):
        one.add(beat / 2)
        for _ in range(3):
            chord.add(beat / 2)
    assert one.factor(4.0) == chord.factor(4.0) < 1.0


def comping(tune: list[tuple[float, float, int]], *, interplay: bool = True, seed: int = 5) -> list[Note]:
    """A comping part's notes over BARS bars under ``tune`` ((start, length, pitch) in beats), its
    Planner driven as the agent drives it (bench/reaction.py)."""
    cfg = config("comp", seed=seed)
    planner = Planner(cfg)
    if not interplay:
        planner.tune.strength = 0.0
    return perform(cfg, None, tune=[(s, d, p, 90) for s, d, p in tune], bars=BARS, planner=planner)


def run(beats: float, step: float) -> list[tuple[float, float, int]]:
    pitches = (72, 74, 76, 77, 79, 77, 76, 74)
    return [(i * step, step, pitches[i % len(pitches)]) for i in range(int(beats / step))]


def count(tune: list[tuple[float, float, int]], interplay: bool = True) -> int:
    return sum(len(comping(tune, interplay=interplay, seed=s)) for s in (5, 6))


def test_a_comping_part_thins_under_sixteenths() -> None:
    """Against the same parts with the interplay off: the chorale model's comping moves with a busy
    tune; with the interplay it leaves the run room."""
    busy = run(4 * BARS, 0.25)
    assert count(busy) < 0.7 * count(busy, interplay=False)


def test_beside_a_slow_tune_the_part_plays_as_it_would() -> None:
    slow = run(4 * BARS, 2.0)
    assert comping(slow) == comping(slow, interplay=False)
