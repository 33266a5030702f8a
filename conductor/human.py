"""The human-input bridge: the human's notes, stamped in beats, onto the bus.

Three sources: a MIDI file replayed as a "virtual human" (demos and tests), a MIDI input port, and OSC
notes from a surface. A note is published when it ends, with its duration: the model's event format
needs a duration, and a held key has none yet (docs/timing.md explains the choice).
"""

from __future__ import annotations

import bisect
import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido

from protocol.fields import check_int
from protocol.messages import HeldNote, Note


@dataclass(frozen=True, slots=True)
class FileNote:
    start: float
    duration: float
    pitch: int
    velocity: int


def read_midi_notes(path: Path, transpose: int = 0) -> list[FileNote]:
    """All notes of a MIDI file in beats (tempo-independent: the conductor sets the tempo)."""
    try:
        mid = mido.MidiFile(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"human.source.path: cannot read MIDI file {path}: {exc}") from exc
    ppq = mid.ticks_per_beat
    tick = 0
    held: dict[tuple[int, int], tuple[int, int]] = {}
    notes: list[FileNote] = []
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            held[(msg.channel, msg.note)] = (tick, msg.velocity)
        elif msg.type in ("note_off", "note_on"):
            start = held.pop((msg.channel, msg.note), None)
            if start is not None and tick > start[0]:
                pitch = min(127, max(0, msg.note + transpose))
                notes.append(FileNote(start[0] / ppq, (tick - start[0]) / ppq, pitch, start[1]))
    if not notes:
        raise ValueError(f"human.source.path: {path} holds no notes")
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


class FileHuman:
    """Replays a file from beat 0, looping on whole bars: each note is announced at its start (a
    HeldNote, as a live player's note-on) and published whole as it ends."""

    def __init__(
        self, notes: list[FileNote], name: str, channel: int, beats_per_bar: int, loop: bool
    ) -> None:
        self.name, self.channel, self.loop = name, channel, loop
        end = max(n.start + n.duration for n in notes)
        self.length = max(1, math.ceil(end / beats_per_bar - 1e-9)) * beats_per_bar
        self.by_end = sorted(notes, key=lambda n: n.start + n.duration)
        self.ends = [n.start + n.duration for n in self.by_end]
        self.cycle = 0
        self.index = 0
        self.done = False
        self.by_start = sorted(notes, key=lambda n: n.start)
        self.starts = [n.start for n in self.by_start]
        self.start_cycle = 0
        self.start_index = 0

    def started(self, now_beat: float) -> list[HeldNote]:
        """Notes that have begun by now_beat and were not yet announced."""
        out: list[HeldNote] = []
        while self.loop or self.start_cycle == 0:
            if self.start_index >= len(self.by_start):
                if not self.loop:
                    break
                self.start_cycle += 1
                self.start_index = 0
                continue
            n = self.by_start[self.start_index]
            start = n.start + self.start_cycle * self.length
            if start > now_beat:
                break
            out.append(HeldNote(start, n.pitch, n.velocity, self.channel, self.name))
            self.start_index += 1
        return out

    def due(self, now_beat: float) -> list[Note]:
        """Notes that have ended by now_beat and were not yet published."""
        out: list[Note] = []
        while not self.done:
            offset = self.cycle * self.length
            if self.index >= len(self.by_end):
                if not self.loop:
                    self.done = True
                    break
                self.cycle += 1
                self.index = 0
                continue
            n = self.by_end[self.index]
            if n.start + n.duration + offset > now_beat:
                break
            out.append(Note(n.start + offset, n.duration, n.pitch, n.velocity, self.channel, self.name))
            self.index += 1
        return out

    def skip_to(self, beat: float) -> None:
        """Jump past notes before `beat` (a restarted conductor resumes mid-piece)."""
        self.cycle = max(0, math.floor(beat / self.length))
        self.index = bisect.bisect_right(self.ends, beat - self.cycle * self.length)
        self.start_cycle = self.cycle
        self.start_index = bisect.bisect_right(self.starts, beat - self.cycle * self.length)


class LiveHuman:
    """Held notes from a MIDI port or OSC: note-on opens, note-off publishes the finished note."""

    def __init__(self, name: str, channel: int) -> None:
        self.name, self.channel = name, channel
        self.held: dict[int, tuple[float, int]] = {}

    def note_on(self, pitch: Any, velocity: Any, beat: float) -> Note | None:
        pitch = check_int("human.note.pitch", pitch, 0, 127)
        velocity = check_int("human.note.velocity", velocity, 0, 127)
        if velocity == 0:
            return self.note_off(pitch, beat)
        previous = self.note_off(pitch, beat) if pitch in self.held else None
        self.held[pitch] = (beat, velocity)
        return previous

    def note_off(self, pitch: Any, beat: float) -> Note | None:
        pitch = check_int("human.note.pitch", pitch, 0, 127)
        start = self.held.pop(pitch, None)
        if start is None:
            return None
        return Note(start[0], max(beat - start[0], 1e-3), pitch, start[1], self.channel, self.name)


class MidiInput:
    """A MIDI input port feeding a queue of (monotonic time, mido message) for the bridge.

    A reader thread drains rtmidi's own queue instead of using its callback: under load the callback
    path has been seen to deliver a burst as copies of its first message. The port is found as every
    MIDI port is (protocol/midi_ports.py); without one, a virtual input `human in` is opened.
    """

    POLL_S = 0.0005

    def __init__(self, port: str | None, api: str = "auto") -> None:
        from protocol.midi_backend import midi_backend_error

        if (error := midi_backend_error()) is not None:
            raise ValueError(f"human.source: {error}")
        from protocol.midi_ports import MidiPortError, open_port

        self.queue: queue.Queue[tuple[float, mido.Message]] = queue.Queue()
        try:
            opened = open_port("in", port=port, api=api, client_name="barcelona-human",
                               virtual_name="human in", what="human.source.port").client
        except MidiPortError as exc:
            raise ValueError(str(exc)) from None
        self._midi = opened
        self._running = True
        self._thread = threading.Thread(target=self._read, name="midi-in", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        midi = self._midi
        while self._running:
            event = midi.get_message()
            if event is None:
                time.sleep(self.POLL_S)
                continue
            try:
                self.queue.put((time.monotonic(), mido.Message.from_bytes(event[0])))
            except ValueError:
                continue

    def close(self) -> None:
        self._running = False
        self._thread.join(0.5)
        self._midi.close_port()
