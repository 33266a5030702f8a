"""Following the player's tempo: the band's beat goes where the player's beat goes.

A player who pushes or drags does not play a click: their onsets fall on the beat and its halves
(or near them) at a pulse of their own. The follower fits that pulse, `time = origin + period * beat`,
to the player's recent onsets that it can place on an eighth-note grid, and at each beat the conductor
asks it for the tempo of the next beat. The answer is not the player's tempo alone: it also closes the
gap between the conductor's beat and the player's over a few beats (a phase-locked loop, as an
accompanist catches up with a soloist by a slightly quicker beat, not a jump).

A player who plays *with* the band sits a steady few milliseconds behind or ahead of its beat (their
synth's buffer, the way they feel the beat). Closing that gap would only make the player move again
and the two would drift away together (5 ms behind, and the tempo sags from 120 to 96 in a couple of
minutes), so the follower takes the player's steady offset from the first bars it hears them, follows
it only slowly after that, and closes only what changes. Slowly, because a band that trails an
accelerando also sits a steady gap behind the player: learnt as a habit, that lag would stay.

It only follows what it can believe: with too few onsets in the window, or onsets that no steady
pulse explains (rubato, a fill, a pause), it is *unlocked* and the tempo stays where it is. Each
change is at most `max_step` of the tempo, so one misplaced onset moves the band a little, not a lot.
Everything here is pure arithmetic on times and beats: the conductor feeds it and announces its
answers on the timeline, as it announces any tempo change, for a coming beat.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from protocol.rules import RULES
from protocol.timeline import Timeline

__all__ = ["Pulse", "TempoFollower"]

MIN_TEMPO, MAX_TEMPO = RULES["tempo"].bounds
HABIT_S = 0.035  # the largest gap taken for a habit while the player is first heard
SETTLE_BEATS = 16  # the player's first beats, whose mean gap (each at most HABIT_S) is their habit
OFFSET_STEP_S = 0.00025  # the most the learnt offset moves in a beat after that: a habit changes slowly


@dataclass(frozen=True, slots=True)
class Pulse:
    """The player's beat near ``anchor`` (their newest placed onset's beat): beat ``anchor + x``
    falls at ``at + period * x`` seconds, ``period`` being their period at the anchor."""

    anchor: float
    at: float
    period: float
    spread_s: float  # weighted RMS distance of the fitted onsets from the curve
    onsets: int

    @property
    def tempo(self) -> float:
        return 60.0 / self.period

    def time_of(self, beat: float) -> float:
        return self.at + self.period * (beat - self.anchor)

    def beat_of(self, t: float) -> float:
        return self.anchor + (t - self.at) / self.period


class TempoFollower:
    """Fits the player's pulse from their onsets and proposes the tempo of each coming beat."""

    def __init__(
        self,
        *,
        grid: float = 0.5,
        window_beats: float = 12.0,
        catch_up_beats: float = 1.5,
        max_step: float = 0.03,
        min_onsets: int = 6,
        max_spread_s: float = 0.035,
        memory_beats: float = 3.0,
        offset_beats: float = 64.0,
    ) -> None:
        """``grid``: the subdivision an onset is placed on (0.5: eighths). ``window_beats``: how far
        back the pulse is fitted: longer is steadier, shorter follows an accelerando more closely.
        ``catch_up_beats``: over how many beats a gap between the two beats is closed."""
        self.grid = grid
        self.window_beats = window_beats
        self.catch_up_beats = catch_up_beats
        self.max_step = max_step
        self.min_onsets = min_onsets
        self.max_spread_s = max_spread_s
        self.memory_beats = memory_beats
        self.offset_beats = offset_beats
        self.offset = 0.0  # seconds the player sits behind (+) the band's beat, steadily
        self.settling = 0  # the gaps averaged into the offset so far, up to SETTLE_BEATS
        self.placed: deque[tuple[float, float]] = deque()  # (seconds, grid beat), oldest first
        self.unplaced: deque[float] = deque()  # beats (on the placing pulse) of onsets off the grid
        self.pulse: Pulse | None = None
        self.trend: deque[tuple[float, float]] = deque()  # (beat, period of the plain line) of recent fits
        self.drift = 0.0  # how the player's period moves, seconds a beat (< 0: an accelerando); 0 held
        self.ignored = 0  # onsets too far from any grid point to place

    def onset(self, t: float, tl: Timeline) -> None:
        """A player's note-on at time ``t``: placed on the grid of the player's own pulse where one
        is known, else of the conductor's timeline (which the player hears and starts with)."""
        beat = self.pulse.beat_of(t) if self.pulse is not None else tl.beat_at(t)
        if not math.isfinite(beat):
            return
        nearest = round(beat / self.grid) * self.grid
        if abs(beat - nearest) > 0.25 * self.grid:
            # between grid points: a sixteenth, a swung eighth, a flam; no evidence of the pulse
            self.ignored += 1
            if not self.unplaced or beat - self.unplaced[-1] > 0.1:  # a chord counts once
                self.unplaced.append(beat)
            return
        if self.placed and nearest <= self.placed[-1][1]:
            return  # a chord's other notes, or a re-placed onset: one onset per grid point
        self.placed.append((t, nearest))

    @property
    def locked(self) -> bool:
        return self.pulse is not None

    def decide(self, beat: int, tl: Timeline, at: float | None = None) -> float | None:
        """The tempo from beat ``at`` (default ``beat + 1``) on, or None to keep the tempo (unlocked,
        or too small a change to announce). Called at beat ``beat``'s onset on the conductor's
        timeline."""
        at = beat + 1.0 if at is None else at
        while self.placed and self.placed[0][1] < beat - self.window_beats:
            self.placed.popleft()
        while self.unplaced and self.unplaced[0] < beat - self.window_beats:
            self.unplaced.popleft()
        self.pulse = self._fit()
        if self.pulse is None:
            return None
        self._learn_offset(self.pulse.time_of(float(beat)) - tl.time_at(float(beat)))
        now_tempo = tl.tempo_at_beat(at)
        next_time = tl.time_at(at)  # already fixed by the tempo before it
        target = self.pulse.time_of(at + self.catch_up_beats) - self.offset
        span = target - next_time
        if span <= 0:
            return None
        tempo = 60.0 * self.catch_up_beats / span
        tempo = min(max(tempo, now_tempo * (1 - self.max_step)), now_tempo * (1 + self.max_step))
        tempo = min(max(tempo, MIN_TEMPO), MAX_TEMPO)
        if abs(tempo - now_tempo) < 0.05:
            return None
        return tempo

    def _learn_offset(self, gap: float) -> None:
        """Where the player sits against the band's beat: the mean over the first bars they are heard,
        then a slow follower of it while their tempo holds.

        A gap the band's own tempo changes cannot close (a player who plays with the band takes the
        change with them) is a habit; a lag behind an accelerando is not. Learnt throughout at 1 ms
        a beat, a 16-bar accelerando's lag became the habit and the band sat 20-30 ms behind to the
        end of it. The first bars are learnt whatever the tempo does: a player with the band whose
        habit is not yet known is chased, their tempo moves with the band's, and a band that waited
        for the tempo to hold ran off to its bounds. Taken from one beat instead of the first bars,
        the habit is misread by the player's scatter, and the band chases the error for minutes."""
        if self.settling < SETTLE_BEATS:
            # a larger gap is partly a tempo the band has yet to catch; leaving it out instead left
            # a player 30 ms late with the scatter's early half for a habit, and the band chased them
            self.settling += 1
            self.offset += (max(-HABIT_S, min(HABIT_S, gap)) - self.offset) / self.settling
            return
        if self.drift:
            return  # a gap while the tempo moves is the band's lag, or the player's lead, not a habit
        step = (gap - self.offset) / self.offset_beats
        self.offset += max(-OFFSET_STEP_S, min(OFFSET_STEP_S, step))

    def _fit(self) -> Pulse | None:
        """The player's pulse at their newest onset; None where the onsets do not make a pulse.

        A weighted line through the onsets of a changing tempo has the period of some beat inside
        the window, a few beats ago (the newest onsets weigh most, so not even its weighted middle),
        and trails an accelerando. The trend of recent fits (how their period moved from beat to
        beat) says how bent the pulse is; with that bend taken out of the onsets, the line's period
        is the player's period at the newest onset. A quadratic fit to the onsets themselves would
        do the same on paper but turns a human's 10 ms scatter into wild bends; the trend of many
        fits is steady.

        The bend is not carried past the newest onset: a band that extrapolated the trend would
        keep it up through a player who plays with the band, whose trend is the band's own (the two
        ran off to the tempo's bounds). Up to the newest onset, the period is what the player
        played, so a band that only matches it holds steady with such a player."""
        n = len(self.placed)
        if n < self.min_onsets or len(self.unplaced) > 2 * n:
            return None  # too few onsets, or mostly ones no grid point explains: rubato, not a pulse
        anchor = self.placed[-1][1]
        xs = [g - anchor for _, g in self.placed]  # beats before the newest onset (<= 0)
        if -xs[0] < 3.0:
            return None
        ts = [t for t, _ in self.placed]
        # Recent onsets weigh more: an accelerando's pulse is the one at the window's end.
        ws = [math.exp(x / self.memory_beats) for x in xs]
        plain = _bent_line(xs, ts, ws, 0.0)
        if plain is None:
            return None
        period, spread = plain[1], plain[2]
        if spread > self.max_spread_s:
            self.trend.clear()
            return None
        # the trend is of the plain lines, each the same estimate, so their drift is the pulse's
        self.trend.append((anchor, period))
        while self.trend and self.trend[0][0] < anchor - self.window_beats:
            self.trend.popleft()
        drift = self.drift = 0.0
        if len(self.trend) >= 4 and self.trend[-1][0] - self.trend[0][0] >= 3.0:
            line = _weighted_line([b for b, _ in self.trend], [p for _, p in self.trend],
                                  [1.0] * len(self.trend))
            if line is not None and abs(line[1]) * self.window_beats > 0.01 * period:
                drift = self.drift = line[1]  # worth a 1 % tempo change over the window: not scatter
        bent = _bent_line(xs, ts, ws, drift) if drift else plain
        if bent is None:
            return None
        return Pulse(anchor, bent[0], bent[1], bent[2], n)


def _bent_line(xs: list[float], ts: list[float], ws: list[float],
               drift: float) -> tuple[float, float, float] | None:
    """(time, period, spread) at x = 0 of the weighted line through the onsets with a pulse drifting
    by ``drift`` seconds of period a beat taken out of them; None for a period out of bounds."""
    ys = [t - drift / 2.0 * x * x for x, t in zip(xs, ts, strict=True)]
    fit = _weighted_line(xs, ys, ws)
    if fit is None:
        return None
    at, period = fit
    if not 60.0 / MAX_TEMPO <= period <= 60.0 / MIN_TEMPO:
        return None
    residuals = (y - at - period * x for x, y in zip(xs, ys, strict=True))
    spread = math.sqrt(sum(wi * r * r for wi, r in zip(ws, residuals, strict=True)) / sum(ws))
    return at, period, spread


def _weighted_line(xs: list[float], ys: list[float], ws: list[float]) -> tuple[float, float] | None:
    """(intercept, slope) of the weighted least-squares line, or None when the xs do not spread."""
    w = sum(ws)
    mx = sum(wi * x for wi, x in zip(ws, xs, strict=True)) / w
    my = sum(wi * y for wi, y in zip(ws, ys, strict=True)) / w
    sxx = sum(wi * (x - mx) ** 2 for wi, x in zip(ws, xs, strict=True))
    if sxx <= 1e-12:
        return None
    slope = sum(wi * (x - mx) * (y - my) for wi, x, y in zip(ws, xs, ys, strict=True)) / sxx
    return my - slope * mx, slope
