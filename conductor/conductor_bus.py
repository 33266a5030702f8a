"""What the conductor does with what the bus brings, a mixin of `conductor.conductor.Conductor`:
clock pings answered at once, the agents' heartbeats kept as the roster, their notes recorded and
acknowledged (an agent sends again what was not), and controls from a remote surface."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from protocol.harmony import ChordError
from protocol.messages import Control, Note, NoteAck, NoteAgain, SyncPing, SyncPong, note_key
from protocol.status_messages import AgentStatus

if TYPE_CHECKING:
    from conductor.control import Allowlist
    from conductor.recorder import Recorder
    from conductor.state import ConductorState
    from protocol.bus import Bus
    from protocol.ensemble import Ensemble

log = logging.getLogger("barcelona.conductor")


class ConductorBus:
    """The receiving side of `conductor.conductor.Conductor`, a mixin of it: the state named below is
    the conductor's."""

    ens: Ensemble
    clock: Callable[[], float]
    state: ConductorState
    recorder: Recorder
    allow: Allowlist
    bus: Bus | None
    agent_status: dict[str, AgentStatus]
    to_ack: dict[str, list[tuple[float, int]]]

    if TYPE_CHECKING:
        async def _publish_state(self) -> None: ...
        async def apply(self, ctl: Control, by: str = "") -> None: ...
        def _count(self, reason: str) -> None: ...

    async def _ack_notes(self) -> None:
        """Tell each agent which of its notes the recording holds (it sends the others again)."""
        assert self.bus is not None
        pending, self.to_ack = self.to_ack, {}
        for agent, keys in pending.items():
            to = self.ens.osc_endpoint(agent) if self.bus.transport_name == "osc" else None
            for ack in NoteAck.pack(agent, keys):
                await self.bus.publish(ack, to=to)

    def _record(self, note: Note) -> None:
        """An agent's note, first sent or sent again: kept once, acknowledged every time it comes."""
        self.recorder.add(note)
        if note.source in self.state.agents:
            self.to_ack.setdefault(note.source, []).append(note_key(note.start_beat, note.pitch))

    # -- bus receive --------------------------------------------------------------------------------
    async def _answer_ping(self, bus: Bus, ping: SyncPing, sender: Any, received_at: float) -> None:
        """Pong with the ping's arrival time and, stamped last, the reply's own (NTP's t2 and t3)."""
        pong = SyncPong(ping.agent, ping.seq, ping.t_local, received_at, self.clock())
        await bus.publish(pong, to=sender if isinstance(sender, tuple) else None)

    async def _sync_serve(self, sync_bus: Bus) -> None:
        """Answer the pings that come straight over UDP beside an MQTT bus (`bus.sync: udp`)."""
        async for msg, sender, received_at in sync_bus.messages():
            if isinstance(msg, SyncPing):
                await self._answer_ping(sync_bus, msg, sender, received_at)
            else:
                sync_bus.reject(ValueError(f"sync port: {type(msg).__name__} is not a ping"))

    async def _receive(self) -> None:
        assert self.bus is not None
        async for msg, sender, received_at in self.bus.messages():
            if isinstance(msg, SyncPing):
                await self._answer_ping(self.bus, msg, sender, received_at)
            elif isinstance(msg, AgentStatus):
                if msg.state == "gone":
                    self.state.heard.pop(msg.agent, None)
                    self.state.roster_epoch += 1
                elif msg.agent in self.state.agents:
                    joined = self.state.heartbeat(msg.agent, self.clock())
                    previous = self.agent_status.get(msg.agent)
                    if joined or (previous is not None and previous.pid != msg.pid):
                        # New or restarted (a new pid within the roster timeout): send state at once
                        # rather than let it wait for the next periodic broadcast.
                        await self._publish_state()
                self.agent_status[msg.agent] = msg
            elif isinstance(msg, Note):
                self._record(msg)
            elif isinstance(msg, NoteAgain):
                self._record(msg.note())
            elif isinstance(msg, Control):
                # A remote surface over MQTT (the broker's ACL decides who may publish control). Over
                # OSC the bus port is as reachable as the control port: the same allowlist applies.
                if isinstance(sender, tuple) and not self.allow.allows(sender[0]):
                    self._count("refused")
                    continue
                try:
                    by = f"{sender[0]}:{sender[1]}" if isinstance(sender, tuple) else str(sender)
                    await self.apply(msg, by=f"the bus ({by})")
                except (ChordError, ValueError, TypeError) as exc:
                    self._count(f"rejected.{type(exc).__name__}")
                    log.warning("control %s refused: %s", msg, exc)
