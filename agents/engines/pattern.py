"""A deterministic engine: voices the chord plan in the part's range on the YAML's rhythm.

It exists so the whole spine (clock, bus, scheduler, outputs, recorder) can be tested and demoed
without a model, and as a fallback a performer can trust.
"""

from __future__ import annotations

import math

from agents.engines import PlanContext
from protocol.ensemble import AgentConfig, Hit
from protocol.harmony import Chord
from protocol.messages import Note


class PatternEngine:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.low, self.high = cfg.range

    def hear(self, note: Note) -> None:
        """The pattern engine plays its pattern whatever the others do."""

    def close(self) -> None:
        """Nothing to release."""

    def plan(self, start_beat: float, end_beat: float, ctx: PlanContext) -> list[Note]:
        if ctx.params.muted:
            return []
        bpb = ctx.beats_per_bar
        notes: list[Note] = []
        first_bar = math.floor(start_beat / bpb)
        last_bar = math.floor(end_beat / bpb)
        for bar in range(first_bar, last_bar + 1):
            for i, hit in enumerate(self.cfg.engine.rhythm):
                if hit.beat >= bpb:
                    continue
                beat = bar * bpb + hit.beat
                if not start_beat <= beat < end_beat or not self._keep(bar, i, ctx.params.density):
                    continue
                chord = ctx.plan.chord_at(beat, bpb)
                duration = (
                    min(hit.duration, bpb * (bar + 1) - beat)
                    if self.cfg.engine.voicing != "drums"
                    else hit.duration
                )
                for pitch in self._pitches(hit, chord, i):
                    notes.append(Note(beat, duration, pitch, hit.velocity, self.cfg.channel, self.cfg.name))
        return notes

    def _keep(self, bar: int, index: int, density: float) -> bool:
        """Thin or keep hits deterministically so the same density always plays the same notes."""
        if density >= 1.0:
            return True
        return ((bar * 7919 + index * 104729) % 1000) / 1000.0 < density

    def _pitches(self, hit: Hit, chord: Chord | None, index: int) -> list[int]:
        voicing = self.cfg.engine.voicing
        if voicing == "drums":
            return [hit.pitch if hit.pitch is not None else 42]
        if chord is None or not chord.tones:
            return []
        if voicing == "root":
            return [self._lowest(chord.bass)]
        if voicing == "root_fifth":
            pc = chord.bass if index % 2 == 0 else chord.tones[min(2, len(chord.tones) - 1)]
            return [self._lowest(pc)]
        if voicing == "arpeggio":
            tones = self._stack(chord)
            return [tones[index % len(tones)]] if tones else []
        return self._stack(chord)[:4]

    def _lowest(self, pc: int) -> int:
        """The lowest pitch of a pitch class in range (bass lines sit low)."""
        pitch = self.low + (pc - self.low) % 12
        return pitch if pitch <= self.high else self.low

    def _stack(self, chord: Chord) -> list[int]:
        """A close voicing in the middle of the range: each chord tone once, ascending."""
        centre = (self.low + self.high) // 2 - 6
        out = []
        for pc in chord.tones[:4]:
            pitch = centre + (pc - centre) % 12
            while pitch > self.high:
                pitch -= 12
            while pitch < self.low:
                pitch += 12
            if self.low <= pitch <= self.high:
                out.append(pitch)
        return sorted(set(out))
