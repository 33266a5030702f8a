"""One agent process: hears the bus, plans its part ahead, and plays each note at its moment.

Threads: the asyncio loop (bus, clock sync, planning, heartbeats) and the scheduler's timing thread
(the only caller of the output). Everything on the bus is in beats; beats become this process's
seconds only inside the scheduler, through a `LocalTimeMap` replaced whenever the timeline or the
clock-offset estimate changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.arrangement import commit_distance, commit_offset
from agents.conductor_clock import UNSYNCED, ConductorClock, inherited_offset_ms
from agents.engines import Engine, PlanContext, make_engine
from agents.faults import PlanFault
from agents.loop_scheduler import LoopScheduler
from agents.outputs import Output, OutputError
from agents.outputs.factory import make_output
from agents.scheduler import ScheduledEvent, Scheduler
from agents.unacked import Unacked
from agents.yielding import Yielding
from protocol.bus import Bus, open_bus, open_sync_bus
from protocol.ensemble import AgentConfig, Ensemble
from protocol.form import (
    CLICK_BEATS,
    DRUM_CHANNEL,
    count_in_clicks,
    count_in_player,
    ending_beats,
    ending_voicing,
    final_chord,
)
from protocol.harmony import Chord, ChordError, ChordPlan
from protocol.messages import (
    AgentParams,
    AgentStatus,
    HeldNote,
    Note,
    NoteAck,
    NoteAgain,
    PlanState,
    RoleState,
    SyncPong,
)
from protocol.mix import CC_PAN, CC_VOLUME, dynamics_velocity, pan_cc
from protocol.process import write_json_atomic
from protocol.realtime import DEFAULT_RT_PRIORITY, drop_realtime, request_realtime, set_switch_interval
from protocol.tasks import TaskGroup
from protocol.timeline import LocalTimeMap, Timeline

if TYPE_CHECKING:
    from protocol.bus_memory import MemoryNetwork

log = logging.getLogger("barcelona.agent")

HEARTBEAT_S = 0.25
PLAN_TICK_S = 0.01
STATS_EVERY_S = 0.5
ENDING_ACCENT = 8  # the final downbeat a little above the part's level, as beat 1 is
COUNT_IN = "count-in"  # the scheduler tag of the count-in's clicks
# A note that could only start this late (an agent stalled: a machine swapping, a process stopped) is
# left out rather than played out of time; its note-off goes with it. Far beyond any lateness a
# running agent shows (well under a millisecond), and beyond a flam a listener would hear as meant.
DROP_LATE_S = 0.25


class Agent:
    """`clock` and `network` put the agent in one event loop with the conductor and other agents
    (tests; protocol/virtual_time.py): `clock` is that loop's virtual clock, and then the notes are
    timed by the loop's timers instead of the timing thread, the output is stamped on that clock,
    and a model draws in the loop's thread; `network` is the in-memory bus (protocol/bus_memory.py)."""

    def __init__(self, ens: Ensemble, name: str, *, base_dir: Path, stats_path: Path | None = None,
                 clock: Callable[[], float] | None = None, network: MemoryNetwork | None = None) -> None:
        self.ens = ens
        self.cfg: AgentConfig = ens.agent(name)
        self.name = name
        self.base_dir = base_dir
        self.stats_path = stats_path
        self.clock = time.monotonic if clock is None else clock
        self.in_loop = clock is not None
        self.network = network
        self.engine: Engine = make_engine(ens, self.cfg, base_dir, in_process=self.in_loop)
        self.timeline: Timeline | None = None
        self.plan: ChordPlan | None = None
        self.plan_epoch = -1
        e = self.cfg.engine
        self.params = AgentParams(name, 0, False, e.temperature, e.density, e.top_p, e.top_k,
                                  self.cfg.volume, self.cfg.pan, dynamics_velocity(self.cfg.dynamics))
        self.params_epoch = -1
        self.committed_until: float | None = None
        # The form: whether this agent clicks the count-in; the end it has cut at and played.
        self._clicks = count_in_player(ens) == name
        self._cut_for: float | None = None
        self._ended_for: float | None = None
        self._last_pitch: int | None = None
        self._player_last: tuple[float, int] | None = None  # (start, pitch) of the player's latest note
        self.notes_sent = 0
        self.notes_committed = 0
        self.invalid_local = 0
        self.stale = 0
        self.seq = 0
        self.output: Output | None = None
        self.scheduler: Scheduler | LoopScheduler | None = None
        self.bus: Bus | None = None
        self.sync_bus: Bus | None = None  # UDP pings beside an MQTT bus (bus.sync: udp)
        self.stuck_notes = 0
        self.unacked = Unacked()  # committed notes the recorder has not confirmed: sent again until it does
        self.yielding = Yielding(name, ens.meter, ens.timing.horizon_beats + ens.timing.commit_beats + 1.0)
        self.turn = commit_offset(ens, self.cfg)
        self.loop_priority = "normal"
        self._shut = False
        self._stopping = asyncio.Event()
        self.previous = self._load_previous_stats()
        self.conductor_clock = ConductorClock(
            name, self.cfg.host == ens.conductor.host, self.previous.pop("offset_ms", None),
            target=self._ping_target(),
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        fault = PlanFault.from_env(self.name)  # a test hook (agents/faults.py); None unless set
        set_switch_interval(0.0005)
        if self.ens.timing.realtime and not self.in_loop:
            # The loop thread shares the GIL with the timing thread: if it were preempted while holding
            # it, the timing thread would wait however high its own priority. It is light (the model
            # runs in another process), so it runs just below the timing thread.
            self.loop_priority = request_realtime(DEFAULT_RT_PRIORITY - 1)
        wait_ready = getattr(self.engine, "wait_ready", None)
        if wait_ready is not None:
            # Join the roster only once the model can play: a half-loaded agent would rest its first bars.
            ready = await asyncio.to_thread(wait_ready)
            log.info("%s: model ready on %s (%s KV cache, context of up to %s events)", self.name,
                     ready.providers, ready.cache_mode, ready.max_events)
        self.output = make_output(self._output_spec(), where=f"agents.{self.name}.output",
                                  clock=self.clock if self.in_loop else None)
        try:
            self.output.open()
        except OutputError as exc:  # one line naming the part's output and what it could not open
            raise OutputError(f"agents.{self.name}.output ({self.cfg.output.type}): {exc}") from None
        if self.in_loop:
            self.scheduler = LoopScheduler(self._send, clock=self.clock)
        else:
            self.scheduler = Scheduler(self._send, clock=self.clock, realtime=self.ens.timing.realtime,
                                       drop_after_s=DROP_LATE_S)
        self.scheduler.start()
        will = self._status("gone")
        try:
            async with (
                open_bus(self.ens, self.name, will=will, network=self.network) as bus,
                contextlib.AsyncExitStack() as stack,
            ):
                self.bus = bus
                sync_bus = open_sync_bus(self.ens, self.name, network=self.network)
                if sync_bus is not None:
                    self.sync_bus = await stack.enter_async_context(sync_bus)
                try:
                    # Supervised: a loop that raises ends the process (LoopFailedError) rather than dying
                    # alone while the heartbeat goes on saying `playing` for a silent part.
                    async with TaskGroup() as loops:
                        loops.start(self._receive(bus), "receive")
                        if sync_bus is not None:
                            loops.start(self._receive(sync_bus, SyncPong), "pongs")
                        loops.start(self._ping_loop(), "pings")
                        loops.start(self._heartbeat_loop(), "heartbeat")
                        loops.start(self._plan_loop(fault), "plan")
                        loops.start(self._stats_loop(), "stats")
                        try:
                            await loops.wait(self._stopping)
                        finally:
                            # Notes first: everything sounding is released before any other part of
                            # the exit, whether it was asked for or a loop failed.
                            self.shutdown()
                finally:
                    # Stopped or failed, the conductor hears at once that this part is gone.
                    with contextlib.suppress(asyncio.TimeoutError, OSError):
                        await asyncio.wait_for(bus.publish(self._status("gone")), 0.3)
        finally:
            self.shutdown()

    def _output_spec(self) -> dict[str, Any]:
        """The schema's output section in the form the output factory reads."""
        o = self.cfg.output
        spec: dict[str, Any] = {
            "type": o.type,
            "name": f"barcelona-{self.name}",
            "channels": sorted({self.cfg.channel, *([DRUM_CHANNEL] if self._clicks else [])}),
            "programs": {self.cfg.channel: self.cfg.program},
            # The part's place in the mix, set once its program is: whatever the synth had before
            # (another song's fader) would otherwise stay.
            "controls": {self.cfg.channel: {CC_VOLUME: self.params.volume, CC_PAN: pan_cc(self.params.pan)}},
        }
        if o.type == "midi":
            spec.update(port=o.port, virtual=o.virtual, api=o.api, client_name=f"barcelona-{self.name}")
        elif o.type == "osc":
            spec.update(host=o.host, port=o.osc_port or 57120, address=o.address, timetag=o.timetag)
        elif o.type == "fluidsynth":
            soundfont = o.soundfont
            if soundfont and not Path(soundfont).is_absolute():
                soundfont = str(self.base_dir / soundfont)
            spec.update(soundfont=soundfont, gain=o.gain, audio_driver=o.audio_driver)
        return spec

    def shutdown(self) -> None:
        """Release every sounding note whatever happened; idempotent, safe from a signal path."""
        if self._shut:
            return
        self._shut = True
        # First, so that this process's exit work cannot starve the JACK server and synth that must
        # still carry the note-offs below (realtime.drop_realtime says how that lost them).
        drop_realtime()
        if self.scheduler is not None:
            self.scheduler.stop(flush=True)
        self.engine.close()
        if self.output is not None:
            self.output.close()
            self.stuck_notes = self.output.sounding()
        self.write_stats()

    # -- output (timing thread) ---------------------------------------------------------------------
    def _send(self, ev: ScheduledEvent) -> float | None:
        out = self.output
        if out is None:
            return None
        if ev.kind == "on":
            t = out.play(ev.note, due=ev.due)
            if ev.tag is not COUNT_IN:  # the part's notes, as the recording counts them
                self.notes_sent += 1
            return t
        return out.release(ev.note, due=ev.due)

    # -- bus ----------------------------------------------------------------------------------------
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
                self._apply_mix(before, msg)
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
        human = self.ens.human
        if human is not None and note.source == human.name and (
                self._player_last is None or note.start_beat >= self._player_last[0]):
            self._player_last = (note.start_beat, note.pitch)

    def _ending_range(self, chord: Chord) -> tuple[int, int]:
        """Where this part may voice the final chord: under the note the player ends on (the chord
        tone nearest their last note, as the conductor ends a replayed player), so the last thing
        heard has no part doubling the player's top note; the part's own range where that leaves
        less than an octave, and for the bass and drums, which sit under everything anyway."""
        low, high = self.cfg.range
        human = self.ens.human
        if human is None or self._player_last is None or self.cfg.role in ("bass", "drums"):
            return low, high
        top = ending_voicing("melody", human.range, 1, chord, self._player_last[1])
        ceiling = min(high, top[0] - 1) if top else high
        return (low, ceiling) if ceiling - low >= 12 else (low, high)

    def _apply_mix(self, before: AgentParams, now: AgentParams) -> None:
        """A volume or pan change goes to the synth at once, not with the next note: a fader moves
        the sound that is ringing. (The output's lock makes this safe beside the timing thread.)"""
        out = self.output
        if out is None or not out.is_open:
            return
        try:
            if now.volume != before.volume:
                out.control_change(self.cfg.channel, CC_VOLUME, now.volume)
            if pan_cc(now.pan) != pan_cc(before.pan):
                out.control_change(self.cfg.channel, CC_PAN, pan_cc(now.pan))
        except OutputError as exc:  # closing under us at shutdown, or the synth went away
            log.warning("%s: mix change not sent: %s", self.name, exc)

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

    def offset_s(self) -> float:
        return self.conductor_clock.offset_s()

    def _retime(self) -> None:
        if self.timeline is not None and self.scheduler is not None:
            self.scheduler.set_timemap(LocalTimeMap(self.timeline, self.conductor_clock.timed_offset_s()))
            self.write_stats()

    def _timemap(self) -> LocalTimeMap | None:
        return None if self.timeline is None else LocalTimeMap(self.timeline, self.offset_s())

    # -- loops --------------------------------------------------------------------------------------
    async def _ping_loop(self) -> None:
        assert self.bus is not None
        # Straight to the conductor over UDP (the OSC bus, or the sync port beside an MQTT bus), else
        # through the broker.
        bus = self.sync_bus or self.bus
        conductor = self.ens.osc_endpoint("conductor") if bus.transport_name == "osc" else None
        await self.conductor_clock.ping_loop(lambda ping: bus.publish(ping, to=conductor), self.clock)

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

    async def _plan_loop(self, fault: PlanFault | None = None) -> None:
        while True:
            await asyncio.sleep(PLAN_TICK_S)
            if self._playing() and self.plan is not None:
                if fault is not None and (tm := self._timemap()) is not None:
                    fault.check(tm.beat_at(self.clock()))
                await self._plan_tick()

    def _playing(self) -> bool:
        return self.timeline is not None and self.timeline.playing

    async def _plan_tick(self) -> None:
        tm = self._timemap()
        assert (
            tm is not None and self.plan is not None and self.scheduler is not None and self.bus is not None
        )
        tl = tm.timeline
        now_beat = tm.beat_at(self.clock())
        tempo = tl.tempo_at_beat(now_beat)
        if self.committed_until is None:
            # (Re)joining: anything starting sooner than the output latency would be late.
            self.committed_until = now_beat + self.ens.timing.latency_ms / 1000.0 * tempo / 60.0
        target = now_beat + commit_distance(self.ens, tempo)
        stop = tl.stop_beat
        if stop > 0.0:
            target = min(target, stop)
            if self._cut_for != stop:
                # An end was announced (or moved): what would still ring at the final downbeat ends there.
                self._cut_for = stop
                self.scheduler.cut_at(stop)
        if target > self.committed_until:
            start, self.committed_until = self.committed_until, target
            if start < 0.0 and self._clicks:
                self._count_in(start, min(target, 0.0))
            # The count-in before beat 0 is the click's (or silence): no part (and no model context)
            # has negative beats.
            start = max(start, 0.0)
            # A model part that commits a turn ahead of the agent's commit point (agents/arrangement.py)
            # is told the clock from its turn for beat 0 on, so it commits the first downbeat in its
            # turn, not later than the parts after it.
            if target > start or (start == 0.0 and target + self.turn > 0.0):
                await self._play_window(start, target, tl)
        if stop > 0.0 and self.committed_until >= stop and self._ended_for != stop:
            self._ended_for = stop
            if now_beat <= stop:  # an agent that (re)joins after the downbeat lets the others finish
                await self._play_ending(stop, tl.beats_per_bar)

    async def _play_window(self, start: float, target: float, tl: Timeline) -> None:
        assert self.plan is not None and self.scheduler is not None and self.bus is not None
        ctx = PlanContext(self.plan, tl.beats_per_bar, self.yielding.params(self.params, start))
        for note in self.engine.plan(start, target, ctx):
            if not self.yielding.plays(note.start_beat):
                continue  # the player has this part: the engine listens, the part rests
            if tl.stop_beat > 0.0 and note.start_beat >= tl.stop_beat:
                continue  # a part that commits ahead (agents/arrangement.py) may reach past the end
            if tl.stop_beat > 0.0 and note.end_beat > tl.stop_beat:
                note = replace(note, duration_beats=tl.stop_beat - note.start_beat)
            if (
                not self.cfg.range[0] <= note.pitch <= self.cfg.range[1]
                and self.cfg.engine.voicing != "drums"
            ):
                continue
            self.scheduler.schedule(note)
            self.notes_committed += 1
            self._last_pitch = note.pitch
            self.unacked.add(note, self.clock())
            await self.bus.publish(note)

    def _count_in(self, start: float, end: float) -> None:
        """The count-in's clicks on the GM drum channel; only heard, not published: they are no part's
        music, so neither the recording nor a listening model should take them in."""
        assert self.scheduler is not None
        timing = self.ens.timing
        for beat, pitch, velocity in count_in_clicks(start, end, timing.count_in_beats, self.ens.meter):
            click = Note(beat, CLICK_BEATS, pitch, velocity, DRUM_CHANNEL, self.name)
            self.scheduler.schedule(click, tag=COUNT_IN)

    async def _play_ending(self, stop: float, beats_per_bar: int) -> None:
        """This part's voicing of the final chord on the downbeat at `stop`, held `ending_beats`, so
        every part releases at the same beat."""
        assert self.plan is not None and self.scheduler is not None and self.bus is not None
        hold = ending_beats(self.ens)
        if hold <= 0.0 or self.params.muted or not self.yielding.plays(stop):
            return
        chord = final_chord(self.plan, stop, beats_per_bar)
        velocity = min(127, self.params.dynamics + ENDING_ACCENT)
        channel = self.cfg.channel
        cfg = self.cfg
        assert cfg.role is not None  # the schema fills it from the instrument, or guesses it
        for pitch in ending_voicing(cfg.role, self._ending_range(chord), cfg.polyphony or 1, chord,
                                    self._last_pitch):
            note = Note(stop, hold, pitch, velocity, channel, self.name)
            self.scheduler.schedule(note)
            self.notes_committed += 1
            self.unacked.add(note, self.clock())  # the recording must not miss the last chord either
            await self.bus.publish(note)

    # -- status and stats ---------------------------------------------------------------------------
    def _ping_target(self) -> str:
        """Where this agent's clock pings go, as its `unsynced` warning names it."""
        bus = self.ens.bus
        if bus.transport == "mqtt" and bus.sync == "bus":
            return f"{self.ens.conductor.address} (through the broker at {bus.mqtt.host}:{bus.mqtt.port})"
        host, port = self.ens.osc_endpoint("conductor")
        return f"{host}:{port} (udp)"

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

    def _load_previous_stats(self) -> dict[str, Any]:
        """A restarted agent continues its predecessor's counts so the report covers the whole run."""
        if self.stats_path is None or not self.stats_path.exists():
            return {}
        try:
            data = json.loads(self.stats_path.read_text())
        except (OSError, ValueError):
            return {}
        counts: dict[str, Any] = {k: int(data.get(k, 0)) for k in ("notes", "late_notes", "dropped_late",
                                                                    "invalid_messages")}
        offset_ms = inherited_offset_ms(data)
        if offset_ms is not None:
            counts["offset_ms"] = offset_ms
        return counts
