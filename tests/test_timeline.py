"""Timeline maths: beats stay continuous across tempo changes, start and stop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.timeline import LocalTimeMap, Timeline


def playing(tempo: float = 120.0, t0: float = 100.0) -> Timeline:
    return Timeline(tempo_bpm=tempo).started(t0, at_beat=0.0)


def test_beat_and_time_are_inverse() -> None:
    tl = playing()
    assert tl.beat_at(101.0) == pytest.approx(2.0)
    assert tl.time_at(2.0) == pytest.approx(101.0)


def test_tempo_change_waits_for_its_beat_and_keeps_the_beat_continuous() -> None:
    tl = playing(120.0)
    changed = tl.with_tempo(60.0, at_beat=4.0, now=100.5)  # announced at beat 1
    assert changed.epoch > tl.epoch
    # Before beat 4 nothing changes.
    for t in (100.5, 101.0, 101.99):
        assert changed.beat_at(t) == pytest.approx(tl.beat_at(t))
    # Beat 4 falls at 102.0 s; after it one beat lasts a second.
    assert changed.time_at(4.0) == pytest.approx(102.0)
    assert changed.beat_at(103.0) == pytest.approx(5.0)
    assert changed.time_at(6.0) == pytest.approx(104.0)


def test_settling_folds_a_passed_change_into_the_origin() -> None:
    changed = playing(120.0).with_tempo(90.0, at_beat=2.0, now=100.0)
    settled = changed.settled(now=105.0)
    assert settled.next_tempo_bpm == 0.0 and settled.tempo_bpm == 90.0
    for t in (101.5, 103.0, 110.0):
        assert settled.beat_at(t) == pytest.approx(changed.beat_at(t))


def test_stop_freezes_the_beat_and_start_resumes_it() -> None:
    tl = playing()
    stopped = tl.stopped(now=102.0)
    assert not stopped.playing
    assert stopped.beat_at(500.0) == pytest.approx(4.0)
    again = stopped.started(now=600.0)
    assert again.beat_at(600.5) == pytest.approx(5.0)


def test_change_in_the_past_applies_at_once() -> None:
    tl = playing().with_tempo(60.0, at_beat=-10.0, now=102.0)
    assert tl.beat_at(102.0) == pytest.approx(4.0)
    assert tl.beat_at(103.0) == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("tempo_bpm", float("nan")), ("tempo_bpm", -5.0), ("beats_per_bar", 0), ("next_tempo_bpm", 5.0)],
)
def test_invalid_values_name_the_field(field: str, value: float) -> None:
    with pytest.raises((ValueError, TypeError), match=field):
        Timeline(**{field: value})


def test_local_time_map_applies_the_offset() -> None:
    tl = playing()
    tm = LocalTimeMap(tl, offset_s=0.25)  # conductor clock runs 0.25 s ahead of ours
    assert tm.time_at(2.0) == pytest.approx(100.75)
    assert tm.beat_at(100.75) == pytest.approx(2.0)
    assert LocalTimeMap(tl.stopped(101.0)).time_at(3.0) is None


@given(t1=st.floats(100.0, 200.0), tempo=st.floats(20.0, 400.0), dt=st.floats(0.0, 50.0))
def test_beat_is_monotonic_and_continuous_across_any_change(t1: float, tempo: float, dt: float) -> None:
    tl = playing(120.0)
    at = tl.beat_at(t1) + 1.0
    changed = tl.with_tempo(tempo, at, now=t1)
    tc = changed.time_at(at)
    assert changed.beat_at(tc) == pytest.approx(at, abs=1e-6)
    assert changed.beat_at(tc + dt) >= changed.beat_at(tc) - 1e-9
    assert changed.beat_at(tc - 1e-6) == pytest.approx(at, abs=1e-3)
