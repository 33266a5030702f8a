"""A velocity for every note a part plays, as a player would give it.

The shipped model learnt from scores, which carry no dynamics: every note it draws has the same
velocity, and a band at one velocity has no accent, no phrase and no shape. So velocity is the
part's, not the model's: a level (the YAML's `dynamics`, live from OSC), metrical accents (in 4/4
beat 1 strongest, beat 3 next, 2 and 4 weaker, off-beats softer still; accents differ by about
5-15 velocity units), a phrase that swells toward its third bar and eases at its end, and a small
spread so no two notes are mechanically equal. Everything is a function of the beat and the seed,
so the same performance gets the same dynamics however fast the model ran.

`level` is where a follower of the player's own dynamics plugs in: it moves the centre, the shape
stays the part's.
"""

from __future__ import annotations

import hashlib
import math

from protocol.mix import dynamics_velocity as level_velocity

__all__ = ["UNDER_PLAYER", "PlayerDynamics", "level_velocity", "metric_position", "phrase_shape", "spread",
           "velocity"]


PHRASE_BARS = 4
# accent by metric position (velocity units above the level): downbeat, the bar's middle (beat 3 of
# 4/4), the other beats, eighth off-beats, anything finer
ACCENTS = {"bar": 14.0, "middle": 7.0, "beat": 0.0, "eighth": -10.0, "finer": -14.0}
# the bass and comping lean on the downbeat; a melody's accents are a little lighter (its line shapes it)
ROLE_ACCENT = {"bass": 1.0, "comp": 1.0, "melody": 0.9, "drums": 1.0}
# a horn shapes its phrase more than the rhythm section does: its background swells toward the
# phrase's peak and falls back at its end
ROLE_PHRASE = {"melody": 2.0}
SPREAD = 6.0  # +- velocity units of seeded spread


def metric_position(beat: float, beats_per_bar: int) -> str:
    pos = beat % beats_per_bar
    tol = 1 / 32
    if pos < tol or pos > beats_per_bar - tol:
        return "bar"
    if beats_per_bar % 2 == 0 and beats_per_bar > 2 and abs(pos - beats_per_bar / 2) < tol:
        return "middle"
    frac = pos % 1.0
    if frac < tol or frac > 1 - tol:
        return "beat"
    if abs(frac - 0.5) < tol:
        return "eighth"
    return "finer"


def phrase_shape(beat: float, beats_per_bar: int, phrase_bars: int = PHRASE_BARS) -> float:
    """Velocity units added by the phrase: a swell from -5 at its start to +6 past its middle, easing
    to -2 at its last beat."""
    length = beats_per_bar * phrase_bars
    x = (beat % length) / length  # 0..1 through the phrase
    peak = 0.65
    if x <= peak:
        return -5.0 + 11.0 * math.sin(0.5 * math.pi * x / peak)
    return 6.0 - 8.0 * (x - peak) / (1 - peak)


def spread(seed: int, beat: float, pitch: int) -> float:
    """A seeded, order-free spread in [-SPREAD, SPREAD]: the same note always gets the same one."""
    digest = hashlib.blake2b(f"{seed}:{round(beat * 64)}:{pitch}".encode(), digest_size=4).digest()
    return (int.from_bytes(digest, "little") / 2**32 * 2 - 1) * SPREAD


def velocity(beat: float, pitch: int, *, beats_per_bar: int, level: int, role: str = "comp",
             seed: int = 0) -> int:
    """The velocity of a note starting at ``beat`` in a part at ``level``."""
    accent = ACCENTS[metric_position(beat, beats_per_bar)] * ROLE_ACCENT.get(role, 1.0)
    phrase = phrase_shape(beat, beats_per_bar) * ROLE_PHRASE.get(role, 1.0)
    v = level + accent + phrase + spread(seed, beat, pitch)
    return max(1, min(127, round(v)))


# How far a part follows the player's level: 0.6 of the player's distance from mf. A band comes up
# with a player who digs in and drops with one who plays softly, but keeps its own balance.
FOLLOW_GAIN = 0.6
LAG_BEATS = 2  # the player's notes this close to a bar line shape the bar after it
FOLLOW_MIN_NOTES = 3  # fewer notes than this in the window say nothing about the player's level
# How far under the player's level a part's centre stays at most: the player leads and the band
# accompanies, so a part's accented notes (beat 1 is +14, a phrase's peak +6) come up to the player's
# notes, not over them. The drums' strokes run loud at mf (a rock kick 112-120, a backbeat 104), so
# their centre keeps furthest under: behind a flute at 92 the backbeat sits near 86 and the kick
# under 100; a horn part beside the tune keeps a little under it, the bass close under.
UNDER_PLAYER = {"comp": 14, "melody": 12, "bass": 8, "drums": 24}
_KEEP_NOTES = 256


class PlayerDynamics:
    """The player's level, heard from their note-ons, as the centre a part plays around.

    The level for a bar comes from the player's notes that started in the two bars' worth of beats
    ending two beats before its bar line (two bars, so a slow melody of half notes is heard too): a
    bar or so of lag, as a band follows. Every agent has heard those note-ons well before it commits
    the bar (a part commits a beat or so ahead, plus its turn), so the level is the same however
    fast it ran.
    """

    def __init__(self) -> None:
        self.onsets: dict[tuple[int, int], int] = {}  # (start in 1/64 beats, pitch) -> velocity

    def add(self, start_beat: float, pitch: int, velocity: int) -> None:
        """A player's note, at its note-on or (if that was not heard) at its note-off: once either way."""
        if velocity <= 0 or not math.isfinite(start_beat):
            return
        self.onsets[(round(start_beat * 64), pitch)] = velocity
        if len(self.onsets) > _KEEP_NOTES:
            for key in sorted(self.onsets)[: len(self.onsets) - _KEEP_NOTES]:
                del self.onsets[key]

    def level(self, beat: float, base: int, beats_per_bar: int, role: str | None = None) -> int:
        """The part's level for a note at ``beat``: ``base`` moved toward the player's level and, for a
        part of ``role``, kept ``UNDER_PLAYER[role]`` under it."""
        bar_line = math.floor(beat / beats_per_bar) * beats_per_bar
        lo, hi = round((bar_line - 2 * beats_per_bar - LAG_BEATS) * 64), round((bar_line - LAG_BEATS) * 64)
        heard = [v for (t, _), v in self.onsets.items() if lo <= t < hi]
        if len(heard) < FOLLOW_MIN_NOTES:
            return base
        player = sum(heard) / len(heard)
        level = base + FOLLOW_GAIN * (player - level_velocity("mf"))
        if role in UNDER_PLAYER:
            level = min(level, player - UNDER_PLAYER[role])
        return max(1, min(127, round(level)))
