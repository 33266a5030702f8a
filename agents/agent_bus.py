"""What an agent does with what the bus brings: the conductor's timeline, plan and parameters, the
clock pongs, the recorder's acknowledgements, and the notes it hears (to its engine)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agents.agent_output import send_mix
from protocol.harmony import ChordError, ChordPlan
from protocol.messages import (
    AgentParams,
    HeldNote,
    Note,
    NoteAck,
    PlanState,
    RoleState,
    SyncPong,
)
from protocol.timeline import Timeline

if TYPE_CHECKING:
    from agents.conductor_clock import ConductorClock
    from agents.engines import Engine
    from agents.loop_scheduler import LoopScheduler
    from agents.output_link import HostedScheduler, OutputLink
    from agents.outputs import Output
    from agents.scheduler import Scheduler
    from agents.unacked import Unacked
    from agents.yielding import Yielding
    from protocol.bus import Bus
    from protocol.ensemble import AgentConfig, Ensemble

log = logging.getLogger("barcelona.agent")


class AgentBus:
    """The receiving side of `agents.agent.Agent`, a mixin of it: the state named below is the
    agent's."""

    ens: Ensemble
    cfg: AgentConfig
    name: str
    engine: Engine
    output: Output | OutputLink | None
    scheduler: Scheduler | LoopScheduler | HostedScheduler | None
    conductor_clock: ConductorClock
    unacked: Unacked
    yielding: Yielding
    timeline: Timeline | None
    plan: ChordPlan | None
    plan_epoch: int
    params: AgentParams
    params_epoch: int
    committed_until: float | None
    invalid_local: int
    stale: int
    _player_recent: dict[float, int]
    _cut_for: float | None
    _ended_for: float | None

    if TYPE_CHECKING:
        def _retime(self) -> None: ...

    async def _receive(self, bus: Bus, only: type | None = None) -> None:
        """Handle what `bus` brings; with `only`, anything else is refused and counted (the sync port
        beside an MQTT bus answers pongs, not a stranger's timeline)."""
        async for msg, _sender, received_at in bus.messages():
            if only is not None and not isinstance(msg, only):
                bus.reject(ValueError(f"sync port: {type(msg).__name__} is not a {only.__name__}"))
                continue
            try:
                self._handle(msg, received_at)
            except (ChordError, ValueError, TypeError) as exc:
                self.invalid_local += 1
                log.warning("%s: rejected %s: %s", self.name, type(msg).__name__, exc)

    def _handle(self, msg: Any, received_at: float) -> None:
        if isinstance(msg, (Timeline, NoteAck)):
            self.unacked.heard_conductor(received_at)
        if isinstance(msg, NoteAck):
            if msg.agent == self.name:
                self.unacked.ack(msg.keys())
        elif isinstance(msg, Timeline):
            self._on_timeline(msg)
        elif isinstance(msg, SyncPong):
            if msg.agent == self.name and self.conductor_clock.on_pong(msg, received_at):
                self._retime()
        elif isinstance(msg, PlanState):
            if msg.epoch != self.plan_epoch:
                self.plan = ChordPlan.parse(msg.text, loop=msg.loop, key=msg.key)
                self.plan_epoch = msg.epoch
        elif isinstance(msg, AgentParams):
            if msg.agent == self.name and msg.epoch != self.params_epoch:
                before = self.params
                self.params, self.params_epoch = msg, msg.epoch
                send_mix(self.output, self.cfg.channel, before, msg, self.name)
        elif isinstance(msg, RoleState):  # the player took (or left) this part: agents/yielding.py
            self.yielding.update(msg)
        elif isinstance(msg, Note):
            if msg.source != self.name:
                self._heard_player(msg)
                tl = self.timeline
                # the final chord (or anything from the end on) is no part's to answer: heard by a
                # model that committed past it long ago, it would only be a note heard too late
                if tl is None or tl.stop_beat <= 0.0 or msg.start_beat < tl.stop_beat:
                    self.engine.hear(msg)
        elif isinstance(msg, HeldNote):
            self._heard_player(msg)
            hear_held = getattr(self.engine, "hear_held", None)  # engines that listen to the player
            if hear_held is not None and msg.source != self.name:
                hear_held(msg)

    def _heard_player(self, note: Note | HeldNote) -> None:
        """Keep the player's latest notes by start: the final chord is voiced under the note the
        player ends on (agents/arrangement.py)."""
        human = self.ens.human
        if human is not None and note.source == human.name:
            self._player_recent[note.start_beat] = note.pitch
            while len(self._player_recent) > 16:
                del self._player_recent[min(self._player_recent)]

    def _on_timeline(self, tl: Timeline) -> None:
        cur = self.timeline
        if cur is not None and tl.epoch < cur.epoch:
            # A restarted conductor with no saved state counts from 0 again: follow it once it insists.
            self.stale += 1
            if self.stale < 3:
                return
        self.stale = 0
        if cur is not None and tl == cur:
            return
        was_playing = cur is not None and cur.playing
        self.timeline = tl
        if was_playing and not tl.playing and self.scheduler is not None:
            self.scheduler.clear()
            self.committed_until = None
        if tl.playing and not was_playing:
            self.committed_until = None
            self._cut_for = self._ended_for = None
        self._retime()
