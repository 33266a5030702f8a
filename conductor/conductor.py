"""The conductor process: broadcasts the timeline, plan and mix; answers clock pings; keeps the roster;
listens to the control surface and the human; records the session.

State messages are re-sent several times a second and on every change, so a lost UDP packet or a
late joiner costs at most one period. Heavy work never happens here: the loop must answer pings at once.

This module starts, runs, broadcasts and stops; its other jobs are mixins of `Conductor`, each in its
own module: what the bus brings (conductor/conductor_bus.py), the controls
(conductor/control_handling.py), the player's notes (conductor/player_input.py) and the beat
(conductor/beat_loop.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conductor.beat_loop import BeatLoop
from conductor.conductor_bus import ConductorBus
from conductor.control import Allowlist, Displays, exposure_warning
from conductor.control_handling import ControlHandling
from conductor.human import FileHuman, LiveHuman, MidiInput
from conductor.link import LinkBridge
from conductor.listener import Heard, Listener
from conductor.midi_clock import MidiClockOut
from conductor.player_input import PlayerInput
from conductor.recorder import Recorder
from conductor.roles import RoleFollower, commit_lead
from conductor.state import ConductorState, Mix
from conductor.status_json import StatusJson, agent_fields, bar_and_beat
from conductor.substitution import SubstitutionHearing
from conductor.tempo_follow import TempoFollower
from protocol.bus import Bus, open_bus, open_sync_bus
from protocol.ensemble import Ensemble
from protocol.form import ending_beats
from protocol.harmony import ChordPlan
from protocol.messages import Note
from protocol.process import write_json_atomic
from protocol.realtime import DEFAULT_RT_PRIORITY, drop_realtime, request_realtime
from protocol.status_messages import AgentStatus
from protocol.tasks import LoopFailedError, TaskGroup
from protocol.timeline import Timeline

if TYPE_CHECKING:
    from protocol.bus_memory import MemoryNetwork

log = logging.getLogger("barcelona.conductor")

TIMELINE_EVERY_S = 0.2
# How long the conductor may take to wind down once its run is over (the loops cancelled, the bus's
# last messages flushed): past this it saves what it holds and exits, with every thread's stack on
# stderr, rather than leaving a launcher (and a script waiting on it) hanging.
SHUTDOWN_GRACE_S = 10.0
STATE_EVERY_S = 1.0
ROSTER_TIMEOUT_S = 1.5
CLICK_MARGIN_S = 0.1
START_MARGIN_BEATS = 0.5  # beat 0's time reaches the agents this much before the earliest commit turn


class Conductor(ConductorBus, ControlHandling, PlayerInput, BeatLoop):
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
                if not self.in_loop:
                    self._exit_if_stuck()
            # Make sure every agent hears the stop even if one packet is lost.
            for _ in range(3):
                await bus.publish(self.state.timeline)
                await asyncio.sleep(0.02)

    def _exit_if_stuck(self) -> None:
        """Arm a timer (a thread: a stuck event loop cannot run it) that ends the process if winding
        down outlasts SHUTDOWN_GRACE_S, after saving the recording and the state as close() would."""
        def expire() -> None:
            import faulthandler
            import sys

            print(f"error: conductor: stopping took longer than {SHUTDOWN_GRACE_S:.0f} s; saving and "
                  "exiting (every thread's stack follows)", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(all_threads=True)
            with contextlib.suppress(Exception):
                self.close()
            os._exit(0)

        timer = threading.Timer(SHUTDOWN_GRACE_S, expire)
        timer.daemon = True
        timer.start()

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
