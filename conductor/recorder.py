"""Records every part heard on the bus into a MIDI file: one named track per part, human included.

Notes arrive stamped in beats, so the file is written in beats (480 ticks per beat) with the tempo
changes the conductor made at the beats they took effect; nothing depends on when packets arrived.
Chord plans are written the same way (a text event per plan, at the beat it took effect), so a plot
of the file shows the harmony as played after live edits, not the plan the YAML started with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import mido

from protocol.messages import Note, PlanState, note_key

PPQ = 480
PLAN_EVENT = "barcelona.plan "  # prefix of the conductor track's text events that carry a plan (JSON)


@dataclass
class Recorder:
    parts: list[tuple[str, int, int]]  # name, channel, program
    notes: dict[str, list[Note]] = field(default_factory=dict)
    tempos: list[tuple[float, float]] = field(default_factory=list)  # (beat, bpm)
    plans: list[tuple[float, PlanState]] = field(default_factory=list)  # (beat it took effect, plan)
    beats_per_bar: int = 4
    seen: set[tuple[str, float, int]] = field(default_factory=set)
    journal: IO[str] | None = None
    # part -> [(beat, controller, value)]: its volume and pan as set at the start and moved live
    controls: dict[str, list[tuple[float, int, int]]] = field(default_factory=dict)

    def keep_journal(self, path: Path, resume: bool) -> None:
        """Append every note to `path` as it is heard, so a conductor killed mid-set loses nothing:
        the restarted conductor reads the journal back (`resume`) and the final file has it all."""
        if resume and path.exists():
            for line in path.read_text().splitlines():
                try:
                    item = json.loads(line)
                    if "tempo" in item:
                        beat, bpm = item["tempo"]
                        self.tempo(beat, bpm, write=False)
                    elif "cc" in item:
                        part, beat, control, value = item["cc"]
                        self.control(part, beat, control, value, write=False)
                    elif "plan" in item:
                        self.plan(item["plan"][0], PlanState(*item["plan"][1:]), write=False)
                    else:
                        self.add(Note(**item), write=False)
                except (ValueError, TypeError, KeyError):
                    continue  # a line cut short by the kill
        self.journal = path.open("a" if resume else "w", encoding="utf-8")

    def add(self, note: Note, write: bool = True) -> bool:
        """Keep `note`; False when it is not kept (before beat 0, or already held)."""
        if note.start_beat < 0:
            return False
        key = (note.source, *note_key(note.start_beat, note.pitch))
        if key in self.seen:  # a note heard twice (sent again after an outage) is one note
            return False
        self.seen.add(key)
        self.notes.setdefault(note.source, []).append(note)
        if write and self.journal is not None:
            fields = ("start_beat", "duration_beats", "pitch", "velocity", "channel", "source")
            self.journal.write(json.dumps({k: getattr(note, k) for k in fields}) + "\n")
            self.journal.flush()
        return True

    def tempo(self, beat: float, bpm: float, write: bool = True) -> None:
        if not self.tempos or self.tempos[-1][1] != bpm:
            self.tempos.append((max(0.0, beat), bpm))
            if write and self.journal is not None:
                self.journal.write(json.dumps({"tempo": [max(0.0, beat), bpm]}) + "\n")
                self.journal.flush()

    def control(self, part: str, beat: float, control: int, value: int, write: bool = True) -> None:
        """A controller on `part`'s channel from `beat` on; a repeat of the value in force is dropped."""
        events = self.controls.setdefault(part, [])
        if next((v for _, c, v in reversed(events) if c == control), None) == value:
            return
        events.append((max(0.0, beat), control, value))
        if write and self.journal is not None:
            self.journal.write(json.dumps({"cc": [part, max(0.0, beat), control, value]}) + "\n")
            self.journal.flush()

    def plan(self, beat: float, plan: PlanState, write: bool = True) -> None:
        """Note the plan in force from `beat` on (a plan the same as the last one is not a change)."""
        if self.plans and _harmony(self.plans[-1][1]) == _harmony(plan):
            return
        beat = max(0.0, beat)
        self.plans.append((beat, plan))
        if write and self.journal is not None:
            item = {"plan": [beat, plan.epoch, plan.text, plan.loop, plan.key]}
            self.journal.write(json.dumps(item) + "\n")
            self.journal.flush()

    def count(self, part: str, until_beat: float | None = None) -> int:
        """The notes of `part` the saved file holds (`save` with the same `until_beat`)."""
        notes = self.notes.get(part, [])
        if until_beat is None:
            return len(notes)
        return sum(1 for n in notes if n.start_beat < until_beat)

    def drop_journal(self) -> None:
        """A journal kept only to survive a restart (no recording asked for) goes at a clean end."""
        if self.journal is not None:
            self.journal.close()
            Path(self.journal.name).unlink(missing_ok=True)
            self.journal = None

    def save(self, path: Path, until_beat: float | None = None) -> None:
        mid = mido.MidiFile(type=1, ticks_per_beat=PPQ)
        meta = mido.MidiTrack()
        meta.append(mido.MetaMessage("track_name", name="conductor", time=0))
        meta.append(mido.MetaMessage("time_signature", numerator=self.beats_per_bar, denominator=4, time=0))
        events = [
            (round(b * PPQ), mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
            for b, bpm in sorted(self.tempos or [(0.0, 120.0)])
        ]
        for b, p in self.plans:  # ASCII JSON: MIDI text events are bytes, chord symbols may not be
            text = PLAN_EVENT + json.dumps({"epoch": p.epoch, "text": p.text, "loop": p.loop, "key": p.key})
            events.append((round(b * PPQ), mido.MetaMessage("text", text=text)))
        _append_timed(meta, events)
        mid.tracks.append(meta)
        for name, channel, program in self.parts:
            track = mido.MidiTrack()
            track.append(mido.MetaMessage("track_name", name=name, time=0))
            timed: list[tuple[int, mido.Message]] = [
                (0, mido.Message("program_change", channel=channel, program=program))
            ]
            timed += [
                (round(beat * PPQ), mido.Message("control_change", channel=channel, control=cc, value=value))
                for beat, cc, value in self.controls.get(name, [])
                if until_beat is None or beat <= until_beat
            ]
            for n in self.notes.get(name, []):
                end = n.end_beat if until_beat is None else min(n.end_beat, until_beat)
                if end <= n.start_beat:
                    continue
                on, off = round(n.start_beat * PPQ), max(round(end * PPQ), round(n.start_beat * PPQ) + 1)
                timed.append(
                    (on, mido.Message("note_on", channel=n.channel, note=n.pitch, velocity=n.velocity))
                )
                timed.append((off, mido.Message("note_off", channel=n.channel, note=n.pitch, velocity=0)))
            _append_timed(track, timed)
            mid.tracks.append(track)
        path.parent.mkdir(parents=True, exist_ok=True)
        mid.save(str(path))
        if self.journal is not None:
            self.journal.close()
            Path(self.journal.name).unlink(missing_ok=True)
            self.journal = None


def _harmony(plan: PlanState) -> tuple[str, bool, str]:
    return plan.text, plan.loop, plan.key


def _append_timed(track: mido.MidiTrack, events: list[tuple[int, mido.Message | mido.MetaMessage]]) -> None:
    """Absolute ticks to delta times; at one tick: the program, controllers, note-offs, note-ons (a
    synth sets the sound before the notes it shapes; a re-struck key is released first)."""
    order = {"program_change": 0, "control_change": 1, "note_off": 2}
    events.sort(key=lambda e: (e[0], order.get(getattr(e[1], "type", ""), 3)))
    now = 0
    for tick, msg in events:
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
