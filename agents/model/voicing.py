"""The band's voicing rules, applied to a part's pitch draw whatever model drew it.

A model trained on four-part chorales (or a user's SkyTNT export trained on piano music) has no idea
that this part is a bass or a trumpet: left alone it plays chords on a bass, sits the bass above the
piano and doubles other parts in unison. These rules are masks over the pitches the part may draw at
the slot where its note starts, built from what the shared context says sounds there, so they hold
with any model:

- a part never strikes more notes at one slot than its polyphony (the decoder closes the slot);
- a comping chord stays within the hand's span (the widest interval between its notes);
- no pitch another part sounds at that moment, unless the part may double (`doubling: true`);
- the bass stays below every other agent's sounding note; the other agents stay above the bass's;
- a comping part stays below the player's tune: under the notes of it that sounded in the last bar
  (``TUNE_MEMORY_BEATS``) or sound now, those above the middle of the part's range (a player down in
  the bass register is no tune to keep under). The tune's next note is not known when the part draws
  its own a beat or two ahead, so the register the tune has just been in stands for it: under the
  sounding note alone, a piano's right hand climbed over the tune whenever the tune stepped down or
  rested.

When the rules leave nothing (a melody held exactly where the bass would go), the unison rule and
the register rules give way in that order: the note still sounds, in range, on the chord.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# a comping part keeps this far under the tune's note, so the tune's next step down is no unison
TUNE_STEP = 2
TUNE_MEMORY_BEATS = 4.0  # how far back the tune's notes set the comping's ceiling: a bar of 4/4
TUNE_MEMORY_SLOTS = round(16 * TUNE_MEMORY_BEATS)  # the same in the context's 1/16-beat slots
# the roles that keep under the player's tune: comping, and a horn beside it, whose line over the
# tune (or on its very notes) buries it, where a second voice under it accompanies it
UNDER_TUNE = frozenset({"comp", "melody"})


@dataclass(frozen=True, slots=True)
class Voicing:
    """One part's rules and what it must know of the others: which tracks are bass parts and which
    are agents (the human's track is neither: the bass follows a player who takes the bass line)."""

    role: str = "comp"
    polyphony: int = 4
    span: int = 0
    doubling: bool = False
    bass_tracks: frozenset[int] = frozenset()
    agent_tracks: frozenset[int] = frozenset()
    drum_tracks: frozenset[int] = frozenset()  # unpitched: a kick's note number is no pitch to avoid
    tune_tracks: frozenset[int] = frozenset()  # the player's: a comping part keeps under its tune


def _tune_ceiling(v: Voicing, tracks: np.ndarray, sounds: np.ndarray, middle: float,
                  recent: np.ndarray | None = None) -> int | None:
    """The lowest tune note above ``middle``, sounding or ``recent``, which the part keeps under."""
    if v.role not in UNDER_TUNE or not v.tune_tracks:
        return None
    tune = sounds[track_table(v.tune_tracks)[tracks]]
    if recent is not None and len(recent):
        tune = np.concatenate((tune, recent))
    tune = tune[tune > middle]
    return int(tune.min()) if len(tune) else None


def pitch_keep(v: Voicing, track: int, pitches: np.ndarray, slot: int,
               sounding: tuple[np.ndarray, np.ndarray, np.ndarray],
               recent_tune: np.ndarray | None = None) -> np.ndarray | None:
    """Which of ``pitches`` (the part's range, ascending) the part may start at ``slot``; None when
    the rules take nothing away (the usual case: no allocation). ``recent_tune``: the pitches of the
    tune's notes that sounded in the last ``TUNE_MEMORY_BEATS``. Runs once per drawn pitch, so the
    set tests are 128-entry tables, not ``np.isin``."""
    tracks, sounds, starts = sounding
    if len(tracks) == 0 and (recent_tune is None or not len(recent_tune)):
        return None
    own = tracks == track
    others = ~own
    for t in v.drum_tracks:
        others &= tracks != t
    keep = np.ones(len(pitches), dtype=bool)
    chord = sounds[own & (starts == slot)]
    if v.span and len(chord):
        keep &= (pitches >= int(chord.max()) - v.span) & (pitches <= int(chord.min()) + v.span)
    if not others.any() and (recent_tune is None or not len(recent_tune)):
        return None if keep.all() else keep
    other_tracks, other_sounds = tracks[others], sounds[others]
    register = np.ones(len(pitches), dtype=bool)
    if v.role == "bass":
        above = other_sounds[track_table(v.agent_tracks)[other_tracks]]
        if len(above):
            register = pitches < int(above.min())
    elif v.role in ("comp", "melody"):
        below = other_sounds[track_table(v.bass_tracks)[other_tracks]]
        if len(below):
            register = pitches > int(below.max())
        ceiling = _tune_ceiling(v, other_tracks, other_sounds, (int(pitches[0]) + int(pitches[-1])) / 2,
                                recent_tune)
        if ceiling is not None:
            register = register & (pitches < ceiling - TUNE_STEP)
    unison = np.ones(len(pitches), dtype=bool)
    if not v.doubling:
        taken = np.zeros(128, dtype=bool)
        taken[other_sounds] = True
        unison = ~taken[pitches]
    for extra in (register & unison, register, unison):
        if (keep & extra).any():
            keep &= extra
            break
    if not keep.any():
        return None
    return None if keep.all() else keep


@lru_cache(maxsize=64)
def track_table(tracks: frozenset[int]) -> np.ndarray:
    """A lookup of track numbers (all below 128): table[track] is True for members; kept, read only."""
    table = np.zeros(128, dtype=bool)
    table[list(tracks)] = True
    return table


def room(v: Voicing, pitch: int, pitch_range: tuple[int, int], others: list[tuple[int, int]],
         own: list[int], chord_tones: Sequence[int], recent_tune: Sequence[int] = ()) -> int | None:
    """Where a committed note goes given what the other parts sound at its start (and the tune's
    notes of the last bar, ``recent_tune``): ``pitch`` itself when it breaks no rule, else the same
    pitch class an octave away, else the nearest free chord tone (in range, on the right side of the
    bass), else None: no room for it."""
    lo, hi = pitch_range
    if not others and not recent_tune and pitch not in own:
        return pitch
    taken = set(own) if v.doubling else set(own) | {p for _, p in others}
    floor, ceiling = lo, hi
    if v.role == "bass":
        above = [p for t, p in others if t in v.agent_tracks]
        if above:
            ceiling = min(ceiling, min(above) - 1)
    elif v.role in ("comp", "melody"):
        bass = [p for t, p in others if t in v.bass_tracks]
        if bass:
            floor = max(floor, max(bass) + 1)
        under_tune = v.role in UNDER_TUNE
        tune = [p for t, p in others if t in v.tune_tracks] + list(recent_tune) if under_tune else []
        tune = [p for p in tune if p > (lo + hi) / 2]
        if tune and min(tune) - TUNE_STEP - 1 >= floor:
            ceiling = min(ceiling, min(tune) - TUNE_STEP - 1)

    def free(p: int) -> bool:
        return floor <= p <= ceiling and p not in taken

    if free(pitch):
        return pitch
    for shift in (12, -12, 24, -24):
        if free(pitch + shift):
            return pitch + shift
    tones = set(chord_tones)
    near = sorted((p for p in range(floor, ceiling + 1) if p % 12 in tones and free(p)),
                  key=lambda p: (abs(p - pitch), p))
    return near[0] if near else None
