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
minutes), so the follower learns the player's steady offset slowly and closes only what changes.

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
OFFSET_STEP_S = 0.001  # the most the learnt offset moves in a beat: a habit changes slowly
HABIT_S = 0.035  # the largest gap taken for a habit when the player is first heard


@dataclass(frozen=True, slots=True)
class Pulse:
    """The player's beat near ``anchor`` (their newest placed onset's beat): beat ``anchor + x``
    falls at ``at + period * x + bend * x**2`` seconds; ``bend`` < 0 is an accelerando."""

    anchor: float
    at: float
    period: float
    bend: float
    spread_s: float  # weighted RMS distance of the fitted onsets from the curve
    onsets: int

    @property
    def tempo(self) -> float:
        return 60.0 / self.period

    def time_of(self, beat: float) -> float:
        x = beat - self.anchor
        return self.at + self.period * x + self.bend * x * x

    def beat_of(self, t: float) -> float:
        """Near the anchor, where the bend is small against the period: one Newton step on the line."""
        x = (t - self.at) / self.period
        slope = self.period + 2 * self.bend * x
        if slope > 0:
            x -= (self.time_of(self.anchor + x) - t) / slope
        return self.anchor + x


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
        offset_beats: float = 16.0,
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
        self.offset: float | None = None  # seconds the player sits behind (+) the band's beat, steadily
        self.placed: deque[tuple[float, float]] = deque()  # (seconds, grid beat), oldest first
        self.unplaced: deque[float] = deque()  # beats (on the placing pulse) of onsets off the grid
        self.pulse: Pulse | None = None
        self.trend: deque[tuple[float, float]] = deque()  # (beat, fitted period) of recent fits
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
        gap = self.pulse.time_of(float(beat)) - tl.time_at(float(beat))
        if self.offset is None:
            # where the player sits when first heard, if it is where a habit or a synth's buffer puts
            # a player (tens of ms); a larger gap is a tempo the band has yet to catch
            self.offset = gap if abs(gap) <= HABIT_S else 0.0
        else:
            step = (gap - self.offset) / self.offset_beats
            self.offset += max(-OFFSET_STEP_S, min(OFFSET_STEP_S, step))
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

    def _fit(self) -> Pulse | None:
        """A weighted straight line through the window's onsets, bent by the tempo's trend; None
        where the onsets do not make a pulse.

        The line alone trails an accelerando by a steady 15-25 ms: its slope is the period at the
        weighted middle of the window, a few beats ago. The trend (how the fitted period moved over
        the last beats) moves it to the newest onset and bends the prediction. A quadratic fit to the
        onsets themselves would do the same on paper but turns a human's 10 ms scatter into wild
        bends; the trend of many fits is steady."""
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
        fit = _weighted_line(xs, ts, ws)
        if fit is None:
            return None
        at, period = fit
        if not 60.0 / MAX_TEMPO <= period <= 60.0 / MIN_TEMPO:
            return None
        w = sum(ws)
        residuals = (t - at - period * x for x, t in zip(xs, ts, strict=True))
        spread = math.sqrt(sum(wi * r * r for wi, r in zip(ws, residuals, strict=True)) / w)
        if spread > self.max_spread_s:
            self.trend.clear()
            return None
        mean_x = sum(wi * x for wi, x in zip(ws, xs, strict=True)) / w
        self.trend.append((anchor + mean_x, period))
        while self.trend and self.trend[0][0] < anchor - self.window_beats:
            self.trend.popleft()
        drift = 0.0  # d(period)/d(beat)
        if len(self.trend) >= 4 and self.trend[-1][0] - self.trend[0][0] >= 3.0:
            line = _weighted_line([b for b, _ in self.trend], [p for _, p in self.trend],
                                  [1.0] * len(self.trend))
            if line is not None and abs(line[1]) * self.window_beats > 0.01 * period:
                drift = line[1]  # a trend worth a 1 % tempo change over the window: not scatter
        period_now = period - drift * mean_x
        if not 60.0 / MAX_TEMPO <= period_now <= 60.0 / MIN_TEMPO:
            return None
        return Pulse(anchor, at, period_now, drift / 2.0, spread, n)


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
