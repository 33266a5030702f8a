"""The player's notes reaching the band, a mixin of `conductor.conductor.Conductor`: from a replayed
MIDI file, a live MIDI port or the OSC surface, each note goes to the listener, the role follower
and the tempo follower, into the recording, and onto the bus. A key is heard at its note-on
(`HeldNote`); the `Note` follows at its note-off, with the length it was held (conductor/human.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conductor.control import ControlError
from conductor.human import FileHuman, LiveHuman, MidiInput, read_midi_notes
from protocol.form import ending_voicing, final_chord
from protocol.messages import HeldNote, Note

if TYPE_CHECKING:
    from conductor.listener import Listener
    from conductor.recorder import Recorder
    from conductor.roles import RoleFollower
    from conductor.state import ConductorState
    from conductor.tempo_follow import TempoFollower
    from protocol.ensemble import Ensemble
    from protocol.timeline import Timeline


class PlayerInput:
    """The human part of `conductor.conductor.Conductor`, a mixin of it: the state named below is the
    conductor's."""

    ens: Ensemble
    base_dir: Path
    clock: Callable[[], float]
    state: ConductorState
    listener: Listener
    roles: RoleFollower
    tempo_follower: TempoFollower
    recorder: Recorder
    ending_beats: float
    end_beat: float | None
    human_file: FileHuman | None
    human_live: LiveHuman | None
    midi_in: MidiInput | None
    human_last: Note | None

    if TYPE_CHECKING:
        async def _publish(self, msg: Any) -> None: ...

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
