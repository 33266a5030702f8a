"""A drummer: a style's groove, varied bar to bar, a fill at the end of every phrase and before the
chord plan loops, a crash and kick on the downbeat after it, velocities that follow the metre.

The density set live over OSC thins the kit in the order a drummer would (ghost notes, then off-beat
cymbals, then on-beat cymbals and extra kicks; the downbeat kick and the backbeat stay) or thickens it
(sixteenth cymbals, more ghost notes). How the bars are built: agents/engines/drum_bar.py; what each
style plays: agents/engines/drum_patterns.py; for the user: docs/drums.md.
"""

from __future__ import annotations

import math
import secrets
from collections import OrderedDict

from agents.arrangement import agent_seed
from agents.dynamics import PlayerDynamics, level_velocity
from agents.engines import PlanContext
from agents.engines.drum_bar import Stroke, bar_role, compose_bar
from agents.engines.drum_patterns import groove_for
from protocol.ensemble import AgentConfig, Ensemble
from protocol.messages import HeldNote, Note

_CACHE_BARS = 64  # bars kept composed: the agent plans a few beats ahead, many times a bar


def drum_seed(ens: Ensemble, cfg: AgentConfig) -> int:
    """engine.seed, else the ensemble's seed offset by the agent's place (two parts of one file
    never play from one seed), else a fresh one, so an unseeded run differs from the last."""
    return agent_seed(ens, cfg, secrets.randbelow(2**31))


class DrumsEngine:
    def __init__(self, cfg: AgentConfig, seed: int, human: str | None = None) -> None:
        """``human``: the player's part name, whose dynamics the kit follows (agents/dynamics.py)."""
        self.cfg = cfg
        self.seed = seed
        self.human = human
        self.player_dynamics = PlayerDynamics()
        self._levels: dict[tuple[int, int], float] = {}
        self.style = cfg.engine.style
        self.phrase_bars = cfg.engine.phrase_bars
        self.fills = cfg.engine.fills
        groove_for(self.style, 4)  # an unknown style fails here, at start, not mid-performance
        self._bars: OrderedDict[tuple[int, int, int], tuple[int, tuple[Stroke, ...]]] = OrderedDict()

    def hear(self, note: Note) -> None:
        """The drummer keeps the groove, and plays as loud as the player plays."""
        if self.human is not None and note.source == self.human:
            self.player_dynamics.add(note.start_beat, note.pitch, note.velocity)

    def hear_held(self, note: HeldNote) -> None:
        """The player's note at its note-on: its velocity counts from then, as the model parts' do."""
        if self.human is not None and note.source == self.human:
            self.player_dynamics.add(note.start_beat, note.pitch, note.velocity)

    def close(self) -> None:
        """Nothing to release."""

    def _level(self, bar: int, bpb: int, dynamics: int) -> float:
        """The part's level for a bar (live from OSC; the YAML's at start), moved toward the player's,
        as a factor on the strokes' velocities: fixed by the bar's first window, so a note heard
        while the bar is being played never changes it halfway."""
        key = (bar, dynamics)
        if key not in self._levels:
            level = self.player_dynamics.level(bar * bpb, dynamics, bpb, "drums")
            self._levels[key] = level / level_velocity("mf")
            while len(self._levels) > 64:
                self._levels.pop(next(iter(self._levels)))
        return self._levels[key]

    def plan(self, start_beat: float, end_beat: float, ctx: PlanContext) -> list[Note]:
        if ctx.params.muted or end_beat <= start_beat:
            return []
        bpb = ctx.beats_per_bar
        density = ctx.params.density
        notes: list[Note] = []
        for bar in range(math.floor(start_beat / bpb), math.ceil(end_beat / bpb)):
            level = self._level(bar, bpb, ctx.params.dynamics)
            spb, strokes = self.bar(bar, bpb, len(ctx.plan.bars))
            duration = min(0.25, 0.5 / spb)  # half a grid step: off before the same drum strikes again
            for s in strokes:
                beat = bar * bpb + s.step / spb
                if density >= s.keep and start_beat <= beat < end_beat:
                    velocity = max(1, min(127, round(s.velocity * level)))
                    notes.append(Note(beat, duration, s.pitch, velocity, self.cfg.channel, self.cfg.name))
        return notes

    def bar(self, bar: int, beats_per_bar: int, plan_bars: int) -> tuple[int, tuple[Stroke, ...]]:
        """(steps per beat, every stroke of the bar at any density), composed once and kept."""
        key = (bar, beats_per_bar, plan_bars)
        found = self._bars.get(key)
        if found is not None:
            self._bars.move_to_end(key)
            return found
        groove = groove_for(self.style, beats_per_bar)
        role = bar_role(bar, plan_bars, self.phrase_bars)
        strokes = compose_bar(groove, self.seed, bar, role, fills=self.fills, phrase_bars=self.phrase_bars)
        found = (groove.steps_per_beat, tuple(strokes))
        self._bars[key] = found
        if len(self._bars) > _CACHE_BARS:
            self._bars.popitem(last=False)
        return found
