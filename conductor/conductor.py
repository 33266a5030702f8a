"""The conductor process: broadcasts the timeline, plan and mix; answers clock pings; keeps the roster;
listens to the control surface and the human; records the session.

State messages are re-sent several times a second and on every change, so a lost UDP packet or a
late joiner costs at most one period. Heavy work never happens here: the loop must answer pings at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conductor.control import (
    HUMAN_NOTE,
    Allowlist,
    ControlError,
    Displays,
    exposure_warning,
    parse_control,
    strip_prefix,
)
from conductor.human import FileHuman, LiveHuman, MidiInput, read_midi_notes
from conductor.link import LinkBridge
from conductor.listener import Heard, Listener
from conductor.midi_clock import MidiClockOut
from conductor.recorder import Recorder
from conductor.roles import LATE_OK_S, RoleFollower, commit_lead
from conductor.state import MIN_CHANGE_LEAD_S, ConductorState, Mix
from conductor.status_json import StatusJson, agent_fields, bar_and_beat
from conductor.substitution import SubstitutionHearing
from conductor.tempo_follow import TempoFollower
from protocol.bus import Bus, open_bus, open_sync_bus
from protocol.ensemble import Ensemble
from protocol.form import ending_beats, ending_voicing, final_chord
from protocol.harmony import Chord, ChordError, ChordPlan
from protocol.messages import (
    AgentParams,
    AgentStatus,
    BeatTick,
    Control,
    HeldNote,
    Note,
    NoteAck,
    NoteAgain,
    PlanState,
    SyncPing,
    SyncPong,
    note_key,
)
from protocol.mix import CC_PAN, CC_VOLUME, pan_cc
from protocol.process import write_json_atomic
from protocol.realtime import DEFAULT_RT_PRIORITY, drop_realtime, request_realtime
from protocol.tasks import LoopFailedError, TaskGroup
from protocol.timeline import Timeline

if TYPE_CHECKING:
    from protocol.bus_memory import MemoryNetwork

log = logging.getLogger("barcelona.conductor")

TIMELINE_EVERY_S = 0.2
STATE_EVERY_S = 1.0
ROSTER_TIMEOUT_S = 1.5
TICK_S = 0.005
# The transport stops this long after the final chord's release, so each agent's note-offs go out
# at their beat rather than being forced by the stop a moment early.
RELEASE_MARGIN_S = 0.05
CLICK_MARGIN_S = 0.1
START_MARGIN_BEATS = 0.5  # beat 0's time reaches the agents this much before the earliest commit turn


class Conductor:
    """`clock` and `network` put the conductor in one event loop with its agents (tests;
    protocol/virtual_time.py): `clock` is that loop's virtual clock, `network` the in-memory bus and
    control surface (protocol/bus_memory.py)."""

    def __init__(
        self,
        ens: Ensemble,
        *,
        base_dir: Path,
        bars: int | None = None,
        record: Path | None = None,
        stats_path: Path | None = None,
        state_path: Path | None = None,
        wait_agents_s: float = 5.0,
        autostart: bool = True,
        clock: Callable[[], float] | None = None,
        network: MemoryNetwork | None = None,
    ) -> None:
        self.ens = ens
        self.base_dir = base_dir
        self.bars = bars
        self.record_path = record
        self.stats_path = stats_path
        self.state_path = state_path
        self.wait_agents_s = wait_agents_s
        self.autostart = autostart
        self.clock = time.monotonic if clock is None else clock
        self.in_loop = clock is not None
        self.network = network
        names = tuple(a.name for a in ens.agents)
        if state_path is not None and state_path.exists():
            self.state = ConductorState.load(state_path, names)
            self.resumed = True
        else:
            plan = ChordPlan.parse(ens.plan_text, loop=ens.loop, key=ens.key)
            self.state = ConductorState(
                Timeline(tempo_bpm=ens.tempo, beats_per_bar=ens.meter), plan, agents=names
            )
            self.state.following = ens.follows_chords
            self.resumed = False
        for a in ens.agents:  # the YAML's settings, unless a saved state says what they became
            self.state.mix.setdefault(a.name, Mix.of(a))
        self.state.commit_beats = ens.timing.commit_beats
        self.state.latency_s = ens.timing.latency_ms / 1000.0
        self.ending_beats = ending_beats(ens)
        # Fed every human note whether or not the plan follows, so `/chords follow` takes effect at once.
        self.listener = Listener(beats_per_bar=ens.meter, key=ens.key)
        # what the player changes in a written plan (conductor/substitution.py), from the same notes
        heard = ens.substitutions if self.state.substitutions is None else self.state.substitutions
        self.substitutions = SubstitutionHearing(beats_per_bar=ens.meter) if heard else None
        self.heard: Heard | None = None
        self.roles = RoleFollower(ens)  # which part the player takes, and who makes room (conductor/roles.py)
        # Fed every onset whether or not it follows, so `/follow_tempo 1` locks on at once.
        self.tempo_follower = TempoFollower()
        wanted = ens.tempo_follow if self.state.follow_tempo is None else self.state.follow_tempo
        self.following_tempo = wanted and not ens.conductor.link.enabled
        parts = [(p.name, p.channel, p.program) for p in ens.parts()]
        self.recorder = Recorder(parts, beats_per_bar=ens.meter)
        # The journal carries the recording (and so every count the report takes from it) across a
        # restart; kept beside the state file when no recording was asked for, and removed at the end.
        self.journal_only = record is None and state_path is not None
        if record is not None:
            self.recorder.keep_journal(record.with_name(record.name + ".journal"), resume=self.resumed)
        elif state_path is not None:
            self.recorder.keep_journal(state_path.with_name("notes.journal"), resume=self.resumed)
        for a in ens.agents:  # each part's mix from the start, unless a resumed journal has its history
            if a.name not in self.recorder.controls:
                self._record_mix(a.name, 0.0)
        self.to_ack: dict[str, list[tuple[float, int]]] = {}  # agent -> notes recorded, to acknowledge
        self.recorder.plan(max(0.0, self.state.timeline.beat_origin), self.state.plan_message())
        self.allow = Allowlist(ens.control.allow)
        self.control_invalid: dict[str, int] = {}
        self.displays = Displays()
        self.human_file: FileHuman | None = None
        self.human_live: LiveHuman | None = None
        self.midi_in: MidiInput | None = None
        self.human_last: Note | None = None
        self.human_ended_for: float | None = None
        self.agent_status: dict[str, AgentStatus] = {}
        self.bus: Bus | None = None
        self.sync_bus: Bus | None = None  # UDP pings beside an MQTT bus
        self.loop_priority = "normal"
        self.surface: Any = None
        self.finished = asyncio.Event()
        self.last_beat_tick: int | None = None
        self.end_beat: float | None = None
        self.midi_clock: MidiClockOut | None = None
        self.link = LinkBridge(ens.conductor.link)  # inert unless the YAML enables Link
        self.status_json = StatusJson(self.clock)
        self.ended_by = ""  # who ended a --bars run early (a stop control's sender); see _end_run
        self._setup_human()

    def _setup_human(self) -> None:
        h = self.ens.human
        if h is None or h.source.type == "none":
            return
        if h.source.type == "file":
            path = Path(h.source.path or "")
            path = path if path.is_absolute() else self.base_dir / path
            notes = read_midi_notes(path, h.source.transpose)
            self.human_file = FileHuman(notes, h.name, h.channel, self.ens.meter, h.source.loop)
        else:
            self.human_live = LiveHuman(h.name, h.channel)
            if h.source.type == "midi":
                self.midi_in = MidiInput(h.source.port, h.source.api)

    # -- main -------------------------------------------------------------------------------------
    async def run(self) -> None:
        from protocol.transport_osc import OscTransport

        if self.ens.timing.realtime and not self.in_loop:
            # The loop stamps each ping's arrival (clock sync's t2) in its datagram callback: on a busy
            # machine a normal-priority loop reads it late, and every agent's offset is off by that.
            # It is light (no model, no audio), so it runs with the agents' loops, below their timing.
            self.loop_priority = request_realtime(DEFAULT_RT_PRIORITY - 1)

        ctl = self.ens.control
        # The allowlist runs on the sender's address before a byte is parsed (docs/security.md).
        transport = OscTransport if self.network is None else self.network.transport
        surface = transport((ctl.bind_host, ctl.port), [], accept=self.allow.allows, setting="control.port")
        if ctl.listen == "any":
            log.warning("%s", exposure_warning(ctl.port, ctl.allow))
        clock_cfg = self.ens.conductor.midi_clock
        if clock_cfg is not None:  # opened first: a missing port stops the conductor before it plays
            self.midi_clock = MidiClockOut(clock_cfg.port, clock_cfg.api, virtual=clock_cfg.virtual).start()
        try:
            await self._serve(surface)
        except LoopFailedError:
            self.close()  # ports closed, state and recording saved: the restarted conductor resumes
            raise
        self.close()

    async def _serve(self, surface: Any) -> None:
        async with (
            open_bus(self.ens, "conductor", network=self.network, refused=self.allow.refused) as bus,
            surface,
            contextlib.AsyncExitStack() as stack,
        ):
            self.bus, self.surface = bus, surface
            sync_bus = open_sync_bus(self.ens, "conductor", network=self.network, refused=self.allow.refused)
            if sync_bus is not None:
                self.sync_bus = await stack.enter_async_context(sync_bus)
            # Supervised: a loop that raises ends the process (LoopFailedError, a restart keeps the state)
            # rather than leaving a conductor that answers pings but no longer steers.
            async with TaskGroup() as loops:
                if sync_bus is not None:
                    loops.start(self._sync_serve(sync_bus), "sync")
                loops.start(self._receive(), "receive")
                loops.start(self._surface_loop(), "surface")
                loops.start(self._broadcast_loop(), "broadcast")
                loops.start(self._tick_loop(), "tick", may_end=True)  # at the end of a --bars run
                loops.start(self._stats_loop(), "stats")
                link = self.link.serve(self.state, self.recorder, self._publish)
                loops.start(link, "link", may_end=True)  # at once, without Link
                await self._publish_state()
                if self.autostart:
                    # A task, not an await: a stop (or a failing loop) during the wait for the agents
                    # is heard at once.
                    loops.start(self._start_when_ready(), "start", may_end=True)
                await loops.wait(self.finished)
            # Make sure every agent hears the stop even if one packet is lost.
            for _ in range(3):
                await bus.publish(self.state.timeline)
                await asyncio.sleep(0.02)

    def stop(self) -> None:
        """Ctrl-C or SIGTERM: the recording ends now. The agents stop with us, so notes they committed
        for later were never played; the file (and the report's recorded counts) leave them out."""
        tl = self.state.timeline
        if self.end_beat is None and tl.playing:
            self.end_beat = max(0.0, tl.beat_at(self.clock()))
        self.finished.set()

    def _end_run(self, by: str) -> None:
        """A stop control during a `--bars` run ends the run, as the N bars would have: the run is
        what the user asked for, and a conductor idling until someone presses play would leave the
        launcher (and a script waiting on it) hanging. Without `--bars` a stop only pauses."""
        tl = self.state.timeline
        self.end_beat = max(0.0, tl.beat_at(self.clock()))
        self.ended_by = by
        log.info("run stopped by %s at bar %d", by, math.floor(self.end_beat / tl.beats_per_bar) + 1)
        self.finished.set()

    def close(self) -> None:
        drop_realtime()  # what is left (Stop, closing ports, the recording) must not starve JACK
        if self.midi_clock is not None:
            self.midi_clock.close()  # a Stop first if the transport still runs
        if self.midi_in is not None:
            self.midi_in.close()
        if self.record_path is not None:
            self.recorder.save(self.record_path, until_beat=self.end_beat)
        elif self.journal_only:
            self.recorder.drop_journal()
        self.save_state()
        self.write_stats()

    async def _start_when_ready(self) -> None:
        if self.resumed and self.state.timeline.playing:
            # A restarted conductor picks up where it was: the replayed human skips what was played.
            if self.human_file is not None:
                self.human_file.skip_to(self.state.timeline.beat_at(self.clock()))
            return
        deadline = self.clock() + self.wait_agents_s
        expected = set(self.state.agents)
        while self.clock() < deadline and not expected <= set(self.state.heard):
            await asyncio.sleep(0.02)
        await self.link.wait_joined(self.state.timeline.tempo_bpm)  # follow: join Link first, start in phase
        count_in = self.ens.timing.count_in_beats * 60.0 / self.state.timeline.tempo_bpm
        latency = self.ens.timing.latency_ms / 1000.0
        # A silent count-in only has to cover the agents' lead. A heard one must be heard whole: its
        # first click is then a latency (and a margin for the timeline to reach them) away.
        heard = self.ens.timing.count_in == "click"
        lead = count_in + latency + CLICK_MARGIN_S if heard else max(count_in, latency)
        # Every part must hear beat 0's time before its own commit turn for beat 0 comes, or it comes
        # in a beat or two after the player (conductor/roles.py: commit_lead).
        bps = self.state.timeline.tempo_bpm / 60.0
        lead = max(lead, (commit_lead(self.ens, bps * 60.0) + START_MARGIN_BEATS) / bps)
        now = self.clock()
        self.state.timeline = self.state.timeline.started(now, at_beat=0.0, delay_s=lead)
        self.state.timeline = self.link.aligned(self.state.timeline)  # follow: beat 0 on Link's bar line
        if self.bars is not None:
            self.state.timeline = replace(self.state.timeline, stop_beat=float(self.bars * self.ens.meter))
        self.recorder.tempo(0.0, self.state.timeline.tempo_bpm)
        await self._publish(self.state.timeline)
        self.save_state()

    # -- publishing -------------------------------------------------------------------------------
    async def _publish(self, msg: Any) -> None:
        assert self.bus is not None
        if self.midi_clock is not None and isinstance(msg, Timeline):
            self.midi_clock.set_timeline(msg)
        await self.bus.publish(msg)

    async def _publish_state(self) -> None:
        now = self.clock()
        await self._publish(self.state.timeline)
        await self._publish(self.state.plan_message())
        for p in self.state.params_messages():
            await self._publish(p)
        await self._publish(self.state.roster_message(now, ROSTER_TIMEOUT_S))
        await self._publish(self.roles.message())

    async def _broadcast_loop(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(TIMELINE_EVERY_S)
            n += 1
            now = self.clock()
            settled = self.state.timeline.settled(now)
            if settled is not self.state.timeline:
                self.state.timeline = settled
            await self._ack_notes()
            if n % round(STATE_EVERY_S / TIMELINE_EVERY_S) == 0:
                gone = self.state.expire(now, ROSTER_TIMEOUT_S)
                for name in gone:
                    log.warning("agent %s lost (no heartbeat for %.1f s)", name, ROSTER_TIMEOUT_S)
                await self._publish_state()
            else:
                await self._publish(self.state.timeline)

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

    # -- the control surface ------------------------------------------------------------------------
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

    async def _human_osc(self, args: list[Any]) -> None:
        if self.human_live is None:
            raise ControlError("no_live_human", "the ensemble's human source is not osc")
        if len(args) < 2:
            raise ControlError("bad_value.human_note", "needs pitch and velocity")
        beat = self.state.timeline.beat_at(self.clock())
        note = self.human_live.note_on(args[0], args[1], beat)
        if note is not None:
            await self._human_note(note)
        await self._human_held(args[0], args[1], beat)

    @property
    def human_notes(self) -> int:
        """The human's notes played, counted in the recording: a restarted conductor's journal has its
        predecessor's too, so the count covers the whole run (the bridge plays every note it keeps)."""
        h = self.ens.human
        return 0 if h is None else self.recorder.count(h.name, self.end_beat)

    async def _human_held(self, pitch: Any, velocity: Any, beat: float) -> None:
        """A note-on from the player: the band hears it now (HeldNote); the Note follows at note-off."""
        h = self.ens.human
        if h is None or self.human_live is None or int(pitch) not in self.human_live.held:
            return  # a note-off (velocity 0), or a note the bridge refused
        held = HeldNote(beat, int(pitch), int(velocity), h.channel, h.name)
        self.listener.note_on(held.pitch, held.velocity, beat)
        self.roles.note_on(held)
        self._onset(beat)
        await self._publish(held)

    def _onset(self, beat: float) -> None:
        tl = self.state.timeline
        if tl.playing:  # a player warming up before the start is not the tempo the band will play
            self.tempo_follower.onset(tl.time_at(beat), tl)

    async def _human_note(self, note: Note) -> None:
        self.human_last = note
        self.listener.note(note.start_beat, note.duration_beats, note.pitch, note.velocity)
        self.roles.note(note)
        self.recorder.add(note)
        await self._publish(note)

    # -- the beat: human replay, display ticks, the end of a --bars run -----------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            tl = self.state.timeline
            if not tl.playing:
                continue
            now = self.clock()
            beat = tl.beat_at(now)
            if self.human_file is not None:
                for held in self.human_file.started(beat):
                    self.listener.note_on(held.pitch, held.velocity, held.start_beat)
                    self.roles.note_on(held)
                    self._onset(held.start_beat)
                    await self._publish(held)
                for note in self.human_file.due(beat):
                    if tl.stop_beat > 0.0 and note.end_beat > tl.stop_beat:
                        if note.start_beat >= tl.stop_beat:
                            continue  # the replayed player stops with the band at the final downbeat
                        note = replace(note, duration_beats=tl.stop_beat - note.start_beat)
                    await self._human_note(note)
                if 0.0 < tl.stop_beat <= beat and self.human_ended_for != tl.stop_beat:
                    self.human_ended_for = tl.stop_beat
                    await self._human_ending(tl)
            if self.midi_in is not None and self.human_live is not None:
                await self._drain_midi_in(tl)
            whole = math.floor(beat)
            if whole != self.last_beat_tick and beat >= 0:
                self.last_beat_tick = whole
                if not self._ending_near(whole, tl):
                    await self._follow(whole)
                    await self._follow_tempo(whole, now)
                await self._beat_tick(whole, tl)
            # who yields: judged at each bar line and part-way through a bar (conductor/roles.py)
            bps = tl.tempo_at_beat(beat) / 60.0
            for msg in self.roles.at_beat(beat, commit_lead(self.ens, bps * 60.0), LATE_OK_S * bps):
                await self._publish(msg)
            if tl.stop_beat > 0.0 and now >= tl.time_at(tl.stop_beat + self.ending_beats) + RELEASE_MARGIN_S:
                # The held chord has been released: the transport stops, and a --bars run is over.
                self.state.timeline = tl.stopped(now)
                self.tempo_follower = TempoFollower()
                if self.bars is not None:
                    self.end_beat = tl.stop_beat + self.ending_beats
                    self.finished.set()
                    return
                await self._publish(self.state.timeline)
                self.save_state()

    def _ending_near(self, beat: float, tl: Timeline) -> bool:
        """From a commit horizon before the final downbeat the harmony is the final chord's: agents
        voice it from the plan they hold then, so a followed plan must not move under them."""
        if tl.stop_beat <= 0.0:
            return False
        timing = self.ens.timing
        lead = max(timing.commit_beats, timing.latency_ms / 1000.0 * tl.tempo_at_beat(beat) / 60.0)
        return beat + lead + 1.0 >= tl.stop_beat

    async def _human_ending(self, tl: Timeline) -> None:
        """The replayed player ends with the band, as the player it stands in for would: the chord
        tone nearest its last note, held with the others. (A live player plays what they play.)"""
        h = self.ens.human
        if h is None or self.ending_beats <= 0.0 or self.human_last is None:
            return
        chord = final_chord(self.state.plan, tl.stop_beat, tl.beats_per_bar)
        for pitch in ending_voicing(self.roles.ending_role(), h.range, 1, chord, self.human_last.pitch):
            note = Note(tl.stop_beat, self.ending_beats, pitch, self.human_last.velocity, h.channel, h.name)
            self.recorder.add(note)  # not to the listener: the form's note, not the player's
            await self._publish(note)

    async def _follow(self, beat: int) -> None:
        """Decide the heard chord and key at this beat onset and publish them as the plan if they changed;
        on a written plan, the chord the player substitutes for the written one (or the chart again)."""
        self.heard = self.listener.decide(float(beat))
        if self.substitutions is not None and not self.state.following:
            chart, t = self.state.chart, float(beat)
            sub = self.substitutions.decide(self.listener, chart, t)
            if sub is None and self.substitutions.contradicted(self.listener, self.state.plan, chart, t):
                changed = self.state.unsubstitute()
            else:
                # and half a beat for the agents' re-plan to reach past the notes they have committed
                lead = commit_lead(self.ens, self.state.timeline.tempo_at_beat(t)) + 0.5
                changed = self.state.substitute(sub, t, self.ens.meter, lead)
        elif self.heard is None:
            return
        else:
            changed = self.state.follow(self.heard.chord, self.heard.key)
        for msg in changed:
            self.recorder.plan(float(beat), msg)
            await self._publish(msg)
        if changed:
            self.save_state()

    async def _follow_tempo(self, beat: int, now: float) -> None:
        """At a beat's onset: the player's tempo from the first whole beat every agent can still
        hear it in time (the next one, or later at a fast tempo or a long latency)."""
        tl = self.state.timeline.settled(now)
        at = float(beat + 1)
        while tl.time_at(at) - now < self.state.latency_s + MIN_CHANGE_LEAD_S and at < beat + 8:
            at += 1.0
        tempo = self.tempo_follower.decide(beat, tl, at=at)
        if tempo is None or not self.following_tempo:
            return
        if tl.next_tempo_bpm > 0 and tl.change_beat > beat:
            return  # a change on its way (a /tempo to its bar line, or the last one followed) stands
        self.state.timeline = tl.with_tempo(tempo, at, now)
        self.recorder.tempo(at, tempo)
        await self._publish(self.state.timeline)

    async def _drain_midi_in(self, tl: Timeline) -> None:
        assert self.midi_in is not None and self.human_live is not None
        while not self.midi_in.queue.empty():
            t, msg = self.midi_in.queue.get_nowait()
            beat = tl.beat_at(t)
            note = None
            if msg.type == "note_on":
                note = self.human_live.note_on(msg.note, msg.velocity, beat)
            elif msg.type == "note_off":
                note = self.human_live.note_off(msg.note, beat)
            if note is not None:
                await self._human_note(note)
            if msg.type == "note_on":
                await self._human_held(msg.note, msg.velocity, beat)

    async def _beat_tick(self, beat: int, tl: Timeline) -> None:
        if 0.0 < tl.stop_beat <= beat:  # the held ending: show the chord the band holds
            chord: Chord | None = final_chord(self.state.plan, tl.stop_beat, tl.beats_per_bar)
        else:
            chord = self.state.plan.chord_at(beat, tl.beats_per_bar)
        tick = BeatTick(
            *bar_and_beat(beat, tl.beats_per_bar),
            chord.symbol if chord else "",
            tl.tempo_at_beat(beat),
        )
        await self._publish(tick)
        await self._publish(status := self.status_json.message(self.stats()))
        if self.displays and self.surface is not None:
            from protocol.codec import to_osc

            for address, targs in (to_osc(self.ens.name, tick), to_osc(self.ens.name, status)):
                for display in self.displays:
                    self.surface.send(address, targs, to=display)

    # -- stats and persistence ----------------------------------------------------------------------
    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.write_stats()

    def stats(self) -> dict[str, Any]:
        tl = self.state.timeline
        now = self.clock()
        beat = tl.beat_at(now)
        chord = self.state.plan.chord_at(beat, tl.beats_per_bar) if beat >= 0 else None
        # Summed, not merged: the bus, its transport, the surface's transport and the surface's parser
        # share reason names (`unknown_address`); the surface's malformed datagrams were not counted.
        reasons: Counter[str] = Counter(self.control_invalid)
        for bus in (self.bus, self.sync_bus):
            if bus is not None:
                reasons.update(bus.invalid)
                reasons.update(bus.transport_invalid())
        if self.surface is not None:
            reasons.update(self.surface.stats.invalid)
            if self.surface.stats.refused:  # strangers refused before parsing: not malformed, but counted
                reasons["refused"] += self.surface.stats.refused
        return {
            "role": "conductor",
            "pid": os.getpid(),
            "loop_priority": self.loop_priority,
            "playing": tl.playing,
            "tempo": tl.tempo_at_beat(beat),
            "tempo_follow": ("locked" if self.tempo_follower.locked else "unlocked") if self.following_tempo
            else "off",
            "beat": beat,
            "bar": bar_and_beat(beat, tl.beats_per_bar)[0],
            "chord": chord.symbol if chord else "",
            "key": self.state.plan.key,
            "following": self.state.following,
            "heard": {"chord": self.heard.chord, "key": self.heard.key} if self.heard else None,
            "roles": self.roles.stats(beat),
            "roster": sorted(self.state.heard),
            "human_notes": self.human_notes,
            "recorded": {p.name: self.recorder.count(p.name, self.end_beat) for p in self.ens.parts()},
            "invalid_messages": sum(reasons.values()),
            "invalid_reasons": dict(reasons),
            "refused": dict(self.allow.refused),
            "displays": len(self.displays),
            "agents": {a: agent_fields(s) for a, s in self.agent_status.items()},
            "bus": self.ens.bus.transport,
            "link": self.link.stats(),
            "ended_by": self.ended_by,
            "updated": time.time(),
        }

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        write_json_atomic(self.stats_path, self.stats())

    def save_state(self) -> None:
        if self.state_path is not None:
            self.state.save(self.state_path)
