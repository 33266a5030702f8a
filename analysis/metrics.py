"""How musical a set of notes is, in the terms the MMT/MusPy evaluation uses, plus plan-following.

Notes are `(start_beat, duration_beats, pitch)` triples so a recording, a model's free run and a
corpus piece are measured the same way.

- pitch-class entropy: Shannon entropy (bits) of the pitch-class histogram (MusPy).
- scale consistency: the largest fraction of notes inside any one major or natural-minor scale (MusPy).
- groove consistency: 1 − mean Hamming distance between the onset patterns of consecutive bars, on a
  grid of `resolution` steps per beat (MusPy).
- strong-beat chord-tone rate: of the notes that start on a strong beat (beat 1 and the middle of the
  bar), the fraction whose pitch class is a chord tone of the plan's chord at that beat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from protocol.harmony import ChordPlan

NoteTriple = tuple[float, float, int]

_MAJOR = (0, 2, 4, 5, 7, 9, 11)


def pitch_class_entropy(notes: Sequence[NoteTriple]) -> float:
    if not notes:
        return 0.0
    hist = np.bincount([p % 12 for _, _, p in notes], minlength=12).astype(float)
    prob = hist / hist.sum()
    nz = prob[prob > 0]
    return float(-(nz * np.log2(nz)).sum())


def scale_consistency(notes: Sequence[NoteTriple]) -> float:
    if not notes:
        return 0.0
    pcs = np.array([p % 12 for _, _, p in notes])
    best = 0.0
    for tonic in range(12):
        scale = {(tonic + i) % 12 for i in _MAJOR}  # natural minor shares the major scales' sets
        best = max(best, float(np.isin(pcs, list(scale)).mean()))
    return best


def groove_consistency(notes: Sequence[NoteTriple], beats_per_bar: int = 4, resolution: int = 4) -> float:
    if not notes:
        return 0.0
    steps = beats_per_bar * resolution
    last_bar = int(max(s for s, _, _ in notes) // beats_per_bar)
    grid = np.zeros((last_bar + 1, steps), dtype=bool)
    for s, _, _ in notes:
        if s < 0:
            continue
        bar = int(s // beats_per_bar)
        grid[bar, round((s - bar * beats_per_bar) * resolution) % steps] = True
    if len(grid) < 2:
        return 1.0
    hamming = (grid[1:] != grid[:-1]).mean(axis=1)
    return float(1.0 - hamming.mean())


def is_strong_beat(beat: float, beats_per_bar: int, tolerance: float = 1 / 16) -> bool:
    """Beat 1 of the bar, and the middle of an even bar (beat 3 in 4/4)."""
    pos = beat % beats_per_bar
    strong = [0.0] + ([beats_per_bar / 2] if beats_per_bar % 2 == 0 and beats_per_bar > 2 else [])
    return any(abs(pos - s) <= tolerance or abs(pos - beats_per_bar - s) <= tolerance for s in strong)


def chord_tone_rate(notes: Iterable[NoteTriple], plan: ChordPlan, beats_per_bar: int,
                    strong_only: bool = True) -> tuple[float, int]:
    """(fraction of chord tones, how many notes were judged); NaN when no note qualifies."""
    hits = total = 0
    for start, _, pitch in notes:
        if strong_only and not is_strong_beat(start, beats_per_bar):
            continue
        chord = plan.chord_at(start, beats_per_bar)
        if chord is None or not chord.tones:
            continue
        total += 1
        hits += (pitch % 12) in chord.tones
    return (hits / total if total else math.nan), total


def summary(notes: Sequence[NoteTriple], beats_per_bar: int = 4) -> dict[str, float]:
    """The three MMT metrics plus density and range, as one row of a quality table."""
    if not notes:
        return {"notes": 0, "pitch_class_entropy": 0.0, "scale_consistency": 0.0, "groove_consistency": 0.0,
                "notes_per_bar": 0.0, "pitch_range": 0}
    end = max(s + d for s, d, _ in notes)
    pitches = [p for _, _, p in notes]
    return {
        "notes": len(notes),
        "pitch_class_entropy": pitch_class_entropy(notes),
        "scale_consistency": scale_consistency(notes),
        "groove_consistency": groove_consistency(notes, beats_per_bar),
        "notes_per_bar": len(notes) / max(1.0, end / beats_per_bar),
        "pitch_range": max(pitches) - min(pitches),
    }
