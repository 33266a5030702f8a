"""Which part the player is playing, heard bar by bar, and which agents make room for it.

What a bar of the player's notes reads as is conductor/bar_parts.py's; the player's roles with
hysteresis, judged at each bar line and part-way through a bar, are conductor/role_recognizer.py's.
`RoleFollower` turns the roles into the agents that yield: each yields from a bar line its notes
are not yet committed for, and comes back at such a bar line.
"""

from __future__ import annotations

import math
from typing import Any

from conductor.role_recognizer import RoleRecognizer
from protocol.ensemble import AUTO_ROLE, NO_ROLE, Ensemble
from protocol.instruments import Role
from protocol.messages import HeldNote, Note, RoleState

TRANSIT_S = 0.1  # for a message to reach every agent, their clocks' disagreement included
TURN_BEATS = 0.4  # agents/arrangement.py's COMMIT_STEP_BEATS (the conductor does not import agents/)
# how long after the moment to judge a bar part-way a tick may come and still judge it (well under the
# message's transit time, which the lead allows for)
LATE_OK_S = 0.03


def commit_lead(ens: Ensemble, tempo_bpm: float) -> float:
    """How far ahead of now the agents may have committed their notes, in beats: their commit
    distance (`timing.commit_beats`, or the output latency where that is longer), a step for each
    model part that commits a turn ahead of another (agents/arrangement.py), and the time for the
    message to reach them. A yield announced this far ahead of its bar line cuts no note sent."""
    timing = ens.timing
    beats_per_s = tempo_bpm / 60.0
    models = sum(1 for a in ens.agents if a.engine.type == "onnx" and a.role != "drums")
    return (max(timing.commit_beats, timing.latency_ms / 1000.0 * beats_per_s)
            + TURN_BEATS * max(0, models - 1) + TRANSIT_S * beats_per_s)


def first_free_bar_line(beat: float, lead_beats: float, beats_per_bar: int) -> float:
    """The first bar line at least `lead_beats` after `beat`: agents have committed their notes
    up to about then, so a yield or a return there cuts no note already sent."""
    return float(max(1, math.ceil((beat + lead_beats - 1e-9) / beats_per_bar)) * beats_per_bar)


class RoleFollower:
    """`human.role` applied: from the roles heard (or the part named) to the agents that yield.

    `yields` maps an agent to (from, until or None), bar lines in beats; an item stays a bar past
    its `until` so every agent has heard the return, then goes (no item: the agent plays)."""

    def __init__(self, ens: Ensemble) -> None:
        h = ens.human
        self.mode = NO_ROLE if h is None or h.source.type == "none" else h.role
        self.bpb = ens.meter
        self.recognizer = RoleRecognizer(ens.meter, return_bars=h.return_bars if h else 2)
        self.agent_roles: dict[str, str] = {a.name: a.role or "" for a in ens.agents}
        self.channel = h.channel if h else 0
        self.yields: dict[str, tuple[float, float | None]] = {}
        self.epoch = 0
        self.changes: list[dict[str, Any]] = []  # for the report: what changed at which bar
        self.yielded_bars: dict[str, int] = {}
        self._decided = 0.0  # the last bar line the bar before it was judged at
        self._early = -1.0  # the bar (its first beat) last judged part-way through

    def note_on(self, held: HeldNote) -> None:
        self.recognizer.note_on(held.pitch, held.velocity, held.start_beat, held.channel)

    def note(self, note: Note) -> None:
        self.recognizer.note(note.start_beat, note.duration_beats, note.pitch, note.velocity, note.channel)

    def taken(self) -> set[str]:
        """The agents whose part the player holds now."""
        r = self.recognizer
        if self.mode == NO_ROLE:
            return set()
        if self.mode == AUTO_ROLE:
            return {a for a, role in self.agent_roles.items() if role in r.roles}
        if not r.playing:
            return set()
        if self.mode in self.agent_roles:
            return {self.mode}
        return {a for a, role in self.agent_roles.items() if role == self.mode}

    def at_beat(self, beat: float, lead_beats: float, late_ok_beats: float = 0.06) -> list[RoleState]:
        """At each tick of the clock (`beat` need not be whole): at a bar line, judge the bar just
        played; at the last moment a change still reaches every agent before the next bar line
        (`lead_beats` before it), judge the bar so far. Both judge at their musical moment, not the
        tick's, so the same playing gives the same roles whatever the tick's phase; a tick more
        than `late_ok_beats` past the part-way moment leaves that bar to its bar line. Returns the
        message if anything changed."""
        if beat <= 0:
            return []
        bpb = self.bpb
        bar_line = math.floor(beat / bpb + 1e-9) * bpb
        if bar_line < self._decided:  # the beat went back (a new start): judge from here on
            self._decided, self._early = bar_line, bar_line - bpb
        next_line = bar_line + bpb
        judge_bar = bar_line > self._decided
        judge_early = self._early < bar_line and beat >= next_line - lead_beats
        if not (judge_bar or judge_early):
            return []
        before = (self.recognizer.roles, self.recognizer.playing, dict(self.yields))
        if judge_bar:
            self._decided = bar_line
            self.recognizer.decide(float(bar_line))
            for a, (start, until) in self.yields.items():
                if start <= bar_line - bpb and (until is None or until >= bar_line):
                    self.yielded_bars[a] = self.yielded_bars.get(a, 0) + 1
            self._follow(float(bar_line), first_free_bar_line(float(bar_line), lead_beats, bpb))
        if judge_early:
            self._early = bar_line
            moment = next_line - lead_beats
            if beat <= moment + late_ok_beats:  # else too late for this bar: its bar line judges it
                self.recognizer.decide_early(float(bar_line), moment)
                self._follow(moment, float(next_line))
        if (self.recognizer.roles, self.recognizer.playing, self.yields) == before:
            return []
        self.epoch += 1
        self.changes.append({"bar": int(beat // bpb) + 1, "player": sorted(self.recognizer.roles),
                             "yields": self._bars()})
        del self.changes[:-200]
        return [self.message()]

    def _follow(self, beat: float, line: float) -> None:
        """The yields after the roles changed at `beat`: a change takes effect at bar line `line`."""
        taken = self.taken()
        for a in sorted(set(self.agent_roles)):
            item = self.yields.get(a)
            pending = item is not None and (item[1] is None or item[1] > beat)
            if a in taken and not pending:
                self.yields[a] = (line, None)
            elif a in taken and item is not None and item[1] is not None:
                self.yields[a] = (item[0], None)  # back before its return came: it stays out
            elif a not in taken and item is not None and item[1] is None:
                if item[0] >= line:
                    del self.yields[a]  # left before the yield began: it never stops
                else:
                    self.yields[a] = (item[0], line)
            elif item is not None and item[1] is not None and item[1] + self.bpb <= beat:
                del self.yields[a]

    def ending_role(self) -> Role:
        """How a replayed player ends the piece: on the chord's bass when it has the bass (its agent
        rests, so nobody else plays the root), else on the chord tone nearest its last note."""
        return "bass" if "bass" in self.recognizer.roles else "melody"

    def message(self) -> RoleState:
        return RoleState(self.epoch, ",".join(sorted(self.recognizer.roles)), RoleState.pack(self.yields))

    def _bars(self) -> dict[str, dict[str, int | None]]:
        """The yields in bars as every display counts them (from 1)."""
        def bar(beat: float | None) -> int | None:
            return None if beat is None else int(beat // self.bpb) + 1

        return {a: {"from_bar": bar(f), "until_bar": bar(u)} for a, (f, u) in sorted(self.yields.items())}

    def yielded_at(self, beat: float) -> list[str]:
        """The agents silent at `beat` (between their yield and their return)."""
        return sorted(a for a, (f, u) in self.yields.items() if f <= beat and (u is None or beat < u))

    def stats(self, beat: float) -> dict[str, Any]:
        """For the status (display, JSON) and the report."""
        return {
            "mode": self.mode,
            "parts": dict(self.agent_roles),
            "player": sorted(self.recognizer.roles),
            "last_bar": sorted(self.recognizer.last_bar),
            "yielded": self.yielded_at(beat),
            "yields": self._bars(),
            "yielded_bars": dict(sorted(self.yielded_bars.items())),
            "changes": self.changes[-32:],
        }
