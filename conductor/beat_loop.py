"""The conductor's beat, a mixin of `conductor.conductor.Conductor`: every few milliseconds while the
band plays it replays the file human's notes and drains the MIDI input; at each whole beat it follows
the player's harmony and tempo and sends the beat tick to the displays; and it ends a `--bars` run
once the final chord has been released."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from conductor.roles import LATE_OK_S, commit_lead
from conductor.state import MIN_CHANGE_LEAD_S
from conductor.status_json import bar_and_beat
from conductor.tempo_follow import TempoFollower
from protocol.form import final_chord
from protocol.harmony import Chord
from protocol.messages import Note
from protocol.status_messages import BeatTick

if TYPE_CHECKING:
    from conductor.control import Displays
    from conductor.human import FileHuman, LiveHuman, MidiInput
    from conductor.listener import Heard, Listener
    from conductor.recorder import Recorder
    from conductor.roles import RoleFollower
    from conductor.state import ConductorState
    from conductor.status_json import StatusJson
    from conductor.substitution import SubstitutionHearing
    from protocol.ensemble import Ensemble
    from protocol.timeline import Timeline

TICK_S = 0.005
# The transport stops this long after the final chord's release, so each agent's note-offs go out
# at their beat rather than being forced by the stop a moment early.
RELEASE_MARGIN_S = 0.05


class BeatLoop:
    """The beat of `conductor.conductor.Conductor`, a mixin of it: the state named below is the
    conductor's."""

    ens: Ensemble
    clock: Callable[[], float]
    bars: int | None
    state: ConductorState
    listener: Listener
    heard: Heard | None
    substitutions: SubstitutionHearing | None
    roles: RoleFollower
    tempo_follower: TempoFollower
    following_tempo: bool
    recorder: Recorder
    ending_beats: float
    end_beat: float | None
    finished: asyncio.Event
    last_beat_tick: int | None
    human_file: FileHuman | None
    human_live: LiveHuman | None
    midi_in: MidiInput | None
    human_ended_for: float | None
    status_json: StatusJson
    displays: Displays
    surface: Any

    if TYPE_CHECKING:
        async def _publish(self, msg: Any) -> None: ...
        def save_state(self) -> None: ...
        def stats(self) -> dict[str, Any]: ...
        def _onset(self, beat: float) -> None: ...
        async def _human_note(self, note: Note) -> None: ...
        async def _human_ending(self, tl: Timeline) -> None: ...
        async def _drain_midi_in(self, tl: Timeline) -> None: ...

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
