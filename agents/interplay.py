"""How busy a part plays beside the player: thinner under a busy tune.

An accompanist leaves room: when the soloist plays a run, the comping thins to longer values. A model
that learnt from chorales does the opposite (its voices move with the soprano, so a tune in sixteenths
drew a comping part twice as busy as one in half notes). A part's density (the YAML's `density`, live
from OSC) and onset grid are its own; this module lowers them by how many onsets the player's tune had
in the beats just heard, so a part thins within the window it re-plans after the player's notes.
Below a tune in quarters or slower a part plays as it would alone: a density over the part's own
adds no notes with the shipped model, so it is not offered as an answer to the tune's rests.

Which notes count is a matter of musical time alone, so a busy machine plays the same notes as an
idle one. A window is drawn again after each of the player's note-ons, from the first beat its
re-plan can reach (``lag`` beats after the note: the commit distance, the part's turn and the
re-plan's lead); so the notes that start up to ``lag`` beats before a window are all heard by the
time it is drawn for the last time, and no later one counts. A note heard only at its note-off (its
note-on lost, or a bridge that sends whole notes) re-plans the part later: it counts from the window
that re-plan begins, as the model's context takes it, on a busy machine as on an idle one.
"""

from __future__ import annotations

import math

__all__ = ["ROLE_STEADY", "ROLE_STRENGTH", "STEADY_RATE", "TuneActivity", "density_factor", "onset_grid"]

SPAN_BEATS = 4.0  # the stretch of the tune a part listens to: a bar of 4/4
# the onset rate (distinct onsets per beat) up to which a part plays its own density: a tune in quarters
STEADY_RATE = 1.0
THINNEST = 0.6  # the least share of its density a part keeps under the busiest tune
EXPONENT = 0.3  # how steeply the density follows the rate: sixteenths (rate 4) thin it to 0.66
# how far each role follows: the bass keeps the time, so it leans half as far; a melody part plays
# around the tune as a second voice, comping thins and fills in full
ROLE_STRENGTH = {"comp": 1.0, "melody": 1.0, "bass": 0.5, "drums": 0.0}
# A horn beside the tune plays a background to it: it thins from a tune of one note a bar, so under a
# tune in quarters it plays two thirds of its density, on the beat, and it plays in full only where
# the tune rests
ROLE_STEADY = {"melody": 0.25}
_KEEP = 512


def density_factor(onsets: int, *, strength: float = 1.0, steady: float = STEADY_RATE) -> float:
    """The share of its density a part plays beside ``onsets`` distinct onsets of the tune in the last
    SPAN_BEATS; ``steady``: the tune's onsets a beat up to which it plays in full."""
    rate = onsets / SPAN_BEATS
    if rate <= steady:
        return 1.0
    return float(max(THINNEST, (rate / steady) ** -EXPONENT) ** strength)


# Under a busy tune a part also moves to longer values: its onsets go to eighths below this factor,
# and to the beat below the next (a tune in sixteenths). The density alone leans on how long the part
# waits, which moves whole beats more than the notes within one.
EIGHTHS_BELOW = 0.85
BEATS_BELOW = 0.72


def onset_grid(base: int, factor: float) -> int:
    """The part's onset grid (1/16-beat steps) at a density ``factor``: its own, or coarser."""
    if factor < BEATS_BELOW:
        return max(base, 16)
    if factor < EIGHTHS_BELOW:
        return max(base, 8)
    return base


class TuneActivity:
    """The onsets of the player's tune that a part has taken in, by musical time."""

    def __init__(self, lag_beats: float, strength: float, steady: float = STEADY_RATE) -> None:
        if not math.isfinite(lag_beats) or lag_beats < 0:
            raise ValueError(f"lag_beats: must be a finite number >= 0, got {lag_beats}")
        self.lag = lag_beats
        self.strength = strength
        self.steady = steady
        # onset in 1/64 beats (a chord's notes are one onset) -> the first window that may count it
        self._onsets: dict[int, float] = {}

    @classmethod
    def for_role(cls, role: str, lag_beats: float, *, beside_tune: bool) -> TuneActivity:
        """A part's listener: how far its role follows the tune and from what rate it thins; a part
        with no tune beside it (no player, or a player heard on another part) follows nothing."""
        return cls(lag_beats, ROLE_STRENGTH.get(role, 0.0) if beside_tune else 0.0,
                   ROLE_STEADY.get(role, STEADY_RATE))

    def add(self, start_beat: float, from_beat: float = -math.inf) -> None:
        """A note of the tune, at its note-on or (if that was not heard) at its note-off: once either
        way. ``from_beat``: the first window the part draws with the note in its context (its re-plan
        beat); a window before it never counts the note, however late it was drawn on this machine."""
        if not math.isfinite(start_beat) or self.strength == 0.0:
            return
        key = round(start_beat * 64)
        self._onsets[key] = min(self._onsets.get(key, math.inf), from_beat)
        if len(self._onsets) > _KEEP:
            for t in sorted(self._onsets)[: len(self._onsets) - _KEEP]:
                del self._onsets[t]

    def factor(self, window_beat: float) -> float:
        """The density factor for the window that starts at ``window_beat``."""
        if self.strength == 0.0 or not self._onsets:
            return 1.0
        hi = round((window_beat - self.lag) * 64)
        lo = hi - round(SPAN_BEATS * 64)
        recent = sum(1 for t, first in self._onsets.items() if lo <= t < hi and first <= window_beat)
        return density_factor(recent, strength=self.strength, steady=self.steady)
