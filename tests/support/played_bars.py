"""Bars a player might play, as the conductor hears them: the role tests' shared material.

Each builder gives one bar of a kind (a walking bass, comping, a tune, a drum pattern) at a given bar
number, so a test reads as a sequence of bars rather than a list of note tuples.
"""

from __future__ import annotations

from conductor.bar_parts import PlayedNote


def notes(*items: tuple[float, float, int], channel: int = 0) -> list[PlayedNote]:
    return [PlayedNote(s, s + d, p, 80, channel) for s, d, p in items]


def bass_bar(bar: int = 0, low: int = 36) -> list[PlayedNote]:
    """A walking bass bar: four quarters, monophonic, low."""
    return notes(*((4 * bar + i, 0.9, low + step) for i, step in enumerate((0, 4, 7, 5))))


def chord_bar(bar: int = 0, voicing: tuple[int, ...] = (60, 64, 67)) -> list[PlayedNote]:
    """Comping: a chord on beat 1 and on the and of 2."""
    return notes(*((4 * bar + t, d, p) for t, d in ((0, 1.5), (1.5, 2.0)) for p in voicing))


def melody_bar(bar: int = 0, base: int = 72) -> list[PlayedNote]:
    return notes(*((4 * bar + t, 0.45, base + d) for t, d in ((0, 0), (0.5, 2), (1, 4), (2, 5), (3, 4))))


def drum_bar(bar: int = 0) -> list[PlayedNote]:
    hits = [(4 * bar + b, 0.25, 36 if b % 2 == 0 else 38) for b in range(4)]
    hats = [(4 * bar + b / 2, 0.2, 42) for b in range(8)]
    return notes(*hits, *hats, channel=9)
