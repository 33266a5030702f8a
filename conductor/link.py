"""Ableton Link in the conductor: follow a Link session (Live leads) or lead it.

WHY a bridge and not Link as the clock: agents keep reading the conductor's Timeline, which announces
every tempo change at a future beat so all of them switch at the same beat (Link applies a change on
receipt). The bridge samples the Link session a few dozen times a second and turns what it sees into
ordinary timeline changes:

- `follow`: the conductor takes the session's tempo and phase at the quantum. A difference is never
  applied at once; it is announced for the next whole beat, and a phase error is removed by running
  a little faster or slower (at most `MAX_SLEW` beats per beat) until the beats line up again.
- `lead`: the conductor's tempo is pushed to the session when it takes effect here, and the
  session's phase is forced to the conductor's beat while the transport plays.

The Link clock is not `time.monotonic` (Linux Link reads CLOCK_MONOTONIC_RAW), so nothing here uses
Link times: each sample reads the monotonic clock right around Link's "beat now".

The package (`aalink`, an optional extra) is imported only when the YAML enables Link, and Link is
only enabled in `open()`, because enabling it announces this process by multicast on every interface.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from protocol.ensemble import LinkConfig
from protocol.timeline import MAX_TEMPO, MIN_TEMPO, Timeline

log = logging.getLogger("barcelona.link")

POLL_S = 0.02
MIN_LEAD_S = 0.1  # a change is announced at least this far ahead, so every agent hears it in time
PHASE_TOLERANCE_S = 0.001
TEMPO_EPS = 1e-3
MAX_SLEW = 0.1  # beats of phase caught up per beat: a tempo at most ~10 % off while catching up


class LinkUnavailableError(ValueError):
    """The YAML enables Link but the `link` extra is not installed; str() is the one-line error."""


def link_missing_reason() -> str | None:
    """Why Link cannot run here (the package is absent), or None."""
    try:
        import aalink  # noqa: F401
    except ImportError:
        return "conductor.link: Ableton Link needs the `link` extra (pip install 'barcelona[link]')"
    return None


@dataclass(frozen=True, slots=True)
class LinkSample:
    """The session as one read: Link's beat (at the quantum) at monotonic time t, its tempo, peers."""

    t: float
    beat: float
    tempo: float
    peers: int

    def beat_at(self, t: float) -> float:
        return self.beat + (t - self.t) * self.tempo / 60.0


def wrap(delta: float, quantum: float) -> float:
    """A beat difference folded into [-quantum/2, quantum/2): Link shares phase, not beat numbers."""
    return (delta + quantum / 2.0) % quantum - quantum / 2.0


def _clamp_tempo(tempo: float) -> float:
    return min(MAX_TEMPO, max(MIN_TEMPO, tempo))


def follow_step(tl: Timeline, s: LinkSample, now: float, quantum: float) -> Timeline | None:
    """The timeline that moves the conductor toward the session, or None when it already matches.

    Pure (clock-injected) so it is tested without a network. While a change is pending nothing new is
    planned: the previous plan settles first, then the next beat gets the next correction.
    """
    if not tl.playing:
        if abs(tl.tempo_bpm - s.tempo) < TEMPO_EPS:
            return None
        return tl.with_tempo(_clamp_tempo(s.tempo), 0.0, now)
    if tl.next_tempo_bpm > 0.0 and tl.beat_at(now) < tl.change_beat:
        return None
    tl = tl.settled(now)
    beat_now = tl.beat_at(now)
    tempo_here = tl.tempo_at_beat(beat_now)
    b1 = math.floor(beat_now + MIN_LEAD_S * tempo_here / 60.0) + 1.0
    error = wrap(s.beat_at(tl.time_at(b1)) - b1, quantum)  # > 0: the conductor is behind at b1
    if abs(error) * 60.0 / s.tempo < PHASE_TOLERANCE_S:
        target = s.tempo
    else:
        span = max(1.0, math.ceil(abs(error) / MAX_SLEW))
        target = s.tempo * span / (span - error)
    target = _clamp_tempo(target)
    if abs(target - tempo_here) < TEMPO_EPS:
        return None
    return tl.with_tempo(target, b1, now)


class LinkBridge:
    """One Link peer inside the conductor; `serve` keeps the timeline and the session together.

    A bridge for a YAML without Link is inert (every method a no-op), so the conductor calls it
    unconditionally and works unchanged without the package.
    """

    def __init__(self, cfg: LinkConfig) -> None:
        if cfg.enabled:
            reason = link_missing_reason()
            if reason is not None:
                raise LinkUnavailableError(reason)
        self.cfg = cfg
        self.enabled = cfg.enabled
        self.mode = cfg.mode
        self.quantum = float(cfg.quantum)
        self.link: Any = None
        self.enabled_at = 0.0
        self.joined_after_s: float | None = None
        self.corrections = 0
        self.forced = 0
        self.last_error_ms = 0.0
        self.last: LinkSample | None = None

    # -- the session ------------------------------------------------------------------------------
    def open(self, tempo: float) -> None:
        """Join the network (once): from here on this process announces itself by multicast."""
        if self.link is not None:
            return
        from aalink import Link

        try:
            self.link = Link(float(tempo))
        except TypeError:  # older aalink wants the event loop
            self.link = Link(float(tempo), asyncio.get_running_loop())
        self.link.quantum = self.quantum
        self.enabled_at = time.monotonic()
        self.link.enabled = True

    def close(self) -> None:
        if self.link is not None:
            self.link.enabled = False
            self.link = None

    def sample(self) -> LinkSample:
        t0 = time.monotonic()
        beat = self.link.beat
        t1 = time.monotonic()
        peers = int(self.link.num_peers)
        if peers and self.joined_after_s is None:
            self.joined_after_s = t1 - self.enabled_at
            log.info("joined a Link session of %d peer(s) after %.3f s", peers, self.joined_after_s)
        self.last = LinkSample((t0 + t1) / 2.0, float(beat), float(self.link.tempo), peers)
        return self.last

    async def wait_joined(self, tempo: float) -> bool:
        """Follow: give the session `join_wait_s` from enabling to be found, so the conductor starts
        in phase with Live instead of catching up; True when a session was found."""
        if not self.enabled or self.mode != "follow":
            return False
        self.open(tempo)
        deadline = self.enabled_at + self.cfg.join_wait_s
        while self.link is not None and self.sample().peers == 0:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return self.link is not None

    def takes_control(self, ctl: Any) -> bool:
        """Follow: a tempo control goes to the session (the conductor then follows it as it follows
        Live); True when the control was taken and the conductor must not apply it itself."""
        if not (self.enabled and self.mode == "follow" and ctl.param == "tempo" and not ctl.target):
            return False
        if self.link is not None:
            self.link.tempo = _clamp_tempo(float(ctl.value))
        return True

    # -- the timeline ---------------------------------------------------------------------------------
    def aligned(self, tl: Timeline) -> Timeline:
        """Follow: move a just-started timeline's beat 0 onto the session's next bar line (quantum),
        at the session's tempo, no earlier than it was due."""
        if not self.enabled or self.mode != "follow" or self.link is None:
            return tl
        s = self.sample()
        first = math.ceil(s.beat_at(tl.time_origin) / self.quantum) * self.quantum
        start_t = s.t + (first - s.beat) * 60.0 / s.tempo
        return replace(tl, tempo_bpm=_clamp_tempo(s.tempo), time_origin=start_t, beat_origin=0.0)

    async def serve(self, state: Any, recorder: Any, publish: Callable[[Any], Awaitable[None]]) -> None:
        """Join the session and keep `state.timeline` with it until cancelled, then leave.

        A follower's corrections are recorded and broadcast like a tempo control's.
        """
        if not self.enabled:
            return
        self.open(state.timeline.tempo_bpm)
        try:
            while True:
                tl = state.timeline
                now = time.monotonic()
                s = self.sample()
                if tl.playing:
                    error = wrap(s.beat - tl.beat_at(s.t), self.quantum)
                    self.last_error_ms = error * 60.0 / s.tempo * 1000.0
                if self.mode == "follow":
                    new = follow_step(tl, s, now, self.quantum)
                    if new is not None:
                        self.corrections += 1
                        state.timeline = new
                        if new.next_tempo_bpm > 0:
                            recorder.tempo(new.change_beat, new.next_tempo_bpm)
                        await publish(new)
                else:
                    self._lead(tl, s)
                await asyncio.sleep(POLL_S)
        finally:
            self.close()

    def _lead(self, tl: Timeline, s: LinkSample) -> None:
        now = time.monotonic()
        tempo = tl.tempo_at_beat(tl.beat_at(now))
        if abs(tempo - s.tempo) >= TEMPO_EPS:
            self.link.tempo = tempo
        if tl.playing and abs(self.last_error_ms) > PHASE_TOLERANCE_S * 1000.0:
            self.forced += 1
            self.link.force_beat(tl.beat_at(time.monotonic()))

    def stats(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        s = self.last
        return {
            "mode": self.mode,
            "peers": s.peers if s else 0,
            "tempo": s.tempo if s else 0.0,
            "phase_error_ms": round(self.last_error_ms, 4),
            "joined_after_s": self.joined_after_s,
            "corrections": self.corrections,
            "forced": self.forced,
        }
