"""The band's voicing rules, applied to a part's pitch draw whatever model drew it.

A model trained on four-part chorales (or a user's SkyTNT export trained on piano music) has no idea
that this part is a bass or a trumpet: left alone it plays chords on a bass, sits the bass above the
piano and doubles other parts in unison. These rules are masks over the pitches the part may draw at
the slot where its note starts, built from what the shared context says sounds there, so they hold
with any model:

- a part never strikes more notes at one slot than its polyphony (the decoder closes the slot);
- a comping chord stays within the hand's span (the widest interval between its notes);
- no pitch another part sounds at that moment, unless the part may double (`doubling: true`);
- the bass stays below every other agent's sounding note; the other agents stay above the bass's.

When the rules leave nothing (a melody held exactly where the bass would go), the unison rule and
the register rules give way in that order: the note still sounds, in range, on the chord.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def pitch_keep(v: Voicing, track: int, pitches: np.ndarray, slot: int,
               sounding: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray | None:
    """Which of ``pitches`` (the part's range, ascending) the part may start at ``slot``; None when
    the rules take nothing away (the usual case: no allocation)."""
    tracks, sounds, starts = sounding
    if len(tracks) == 0:
        return None
    own = tracks == track
    others = ~own
    keep = np.ones(len(pitches), dtype=bool)
    chord = sounds[own & (starts == slot)]
    if v.span and len(chord):
        keep &= (pitches >= int(chord.max()) - v.span) & (pitches <= int(chord.min()) + v.span)
    register = np.ones(len(pitches), dtype=bool)
    if v.role == "bass":
        above = others & np.isin(tracks, list(v.agent_tracks))
        if above.any():
            register &= pitches < int(sounds[above].min())
    elif v.role in ("comp", "melody"):
        below = np.isin(tracks, list(v.bass_tracks)) & others
        if below.any():
            register &= pitches > int(sounds[below].max())
    unison = np.ones(len(pitches), dtype=bool)
    if not v.doubling and others.any():
        unison &= ~np.isin(pitches, sounds[others])
    for extra in (register & unison, register, unison):
        if (keep & extra).any():
            keep &= extra
            break
    if not keep.any():
        return None
    return None if keep.all() else keep
