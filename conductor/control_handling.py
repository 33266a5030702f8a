"""How the conductor takes a control, a mixin of `conductor.conductor.Conductor`: from the control
surface (its sender already allowed, then parsed, and counted by reason when refused) or from the
bus, applied to the conductor's state, published, recorded and saved."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conductor.control import HUMAN_NOTE, ControlError, parse_control, strip_prefix
from conductor.substitution import SubstitutionHearing
from conductor.tempo_follow import TempoFollower
from protocol.harmony import ChordError
from protocol.messages import AgentParams, Control, PlanState
from protocol.mix import CC_PAN, CC_VOLUME, pan_cc
from protocol.timeline import Timeline

if TYPE_CHECKING:
    from conductor.control import Displays
    from conductor.link import LinkBridge
    from conductor.recorder import Recorder
    from conductor.state import ConductorState
    from protocol.ensemble import Ensemble

log = logging.getLogger("barcelona.conductor")


class ControlHandling:
    """The controls of `conductor.conductor.Conductor`, a mixin of it: the state named below is the
    conductor's."""

    ens: Ensemble
    clock: Callable[[], float]
    bars: int | None
    state: ConductorState
    substitutions: SubstitutionHearing | None
    tempo_follower: TempoFollower
    following_tempo: bool
    recorder: Recorder
    link: LinkBridge
    control_invalid: dict[str, int]
    displays: Displays
    surface: Any

    if TYPE_CHECKING:
        async def _publish(self, msg: Any) -> None: ...
        def save_state(self) -> None: ...
        def _end_run(self, by: str) -> None: ...
        async def _human_osc(self, args: list[Any]) -> None: ...

    async def _surface_loop(self) -> None:
        async for packet in self.surface.incoming():  # strangers never get here: the transport refused them
            self.displays.add((packet.sender[0], self.ens.control.reply_port or packet.sender[1]))
            try:
                await self._on_surface(packet.address, list(packet.args), packet.sender)
            except (ControlError, ChordError, ValueError, TypeError) as exc:
                reason = exc.reason if isinstance(exc, ControlError) else f"rejected.{type(exc).__name__}"
                if reason not in self.control_invalid:  # log a reason once; the count keeps the rest
                    log.warning("control %s refused: %s", packet.address[:120], str(exc)[:200])
                self._count(reason)

    def _count(self, reason: str) -> None:
        self.control_invalid[reason] = self.control_invalid.get(reason, 0) + 1

    async def _on_surface(self, address: str, args: list[Any], sender: tuple[str, int] = ("", 0)) -> None:
        if strip_prefix(self.ens.name, address) == HUMAN_NOTE:
            await self._human_osc(args)
            return
        ctl = parse_control(self.ens.name, address, args)
        await self.apply(ctl, by=f"the control surface ({sender[0]}:{sender[1]})")

    async def apply(self, ctl: Control, by: str = "") -> None:
        """Apply a checked control; `by` names its sender for the log and the report."""
        if self.link.takes_control(ctl):  # following Link: a tempo change goes to the session
            return
        if ctl.param == "follow_tempo" and not ctl.target:
            self.state.follow_tempo = bool(ctl.value)
            self.following_tempo = self.state.follow_tempo and not self.ens.conductor.link.enabled
            self.save_state()  # a restarted conductor keeps following (or not) as it was told
            return
        if ctl.param == "substitutions" and not ctl.target:
            on = bool(ctl.value)
            self.state.substitutions = on
            self.substitutions = SubstitutionHearing(beats_per_bar=self.ens.meter) if on else None
            for msg in [] if on else self.state.unsubstitute():
                self.recorder.plan(self.state.timeline.beat_at(self.clock()), msg)
                await self._publish(msg)
            self.save_state()  # a restarted conductor keeps hearing them (or not) as it was told
            return
        now = self.clock()
        was_playing = self.state.timeline.playing
        changed = self.state.apply(ctl, now)
        if self.state.timeline.playing != was_playing:
            self.tempo_follower = TempoFollower()  # a new start: the old pulse says nothing of it
        for msg in changed:
            if isinstance(msg, Timeline) and msg.next_tempo_bpm > 0:
                self.recorder.tempo(msg.change_beat, msg.next_tempo_bpm)
            if isinstance(msg, AgentParams) and ctl.param in ("volume", "pan"):
                self._record_mix(msg.agent, self.state.timeline.beat_at(now))
            if isinstance(msg, PlanState):  # agents play it from now: the recording says so for --plot
                self.recorder.plan(self.state.timeline.beat_at(now), msg)
            await self._publish(msg)
        if changed:
            self.save_state()
        if self.bars is not None and ctl.param == "stop" and not ctl.target and float(ctl.value) > 0:
            self._end_run(f"/stop from {by or 'a control'}")

    def _record_mix(self, agent: str, beat: float) -> None:
        """The part's volume and pan into its track, so a render of the recording is mixed as heard."""
        m = self.state.mix[agent]
        self.recorder.control(agent, beat, CC_VOLUME, m.volume)
        self.recorder.control(agent, beat, CC_PAN, pan_cc(m.pan))
