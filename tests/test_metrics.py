"""The musical metrics on notes whose answer is known by construction."""

from __future__ import annotations

import math

import pytest

from analysis.metrics import (
    chord_tone_rate,
    groove_consistency,
    is_strong_beat,
    pitch_class_entropy,
    scale_consistency,
    summary,
)
from protocol.harmony import ChordPlan


def test_entropy_of_one_and_of_all_pitch_classes() -> None:
    assert pitch_class_entropy([(0.0, 1.0, 60)] * 5) == 0.0
    assert pitch_class_entropy([(float(i), 1.0, 60 + i) for i in range(12)]) == pytest.approx(math.log2(12))


def test_scale_consistency() -> None:
    c_major = [(float(i), 1.0, p) for i, p in enumerate([60, 62, 64, 65, 67, 69, 71])]
    assert scale_consistency(c_major) == 1.0
    assert scale_consistency([*c_major, (8.0, 1.0, 61)]) == pytest.approx(7 / 8)


def test_groove_consistency() -> None:
    same = [(bar * 4.0 + b, 0.5, 60) for bar in range(4) for b in (0.0, 1.0, 2.5)]
    assert groove_consistency(same) == 1.0
    alternating = [(bar * 4.0 + (0.0 if bar % 2 else 1.0), 0.5, 60) for bar in range(4)]
    assert groove_consistency(alternating) == pytest.approx(1 - 2 / 16)


def test_strong_beats_and_chord_tone_rate() -> None:
    assert is_strong_beat(0.0, 4) and is_strong_beat(6.0, 4) and not is_strong_beat(1.0, 4)
    assert is_strong_beat(3.0, 3) and not is_strong_beat(1.5, 3)
    plan = ChordPlan.parse("C | G7")
    notes = [(0.0, 1.0, 64), (2.0, 1.0, 61), (4.0, 1.0, 65), (1.0, 1.0, 61)]
    rate, n = chord_tone_rate(notes, plan, 4)
    assert n == 3 and rate == pytest.approx(2 / 3)


def test_summary_of_nothing() -> None:
    assert summary([])["notes"] == 0
