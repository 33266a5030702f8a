"""One agent process: hears the bus, plans its part ahead, and plays each note at its moment.

Threads: the asyncio loop (bus, clock sync, planning, heartbeats) and the scheduler's timing thread
(the only caller of the output). Everything on the bus is in beats; beats become this process's
seconds only inside the scheduler, through a `LocalTimeMap` replaced whenever the timeline or the
clock-offset estimate changes.

Beside it: what it does with what the bus brings (agents/agent_bus.py), its heartbeat and stats file
(agents/agent_reports.py), and the output its YAML section opens (agents/agent_output.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.agent_bus import AgentBus
from agents.agent_output import output_spec
from agents.agent_reports import AgentReports, load_previous_stats, ping_target
from agents.arrangement import commit_distance, commit_offset, ending_pitches
from agents.conductor_clock import ConductorClock
from agents.engines import Engine, PlanContext, make_engine
from agents.engines.plan_timing import HEARD_GUARD_BEATS
from agents.faults import PlanFault
from agents.loop_scheduler import LoopScheduler
from agents.output_link import KEY_ENV, HostedScheduler, OutputLink
from agents.outputs import Output, OutputError
from agents.outputs.burst import SendResult
from agents.outputs.factory import make_output
from agents.scheduler import Dispatch, ScheduledEvent, Scheduler
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
    final_chord,
)
from protocol.harmony import ChordPlan
from protocol.messages import AgentParams, Note, SyncPong
from protocol.mix import dynamics_velocity
from protocol.realtime import DEFAULT_RT_PRIORITY, drop_realtime, request_realtime, set_switch_interval
from protocol.tasks import TaskGroup
from protocol.timeline import LocalTimeMap, Timeline

if TYPE_CHECKING:
    from protocol.bus_memory import MemoryNetwork

log = logging.getLogger("barcelona.agent")

PLAN_TICK_S = 0.01
ENDING_ACCENT = 8  # the final downbeat a little above the part's level, as beat 1 is
COUNT_IN = "count-in"  # the scheduler tag of the count-in's clicks
# A note that could only start this late (an agent stalled: a machine swapping, a process stopped) is
# left out rather than played out of time; its note-off goes with it. Far beyond any lateness a
# running agent shows (well under a millisecond), and beyond a flam a listener would hear as meant.
DROP_LATE_S = 0.25


class Agent(AgentBus, AgentReports):
    """`clock` and `network` put the agent in one event loop with the conductor and other agents
    (tests; protocol/virtual_time.py): `clock` is that loop's virtual clock, and then the notes are
    timed by the loop's timers instead of the timing thread, the output is stamped on that clock,
    and a model draws in the loop's thread; `network` is the in-memory bus (protocol/bus_memory.py)."""

    def __init__(self, ens: Ensemble, name: str, *, base_dir: Path, stats_path: Path | None = None,
                 clock: Callable[[], float] | None = None, network: MemoryNetwork | None = None,
                 model_host: str | None = None, output_host: str | None = None) -> None:
        self.ens = ens
        self.cfg: AgentConfig = ens.agent(name)
        self.name = name
        self.base_dir = base_dir
        self.stats_path = stats_path
        self.clock = time.monotonic if clock is None else clock
        self.in_loop = clock is not None
        self.network = network
        self.engine: Engine = make_engine(ens, self.cfg, base_dir, in_process=self.in_loop,
                                          model_host=model_host)
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
        self._player_recent: dict[float, int] = {}  # the player's latest notes: start -> pitch
        self.notes_sent = 0
        self.notes_committed = 0
        self.invalid_local = 0
        self.stale = 0
        self.seq = 0
        # The machine's output host (agents/output_host.py) plays the part when the launcher started one.
        self.output_host = None if self.in_loop else output_host
        self.output: Output | OutputLink | None = None
        self.scheduler: Scheduler | LoopScheduler | HostedScheduler | None = None
        self.bus: Bus | None = None
        self.sync_bus: Bus | None = None  # UDP pings beside an MQTT bus (bus.sync: udp)
        self.stuck_notes = 0
        self.unacked = Unacked()  # committed notes the recorder has not confirmed: sent again until it does
        self.yielding = Yielding(name, ens.meter, ens.timing.horizon_beats + ens.timing.commit_beats + 1.0)
        self.turn = commit_offset(ens, self.cfg)
        self.loop_priority = "normal"
        self._shut = False
        self._stopping = asyncio.Event()
        self.previous = load_previous_stats(stats_path)
        self.conductor_clock = ConductorClock(
            name, self.cfg.host == ens.conductor.host, self.previous.pop("offset_ms", None),
            target=ping_target(ens),
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        fault = PlanFault.from_env(self.name)  # a test hook (agents/faults.py); None unless set
        set_switch_interval(0.0005)
        if self.ens.timing.realtime and not self.in_loop and self.output_host is None:
            # The loop thread shares the GIL with the timing thread: if it were preempted while holding
            # it, the timing thread would wait however high its own priority. It is light (the model
            # runs in another process), so it runs at the timing threads' priority: one step below,
            # the other parts' timing threads, spinning at the beats they all share, kept it off
            # both cores while it held this process's GIL, and this part's note waited 0.2-2 ms
            # (docs/timing.md); at the same priority their spin's sched_yield lets it finish.
            self.loop_priority = request_realtime(DEFAULT_RT_PRIORITY)
        spec = output_spec(self.cfg, self.name, self.base_dir, self.params, clicks=self._clicks)
        link: OutputLink | None = None
        if self.output_host is not None:
            try:
                link = await asyncio.to_thread(
                    OutputLink.connect, self.output_host, os.environ.get(KEY_ENV, "").encode() or None,
                    self.name, spec, drop_after_s=DROP_LATE_S)
            except OutputError as exc:
                raise OutputError(f"agents.{self.name}.output ({self.cfg.output.type}): {exc}") from None
            link.on_written = self._count_onsets
            link.start_reading()
            self.output, self.scheduler = link, HostedScheduler(link)
        else:
            self.output = self._open_output(spec)
            if self.in_loop:
                self.scheduler = LoopScheduler(self._send, clock=self.clock)
            else:
                self.scheduler = Scheduler(self._send, clock=self.clock, realtime=self.ens.timing.realtime,
                                           drop_after_s=DROP_LATE_S, prepare=self._prepare)
        self.scheduler.start()
        # The output first (it starts by silencing the part's channels: a part restarted after a crash
        # stops what its last instance left sounding at once, not after its model has loaded).
        wait_ready = getattr(self.engine, "wait_ready", None)
        if wait_ready is not None:
            # Join the roster only once the model can play: a half-loaded agent would rest its first bars.
            ready = await asyncio.to_thread(wait_ready)
            log.info("%s: model ready on %s (%s KV cache, context of up to %s events)", self.name,
                     ready.providers, ready.cache_mode, ready.max_events)
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
                        if link is not None:
                            loops.start(link.watch(), "output host")
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

    def _open_output(self, spec: dict[str, Any]) -> Output:
        out = make_output(spec, where=f"agents.{self.name}.output",
                          clock=self.clock if self.in_loop else None)
        try:
            out.open()
        except OutputError as exc:  # one line naming the part's output and what it could not open
            raise OutputError(f"agents.{self.name}.output ({self.cfg.output.type}): {exc}") from None
        return out

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
        if self.output is not None:  # before the model, whose process may take a second to end
            self.output.close()
            self.stuck_notes = self.output.sounding()
        self.engine.close()
        self.write_stats()

    # -- output (timing thread) ---------------------------------------------------------------------
    def _send(self, ev: ScheduledEvent) -> float | None:
        out = self.output
        if not isinstance(out, Output):  # none yet, or the output host plays the part
            return None
        if ev.kind == "on":
            t = out.play(ev.note, due=ev.due)
            if ev.tag is not COUNT_IN:  # the part's notes, as the recording counts them
                self.notes_sent += 1
            return t
        return out.release(ev.note, due=ev.due)

    def _prepare(self, events: list[ScheduledEvent]) -> Dispatch:
        """A beat's events made ready before it, written together at it (agents/outputs/burst.py)."""
        out = self.output
        assert isinstance(out, Output)  # opened before the scheduler starts, closed after it stops
        burst = out.prepare([(ev.kind == "on", ev.note, ev.due) for ev in events])

        def write() -> list[SendResult]:
            results = out.send(burst)
            self._count_onsets(sum(1 for ev, r in zip(events, results, strict=True) if ev.kind == "on"
                                   and ev.tag is not COUNT_IN and not isinstance(r, Exception)))
            return results

        return write

    def _count_onsets(self, onsets: int) -> None:
        """The part's own notes that started (the count-in's clicks are not the part's)."""
        self.notes_sent += onsets

    # -- beats to this process's seconds ----------------------------------------------------------
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
        # The player's note that every agent has surely heard when it commits the ending, a turn
        # before its commit point reaches the downbeat: a later one may or may not have arrived yet
        # (one run voiced the chord under an E, another under the D that came a beat later).
        tempo = self.timeline.tempo_bpm if self.timeline is not None else float(self.ens.tempo)
        heard_by = stop - commit_distance(self.ens, tempo)
        heard = [start for start in self._player_recent if start <= heard_by - HEARD_GUARD_BEATS + 1e-9]
        player_last = self._player_recent[max(heard)] if heard else None
        for pitch in ending_pitches(self.ens, cfg, chord, player_last):
            note = Note(stop, hold, pitch, velocity, channel, self.name)
            self.scheduler.schedule(note)
            self.notes_committed += 1
            self.unacked.add(note, self.clock())  # the recording must not miss the last chord either
            await self.bus.publish(note)
