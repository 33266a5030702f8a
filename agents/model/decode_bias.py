"""The logit biases the decoder adds: the chord's on the pitch tokens, the density's on the time tokens.

Harmony enters the decoder (agents/model/decoder.py) as its masks do (docs/harmony.md): once a note's
time tokens are drawn its beat is known, so the pitch logits get a bias from the chord at that beat:
``+s`` chord tones, ``+s/2`` tensions, ``-s`` avoid notes, nothing under N.C.; a bass part adds ``+s``
on the chord's bass pitch class and ``+s/2`` on its root when a slash chord separates them, on the
strong beats and where a chord begins between them only: there a bass states the chord, and
elsewhere it moves (with the lean on every
onset the shipped model's bass repeated its previous pitch on half its notes, where a chorale bass does
on 6 %). Biases are logit offsets added before the temperature (they scale with it, like the logits).

The strength is metrical: ``s`` is ``chord_bias`` in full on a strong beat (beat 1, and the middle of
an even bar, as analysis/metrics.py judges them) and ``chord_bias * weak_beat_bias`` anywhere else.
Tonal lines put chord tones on strong beats and move between them by step on the weak ones (passing
and neighbour tones); a full bias on every onset makes such a note ``e ** (2 s)`` times less likely
than a chord tone (about 3000 at ``chord_bias`` 4), so weak beats get a share of it, 0.5 by default
(about 55). The share is the decoder's, not an ensemble setting: the quality bench found the
agents' pitch-class entropy much the same from 0.3 to 1 (docs/harmony.md), so it is a musical default
rather than a tuned one.

Density ``d`` biases the time tokens: each beat of delay after the end of the context multiplies an
onset's odds by ``d ** -1`` (time1 gets ``-ln(d) * beats``, time2 ``-ln(d) * sixteenths / 16``), so
``d > 1`` plays denser, ``d < 1`` sparser, ``d == 1`` leaves the model alone. Velocity and duration
are never touched.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from protocol.harmony import Chord, PitchRole, pitch_class_roles

_MIN_DENSITY = 1e-3  # what density 0 plays as (see DensityBias)
_BIAS_CACHE_SIZE = 64


class DensityBias:
    """The time-token biases of a density, built once per density and kept (the last one)."""

    def __init__(self, max_delta: int) -> None:
        self._max_delta = max_delta  # largest time1 value: the table's length, less one
        self._density: tuple[float, np.ndarray, np.ndarray] | None = None

    def __call__(self, density: float, which: Literal[1, 2], start: int) -> np.ndarray | None:
        if density == 1.0:
            return None
        if self._density is None or self._density[0] != density:
            # density 0 is the sparsest the part plays: the longest waits as likely as a
            # density of 1/1000 makes them, not a certainty (an infinite bias)
            scale = -math.log(max(density, _MIN_DENSITY))
            self._density = (
                density,
                (scale * np.arange(self._max_delta + 1)).astype(np.float32),
                (scale * np.arange(16) / 16).astype(np.float32),
            )
        return self._density[which][start:]


class ChordBias:
    """The pitch-token biases of a chord, over the allowed pitches (``pitch_pc``: their pitch classes)."""

    def __init__(self, pitch_pc: np.ndarray) -> None:
        self._pitch_pc = pitch_pc
        self._chord_bias: dict[tuple[Chord, float, bool], np.ndarray | None] = {}

    def __call__(self, chord: Chord | None, strength: float, bass: bool) -> np.ndarray | None:
        """Bias over the allowed pitches, built once per (chord, strength, bass) and kept."""
        if chord is None or strength == 0:
            return None
        key = (chord, strength, bass)
        if key in self._chord_bias:
            return self._chord_bias[key]
        s = strength
        role_bias = {
            PitchRole.CHORD_TONE: s,
            PitchRole.TENSION: s / 2,
            PitchRole.AVOID: -s,
            PitchRole.FREE: 0.0,
        }
        per_pc = np.array([role_bias[r] for r in pitch_class_roles(chord)], np.float32)
        if bass and not chord.is_no_chord:
            per_pc[chord.bass] += s
            if chord.root != chord.bass:
                per_pc[chord.root] += s / 2
        bias = per_pc[self._pitch_pc] if per_pc.any() else None
        if len(self._chord_bias) >= _BIAS_CACHE_SIZE:
            self._chord_bias.clear()
        self._chord_bias[key] = bias
        return bias


def is_strong_beat(beat: float, bar_beats: int) -> bool:
    """Beat 1 of a bar, or the middle of an even bar of more than two beats (beat 3 in 4/4): where a
    listener hears the harmony, so where the chord bias applies in full. The same rule as
    analysis/metrics.py's, which the quality bench judges by (a note up to one 1/16-beat slot either
    side counts: it is heard on the beat); restated so the agent does not import the analysis package."""
    pos = beat % bar_beats
    tol = 1 / 16 + 1e-9
    strong = pos <= tol or pos >= bar_beats - tol
    if bar_beats % 2 == 0 and bar_beats > 2:
        strong = strong or abs(pos - bar_beats / 2) <= tol
    return strong
