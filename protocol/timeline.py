"""The shared timeline: a small idempotent value that every process turns into beats.

Like Ableton Link's timeline, the state is re-sent often and on every change, so a lost packet costs
nothing. A tempo change is announced ahead and takes effect at a stated future beat: every agent
switches at the same beat without a transient phase error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from protocol.fields import check_bool, check_float, check_int
from protocol.rules import RULES

MIN_TEMPO, MAX_TEMPO = RULES["tempo"].bounds


@dataclass(frozen=True, slots=True)
class Timeline:
    """beat(t) = beat_origin + (t - time_origin) * tempo / 60, on the conductor's monotonic clock.

    `stop_beat` > 0 announces the final downbeat (a `--bars` run, a `/stop`): agents plan nothing
    else that starts there or later and cut what would ring into it; there every part holds the
    final chord for `timing.ending_beats` (protocol.form), and then the transport stops.
    `next_tempo_bpm` > 0 announces a change at `change_beat`; before that beat the first segment
    holds, after it the second. `epoch` rises on every change so stale copies are ignored.
    """

    epoch: int = 0
    tempo_bpm: float = 120.0
    beat_origin: float = 0.0
    time_origin: float = 0.0
    beats_per_bar: int = 4
    playing: bool = False
    next_tempo_bpm: float = 0.0
    change_beat: float = 0.0
    stop_beat: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "epoch", check_int("epoch", self.epoch, 0))
        object.__setattr__(self, "tempo_bpm", check_float("tempo_bpm", self.tempo_bpm, MIN_TEMPO, MAX_TEMPO))
        object.__setattr__(self, "beat_origin", check_float("beat_origin", self.beat_origin, -1e9, 1e9))
        object.__setattr__(self, "time_origin", check_float("time_origin", self.time_origin, -1e12, 1e12))
        object.__setattr__(self, "beats_per_bar", RULES["meter"].check(self.beats_per_bar, "beats_per_bar"))
        object.__setattr__(self, "playing", check_bool("playing", self.playing))
        nxt = check_float("next_tempo_bpm", self.next_tempo_bpm, 0.0, MAX_TEMPO)
        if 0.0 < nxt < MIN_TEMPO:
            raise ValueError(f"next_tempo_bpm: {nxt} is below {MIN_TEMPO}")
        object.__setattr__(self, "next_tempo_bpm", nxt)
        object.__setattr__(self, "change_beat", check_float("change_beat", self.change_beat, -1e9, 1e9))
        object.__setattr__(self, "stop_beat", check_float("stop_beat", self.stop_beat, 0.0, 1e9))

    # -- maths -----------------------------------------------------------------------------------
    def _change_time(self) -> float:
        return self.time_origin + (self.change_beat - self.beat_origin) * 60.0 / self.tempo_bpm

    def beat_at(self, t: float) -> float:
        """The beat at conductor time t; frozen at beat_origin while stopped."""
        if not self.playing:
            return self.beat_origin
        beat = self.beat_origin + (t - self.time_origin) * self.tempo_bpm / 60.0
        if self.next_tempo_bpm > 0.0 and beat > self.change_beat:
            beat = self.change_beat + (t - self._change_time()) * self.next_tempo_bpm / 60.0
        return beat

    def time_at(self, beat: float) -> float:
        """The conductor time of a beat (inverse of beat_at while playing)."""
        if self.next_tempo_bpm > 0.0 and beat > self.change_beat:
            return self._change_time() + (beat - self.change_beat) * 60.0 / self.next_tempo_bpm
        return self.time_origin + (beat - self.beat_origin) * 60.0 / self.tempo_bpm

    def tempo_at_beat(self, beat: float) -> float:
        if self.next_tempo_bpm > 0.0 and beat > self.change_beat:
            return self.next_tempo_bpm
        return self.tempo_bpm

    def bar_at_beat(self, beat: float) -> int:
        return math.floor(beat / self.beats_per_bar)

    # -- transitions (each returns a new timeline with a higher epoch) -----------------------------
    def settled(self, now: float) -> Timeline:
        """Fold a pending tempo change that has already happened into the origin."""
        if self.next_tempo_bpm > 0.0 and self.playing and self.beat_at(now) >= self.change_beat:
            return replace(
                self,
                tempo_bpm=self.next_tempo_bpm,
                beat_origin=self.change_beat,
                time_origin=self._change_time(),
                next_tempo_bpm=0.0,
                change_beat=0.0,
            )
        return self

    def with_tempo(self, tempo_bpm: float, at_beat: float, now: float) -> Timeline:
        """Announce a tempo change at a future beat; stopped timelines change at once."""
        tempo_bpm = check_float("tempo_bpm", tempo_bpm, MIN_TEMPO, MAX_TEMPO)
        base = self.settled(now)
        if not base.playing:
            return replace(
                base, epoch=base.epoch + 1, tempo_bpm=tempo_bpm, next_tempo_bpm=0.0, change_beat=0.0
            )
        # Re-anchor at now so the pending segment starts from an exact origin.
        beat_now = base.beat_at(now)
        at_beat = max(at_beat, beat_now)
        return replace(
            base,
            epoch=base.epoch + 1,
            beat_origin=beat_now,
            time_origin=now,
            next_tempo_bpm=tempo_bpm,
            change_beat=at_beat,
        )

    def started(self, now: float, at_beat: float | None = None, delay_s: float = 0.0) -> Timeline:
        """Start playing: beat `at_beat` (default: where it stopped) falls at now + delay_s."""
        beat = self.beat_origin if at_beat is None else at_beat
        return replace(
            self,
            epoch=self.epoch + 1,
            beat_origin=beat,
            time_origin=now + delay_s,
            playing=True,
            next_tempo_bpm=0.0,
            change_beat=0.0,
            stop_beat=0.0,
        )

    def stopped(self, now: float) -> Timeline:
        base = self.settled(now)
        return replace(
            base,
            epoch=base.epoch + 1,
            beat_origin=base.beat_at(now),
            time_origin=now,
            playing=False,
            next_tempo_bpm=0.0,
            change_beat=0.0,
            stop_beat=0.0,
        )


@dataclass(frozen=True, slots=True)
class LocalTimeMap:
    """Beats to this process's monotonic seconds: the conductor timeline plus a clock offset.

    offset_s is conductor_clock - local_clock. The scheduler holds one of these and is handed a new
    one whenever the timeline or the offset estimate changes.
    """

    timeline: Timeline
    offset_s: float = 0.0

    def time_at(self, beat: float) -> float | None:
        if not self.timeline.playing:
            return None
        return self.timeline.time_at(beat) - self.offset_s

    def beat_at(self, local_t: float) -> float:
        return self.timeline.beat_at(local_t + self.offset_s)
