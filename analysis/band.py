"""What a musician hears first in a band, measured from its notes: polyphony, who is lowest,
unisons between parts, dynamics, and whether the drummer varies the groove.

Notes are `(start_beat, duration_beats, pitch, velocity)` per part, as read from a recording. Time is
sampled on a 1/16-beat grid. A value a random or forced output would pass is no evidence: each
measure is paired in bench/band with the corpus value where the corpus has one (a chorale's bass
has polyphony 1.0 and is the lowest voice at practically every moment).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

import numpy as np

Note4 = tuple[float, float, int, int]
STEPS = 16  # grid steps per beat
TOMS = frozenset({41, 43, 45, 47, 48, 50})
SNARES = frozenset({38, 40})
CRASHES = frozenset({49, 57})


def _grid(notes: Sequence[Note4], length: int) -> list[list[int]]:
    """Pitches sounding at each grid step."""
    out: list[list[int]] = [[] for _ in range(length)]
    for start, dur, pitch, _ in notes:
        a = max(0, round(start * STEPS))
        b = min(length, max(a + 1, round((start + dur) * STEPS)))
        for i in range(a, b):
            out[i].append(pitch)
    return out


def _length(parts: Mapping[str, Sequence[Note4]]) -> int:
    ends = [s + d for notes in parts.values() for s, d, _, _ in notes]
    return round(max(ends, default=0) * STEPS) + 1


def polyphony(notes: Sequence[Note4]) -> float:
    """Mean number of the part's notes sounding, over the time at least one sounds (1.0: one line)."""
    counts = [len(s) for s in _grid(notes, _length({"p": notes})) if s]
    return float(np.mean(counts)) if counts else 0.0


def max_polyphony(notes: Sequence[Note4]) -> int:
    return max((len(s) for s in _grid(notes, _length({"p": notes}))), default=0)


def lowest_share(parts: Mapping[str, Sequence[Note4]], bass: str) -> float:
    """Of the time the bass and at least one other part sound, the share in which the bass's lowest
    note is strictly below every other part's notes."""
    length = _length(parts)
    grids = {name: _grid(notes, length) for name, notes in parts.items()}
    both = lowest = 0
    for i in range(length):
        mine = grids[bass][i]
        others = [p for name, g in grids.items() if name != bass for p in g[i]]
        if mine and others:
            both += 1
            lowest += min(mine) < min(others)
    return lowest / both if both else 1.0


def unison_share(parts: Mapping[str, Sequence[Note4]]) -> dict[str, float]:
    """Per part, the share of its notes that start on a pitch another part sounds at that moment."""
    length = _length(parts)
    grids = {name: _grid(notes, length) for name, notes in parts.items()}
    out = {}
    for name, notes in parts.items():
        hits = 0
        for start, _, pitch, _ in notes:
            i = min(length - 1, round(start * STEPS))
            hits += any(pitch in g[i] for other, g in grids.items() if other != name)
        out[name] = hits / len(notes) if notes else 0.0
    return out


def velocity_profile(notes: Sequence[Note4], beats_per_bar: int) -> dict[str, float]:
    """Spread of velocities and the mean on beat 1 against the mean off the beats."""
    vel = [v for _, _, _, v in notes]
    downbeat = [v for s, _, _, v in notes if abs(s - round(s / beats_per_bar) * beats_per_bar) < 1 / 32]
    off = [v for s, _, _, v in notes if abs(s - round(s)) >= 1 / 32]
    return {
        "velocity_std": statistics.pstdev(vel) if len(vel) > 1 else 0.0,
        "velocity_downbeat": statistics.mean(downbeat) if downbeat else 0.0,
        "velocity_offbeat": statistics.mean(off) if off else 0.0,
    }


def bar_pattern(notes: Sequence[Note4], bar: int, beats_per_bar: int) -> tuple[tuple[int, int], ...]:
    lo, hi = bar * beats_per_bar, (bar + 1) * beats_per_bar
    return tuple(sorted((round((s - lo) * STEPS), p) for s, _, p, _ in notes if lo <= s < hi))


def drum_phrases(notes: Sequence[Note4], beats_per_bar: int, bars: int, phrase: int = 4) -> dict[str, float]:
    """Fills at phrase ends and variety between consecutive phrases.

    A phrase end has a fill when its last bar has a tom, or three or more snare strokes in its last
    two beats, that its first bar does not; the next downbeat's crash is counted beside it."""
    phrases = bars // phrase
    fills = crashes = identical = 0
    for k in range(phrases):
        first = bar_pattern(notes, k * phrase, beats_per_bar)
        last_bar = (k + 1) * phrase - 1
        last = bar_pattern(notes, last_bar, beats_per_bar)
        tail = [p for s, p in last if s >= (beats_per_bar - 2) * STEPS]
        toms = any(p in TOMS for _, p in last) and not any(p in TOMS for _, p in first)
        snares = sum(p in SNARES for p in tail) >= 3 > sum(
            p in SNARES for s, p in first if s >= (beats_per_bar - 2) * STEPS)
        fills += toms or snares
        nxt = bar_pattern(notes, (k + 1) * phrase, beats_per_bar)
        crashes += any(s == 0 and p in CRASHES for s, p in nxt)
        if k + 1 < phrases:
            a = [bar_pattern(notes, b, beats_per_bar) for b in range(k * phrase, (k + 1) * phrase)]
            b = [bar_pattern(notes, x, beats_per_bar) for x in range((k + 1) * phrase, (k + 2) * phrase)]
            identical += a == b
    return {
        "phrases": float(phrases),
        "fill_share": fills / phrases if phrases else 0.0,
        "crash_after_fill_share": crashes / max(1, phrases - 1) if phrases > 1 else 0.0,
        "identical_consecutive_phrases": float(identical),
    }


def band_summary(parts: Mapping[str, Sequence[Note4]], roles: Mapping[str, str], beats_per_bar: int,
                 bars: int) -> dict[str, dict[str, float]]:
    """Every measure, per part (drums measured for phrases only)."""
    pitched = {n: notes for n, notes in parts.items() if roles.get(n) != "drums"}
    agents = {n: notes for n, notes in pitched.items() if roles.get(n) != "human"}
    unisons = unison_share(agents)
    basses = [n for n in agents if roles.get(n) == "bass"]
    out: dict[str, dict[str, float]] = {}
    for name, notes in parts.items():
        row: dict[str, float] = {"notes": float(len(notes)), "notes_per_bar": len(notes) / max(1, bars)}
        if roles.get(name) == "drums":
            row.update(drum_phrases(notes, beats_per_bar, bars))
        else:
            row["polyphony"] = polyphony(notes)
            row["max_polyphony"] = float(max_polyphony(notes))
            row.update(velocity_profile(notes, beats_per_bar))
            if name in unisons:
                row["unison_share"] = unisons[name]
            if name in basses:
                row["lowest_share"] = lowest_share(agents, name)
        out[name] = row
    return out
