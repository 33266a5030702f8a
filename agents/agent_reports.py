"""What an agent says about itself: its heartbeat (`AgentStatus`, with the notes the recorder has not
acknowledged) and its stats file, which a restarted agent reads back to carry its counts on."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.conductor_clock import UNSYNCED, ConductorClock, inherited_offset_ms
from protocol.messages import NoteAgain
from protocol.process import write_json_atomic
from protocol.status_messages import AgentStatus

if TYPE_CHECKING:
    from agents.engines import Engine
    from agents.loop_scheduler import LoopScheduler
    from agents.output_link import HostedScheduler, OutputLink
    from agents.outputs import Output
    from agents.scheduler import Scheduler
    from agents.unacked import Unacked
    from agents.yielding import Yielding
    from protocol.bus import Bus
    from protocol.ensemble import AgentConfig, Ensemble
    from protocol.timeline import LocalTimeMap, Timeline

HEARTBEAT_S = 0.25
STATS_EVERY_S = 0.5


class AgentReports:
    """The heartbeat and stats of `agents.agent.Agent`, a mixin of it: the state named below is the
    agent's."""

    ens: Ensemble
    cfg: AgentConfig
    name: str
    clock: Callable[[], float]
    stats_path: Path | None
    previous: dict[str, Any]
    engine: Engine
    output: Output | OutputLink | None
    scheduler: Scheduler | LoopScheduler | HostedScheduler | None
    bus: Bus | None
    sync_bus: Bus | None
    conductor_clock: ConductorClock
    unacked: Unacked
    yielding: Yielding
    timeline: Timeline | None
    committed_until: float | None
    seq: int
    notes_sent: int
    notes_committed: int
    invalid_local: int
    stuck_notes: int
    loop_priority: str

    if TYPE_CHECKING:
        def offset_s(self) -> float: ...
        def _timemap(self) -> LocalTimeMap | None: ...
        def _playing(self) -> bool: ...

    async def _heartbeat_loop(self) -> None:
        """Heartbeats, and with each the notes the recorder has not acknowledged (agents/unacked.py)."""
        assert self.bus is not None
        conductor = self.ens.osc_endpoint("conductor") if self.bus.transport_name == "osc" else None
        while True:
            await self.bus.publish(self._status("playing" if self._playing() else "ready"))
            for note in self.unacked.due(self.clock()):
                await self.bus.publish(NoteAgain.of(note), to=conductor)
            await asyncio.sleep(HEARTBEAT_S)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            self.write_stats()

    def _status(self, state: str) -> AgentStatus:
        """The heartbeat. An agent out of sync says `unsynced` instead of ready/playing: it may be
        playing, but on a clock nobody has checked, and that is what a display must show."""
        if state != "gone" and self.conductor_clock.state == UNSYNCED:
            state = UNSYNCED
        self.seq += 1
        st = self.scheduler.stats() if self.scheduler else {"late_count": 0, "p50": 0.0}
        lookahead = 0.0
        tm = self._timemap()
        if tm is not None and tm.timeline.playing and self.committed_until is not None:
            lookahead = self.committed_until - tm.beat_at(self.clock())
        return AgentStatus(
            agent=self.name,
            seq=self.seq % 2**31,
            state=state,
            pid=os.getpid(),
            notes=self.notes_sent + self.previous.get("notes", 0),
            late_notes=int(st["late_count"]) + self.previous.get("late_notes", 0),
            invalid=self.invalid_total(),
            load=0.0,
            lookahead_beats=max(-1e6, min(1e6, lookahead)),
            latency_ms=float(st["p50"]),
            offset_ms=self.conductor_clock.sync.offset_s * 1000.0,
            rtt_ms=min(1e6, self.conductor_clock.rtt_s() * 1000.0),
        )

    def invalid_total(self) -> int:
        bus = sum(b.invalid_total for b in (self.bus, self.sync_bus) if b is not None)
        return bus + self.invalid_local + self.previous.get("invalid_messages", 0)

    def stats(self) -> dict[str, Any]:
        st = (
            self.scheduler.stats()
            if self.scheduler
            else {"p50": 0.0, "p99": 0.0, "max": 0.0, "late_count": 0}
        )
        return {
            "role": "agent",
            "pid": os.getpid(),
            "notes": self.notes_sent + self.previous.get("notes", 0),
            "committed": self.notes_committed,
            "late_notes": int(st["late_count"]) + self.previous.get("late_notes", 0),
            "dropped_late": int(st.get("dropped", 0)) + self.previous.get("dropped_late", 0),
            "timing_ms": {k: round(float(st.get(k, 0.0)), 4) for k in ("p50", "p99", "max", "onset_max")},
            "sync": {
                "offset_ms": round(self.offset_s() * 1000.0, 4),
                "estimated_offset_ms": round(self.conductor_clock.sync.offset_s * 1000.0, 4),
                "rtt_ms": round(self.conductor_clock.rtt_s() * 1000.0, 4),
                # syncing (no pong yet), synced, or unsynced (no pong for UNSYNCED_AFTER_S)
                "state": self.conductor_clock.state,
                "unsynced_s": round(self.conductor_clock.unsynced_total_s(self.clock()), 3),
                "pings_to": self.conductor_clock.target,
                # Where the pings go: "udp" straight to the conductor, "broker" through MQTT.
                "via": "broker" if self.ens.bus.transport == "mqtt" and self.ens.bus.sync == "bus" else "udp",
            },
            # notes not yet acknowledged by the recorder, sent again, and lost to the bound (none, we hope)
            "recording": self.unacked.stats(),
            "invalid_messages": self.invalid_total(),
            "invalid_reasons": dict(sum(
                (Counter(b.invalid) + Counter(b.transport_invalid()) for b in (self.bus, self.sync_bus) if b),
                Counter(),
            )),
            # datagrams refused on their sender address before parsing (docs/security.md), by sender
            "refused": dict(sum((Counter(b.refused) for b in (self.bus, self.sync_bus) if b), Counter())),
            "priority": self.scheduler.priority if self.scheduler else "none",
            "loop_priority": self.loop_priority,
            "engine": self.cfg.engine.type,
            "providers": list(getattr(self.engine, "providers", ())),
            "model_events": getattr(self.engine, "events", 0),
            "replans": getattr(self.engine, "replans", 0),
            # beats the model had not drawn when they were due (the part played their chords only)
            "behind_beats": getattr(self.engine, "behind_beats", 0),
            # other parts' notes heard after the turn they counted in (the band did not keep up)
            "late_heard": getattr(self.engine, "late_heard", 0),
            "model_load": round(float(getattr(self.engine, "load", 0.0)), 3),
            "stuck_notes": self.stuck_notes,
            "yielding": self.yielding.stats(),
            "timemap": self._timemap_dict(),
            "sounding": self.output.sounding() if self.output else 0,
            "updated": time.time(),
        }

    def _timemap_dict(self) -> dict[str, Any] | None:
        """This agent's own beat clock (timeline + offset), so tools can compare agents' beats."""
        if self.timeline is None:
            return None
        return {
            "timeline": {k: getattr(self.timeline, k) for k in self.timeline.__dataclass_fields__},
            "offset_s": self.offset_s(),
        }

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        write_json_atomic(self.stats_path, self.stats())


def ping_target(ens: Ensemble) -> str:
    """Where this agent's clock pings go, as its `unsynced` warning names it."""
    bus = ens.bus
    if bus.transport == "mqtt" and bus.sync == "bus":
        return f"{ens.conductor.address} (through the broker at {bus.mqtt.host}:{bus.mqtt.port})"
    host, port = ens.osc_endpoint("conductor")
    return f"{host}:{port} (udp)"


def load_previous_stats(stats_path: Path | None) -> dict[str, Any]:
    """A restarted agent continues its predecessor's counts so the report covers the whole run."""
    if stats_path is None or not stats_path.exists():
        return {}
    try:
        data = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        return {}
    counts: dict[str, Any] = {k: int(data.get(k, 0)) for k in ("notes", "late_notes", "dropped_late",
                                                                "invalid_messages")}
    offset_ms = inherited_offset_ms(data)
    if offset_ms is not None:
        counts["offset_ms"] = offset_ms
    return counts
