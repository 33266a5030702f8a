"""The conductor's state: the one source of truth for time, harmony and the mix.

Pure and clock-injected: every transition takes `now` and returns the messages to broadcast, so
tests drive it by hand and the process only has to publish what comes back. The state can be saved
and loaded so a restarted conductor resumes tempo, plan and bar position.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from conductor.substitution import Substitution
from protocol.ensemble import AgentConfig
from protocol.harmony import ChordPlan
from protocol.instruments import DYNAMICS
from protocol.messages import AgentParams, Control, PlanState
from protocol.mix import DEFAULT_DYNAMICS, DEFAULT_PAN, DEFAULT_VOLUME, dynamics_velocity
from protocol.status_messages import Roster
from protocol.timeline import Timeline

MIN_CHANGE_LEAD_S = 0.1


@dataclass
class Mix:
    """One agent's requested settings; `muted` in AgentParams also folds in other agents' solo."""

    mute: bool = False
    solo: bool = False
    temperature: float = 1.0
    density: float = 1.0
    top_p: float = 0.98
    top_k: int = 20
    volume: int = DEFAULT_VOLUME
    pan: float = DEFAULT_PAN
    dynamics: int = DYNAMICS[DEFAULT_DYNAMICS]

    @classmethod
    def of(cls, cfg: AgentConfig) -> Mix:
        """Where an agent starts: its YAML's engine settings and mix, so the first params the
        conductor sends repeat what the agent already plays rather than resetting it."""
        e = cfg.engine
        return cls(temperature=e.temperature, density=e.density, top_p=e.top_p, top_k=e.top_k,
                   volume=cfg.volume, pan=cfg.pan, dynamics=dynamics_velocity(cfg.dynamics))


@dataclass
class ConductorState:
    timeline: Timeline
    plan: ChordPlan
    plan_epoch: int = 0
    agents: tuple[str, ...] = ()
    mix: dict[str, Mix] = field(default_factory=dict)
    params_epoch: int = 0
    heard: dict[str, float] = field(default_factory=dict)
    roster_epoch: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    # How far ahead agents commit notes (timing.commit_beats, timing.latency_ms): a /stop's final
    # downbeat is the first bar line beyond it, so no agent has a note past the end in hand.
    commit_beats: float = 1.0
    latency_s: float = 0.15
    following: bool = False  # the plan is the chord and key heard from the player
    written: ChordPlan | None = None  # the written plan, kept while following, back on `chords plan`
    follow_tempo: bool | None = None  # set by /follow_tempo (None: as the YAML says)
    # the written plan while a chord of it is replaced by the one the player plays (conductor/
    # substitution.py), until the beat that chord's span ends
    unsubstituted: ChordPlan | None = None
    substituted_until: float = -math.inf
    # the chart's chord after the substitute is the same chord of it (a one-chord vamp): the chart
    # must be back before the agents commit that chord, not when it starts
    substituted_vamp: bool = False
    substitutions: bool | None = None  # set by /substitutions (None: as the YAML says)

    @property
    def chart(self) -> ChordPlan:
        """The plan as written (or as last edited), without a substitution the player made."""
        return self.unsubstituted or self.plan

    # -- messages ---------------------------------------------------------------------------------
    def plan_message(self) -> PlanState:
        return PlanState(self.plan_epoch, self.plan.to_text(), self.plan.loop, self.plan.key)

    def params_messages(self) -> list[AgentParams]:
        any_solo = any(m.solo for m in self.mix.values())
        out = []
        for name in self.agents:
            m = self.mix.setdefault(name, Mix())
            muted = m.mute or (any_solo and not m.solo)
            out.append(
                AgentParams(name, self.params_epoch, muted, m.temperature, m.density, m.top_p, m.top_k,
                            m.volume, m.pan, m.dynamics)
            )
        return out

    def roster_message(self, now: float, timeout_s: float) -> Roster:
        alive = sorted(a for a, t in self.heard.items() if now - t <= timeout_s)
        return Roster(self.roster_epoch, ",".join(alive))

    # -- roster -----------------------------------------------------------------------------------
    def heartbeat(self, agent: str, now: float) -> bool:
        """Note an agent's heartbeat; True when it (re)joined, so the caller re-sends state at once."""
        joined = agent not in self.heard
        self.heard[agent] = now
        if joined:
            self.roster_epoch += 1
        return joined

    def expire(self, now: float, timeout_s: float) -> list[str]:
        gone = [a for a, t in self.heard.items() if now - t > timeout_s]
        for a in gone:
            del self.heard[a]
        if gone:
            self.roster_epoch += 1
        return gone

    # -- controls ---------------------------------------------------------------------------------
    def apply(self, ctl: Control, now: float) -> list[Any]:
        """Apply a validated control; returns the state messages that changed."""
        p, v = ctl.param, ctl.value
        if ctl.target:
            return self._apply_agent(ctl)
        if p == "tempo":
            tl = self.timeline
            beat = tl.settled(now).beat_at(now)
            next_bar = (math.floor(beat / tl.beats_per_bar) + 1) * tl.beats_per_bar
            if (next_bar - beat) * 60.0 / tl.tempo_at_beat(beat) < MIN_CHANGE_LEAD_S:
                # Too close to the bar line for every agent to hear it in time: take the next one.
                next_bar += tl.beats_per_bar
            self.timeline = tl.with_tempo(float(v), next_bar, now)
            return [self.timeline]
        if p == "play":
            if float(v) <= 0 or self.timeline.playing:
                return []
            start = math.ceil(self.timeline.beat_origin)
            self.timeline = self.timeline.started(now, at_beat=start, delay_s=60.0 / self.timeline.tempo_bpm)
            return [self.timeline]
        if p == "stop":
            if float(v) <= 0 or not self.timeline.playing:
                return []
            self.timeline = self._stop(now)
            return [self.timeline]
        if p in ("chords", "plan", "bar") and self.unsubstituted is not None:
            # an edit or a switch applies to the plan as written, not to the player's substitution;
            # a refused one leaves the substitution as it was (the agents still play it)
            kept = (self.plan, self.unsubstituted, self.plan_epoch)
            self.plan, self.unsubstituted = self.chart, None
            self.plan_epoch += 1
            try:
                return self._apply_plan(p, v) or [self.plan_message()]
            except Exception:
                self.plan, self.unsubstituted, self.plan_epoch = kept
                raise
        return self._apply_plan(p, v)

    def _apply_plan(self, p: str, v: float | str) -> list[Any]:
        """`/chords`, `/plan` and `/bar`: the messages that changed (raises on a refused edit)."""
        if p == "chords":
            return self._set_following(str(v))
        if p in ("plan", "bar") and self.following:
            # editing the written plan means playing it: following stops, the edit applies to it
            self.following, self.plan, self.written = False, self.written or self.plan, None
        if p == "plan":
            self.plan = ChordPlan.parse(str(v), loop=self.plan.loop, key=self.plan.key)
        elif p == "bar":
            number, _, symbols = str(v).partition(" ")
            n, length = int(number), len(self.plan.bars)
            if not 1 <= n <= length + 1:  # bars count from 1, as every display counts them
                raise ValueError(f"bar: {n} is outside 1..{length + 1} (1 is the first, {length + 1} adds)")
            self.plan = self.plan.with_bar(n - 1, tuple(symbols.split()))
        else:
            raise ValueError(f"param: unknown ensemble control {p!r}")
        self.plan_epoch += 1
        return [self.plan_message()]

    def _stop(self, now: float) -> Timeline:
        """A /stop ends the piece at the next bar line the agents can still reach (every part holds
        the final chord there, then the conductor stops the transport); a second /stop while that
        end is on its way, or one during the held chord, stops at once."""
        tl = self.timeline.settled(now)
        beat = tl.beat_at(now)
        lead = max(self.commit_beats, (self.latency_s + MIN_CHANGE_LEAD_S) * tl.tempo_at_beat(beat) / 60.0)
        bar_line = max(1, math.ceil((beat + lead) / tl.beats_per_bar)) * tl.beats_per_bar
        if tl.stop_beat > 0.0 and bar_line >= tl.stop_beat:
            return tl.stopped(now)
        return replace(tl, epoch=tl.epoch + 1, stop_beat=float(bar_line))

    def _set_following(self, mode: str) -> list[Any]:
        mode = mode.strip().lower()
        if mode not in ("follow", "plan"):
            raise ValueError(f"chords: expected 'follow' or 'plan', got {mode[:40]!r}")
        if (mode == "follow") == self.following:
            return []
        if mode == "follow":  # the plan changes at the next chord heard, not now
            self.following, self.written = True, self.plan
            return []
        self.following, self.plan, self.written = False, self.written or self.plan, None
        self.plan_epoch += 1
        return [self.plan_message()]

    def follow(self, chord: str, key: str) -> list[PlanState]:
        """The chord and key heard now become the plan, when following and when they changed."""
        if not self.following:
            return []
        plan = ChordPlan.parse(chord, loop=True, key=key)
        if plan.bars == self.plan.bars and plan.key == self.plan.key:
            return []
        if self.written is None:
            self.written = self.plan
        self.plan = plan
        self.plan_epoch += 1
        return [self.plan_message()]

    def substitute(self, sub: Substitution | None, beat: float, beats_per_bar: int,
                   lead: float = 0.0) -> list[PlanState]:
        """At a beat onset of a written plan: the player's substitution (or None) over the chart, and
        the chart as written again once a substitution's span is over. ``lead``: how far ahead the
        agents commit, in beats (a vamp's chart must be back that far ahead of its next chord)."""
        if self.following:
            return []
        changed = False
        ends = self.substituted_until - (lead if self.substituted_vamp else 0.0)
        if self.unsubstituted is not None and beat >= ends:
            self.plan, self.unsubstituted = self.unsubstituted, None
            changed = True
        if sub is not None and sub.span.end_beat - (lead if self._slot(sub.span.end_beat, beats_per_bar)
                                                    == self._slot(sub.span.start_beat, beats_per_bar)
                                                    else 0.0) > beat:
            chart = self.chart
            index, slot = self._slot(sub.span.start_beat, beats_per_bar)
            bar = list(chart.bars[index])
            bar[slot] = sub.symbol
            plan = chart.with_bar(index, tuple(bar))
            if plan != self.plan:
                self.plan, self.unsubstituted = plan, chart
                self.substituted_until = sub.span.end_beat
                self.substituted_vamp = self._slot(sub.span.end_beat, beats_per_bar) == (index, slot)
                changed = True
        if not changed:
            return []
        self.plan_epoch += 1
        return [self.plan_message()]

    def _slot(self, beat: float, beats_per_bar: int) -> tuple[int, int]:
        """(bar index, chord index in the bar) of the chart at ``beat``."""
        chart = self.chart
        bar_number = math.floor(beat / beats_per_bar)
        index = bar_number % len(chart.bars) if chart.loop else min(bar_number, len(chart.bars) - 1)
        width = beats_per_bar / len(chart.bars[index])
        return index, min(int((beat - bar_number * beats_per_bar) / width), len(chart.bars[index]) - 1)

    def unsubstitute(self) -> list[PlanState]:
        """The chart as written again at once (substitutions turned off)."""
        if self.unsubstituted is None:
            return []
        self.plan, self.unsubstituted = self.unsubstituted, None
        self.plan_epoch += 1
        return [self.plan_message()]

    def _apply_agent(self, ctl: Control) -> list[Any]:
        pats = _osc_patterns(ctl.target)
        targets = [a for a in self.agents if any(fnmatchcase(a, pat) for pat in pats)]
        if not targets:
            raise ValueError(f"target: no agent matches {ctl.target!r}")
        for a in targets:
            m = self.mix.setdefault(a, Mix())
            if ctl.param == "mute":
                m.mute = bool(ctl.value)
            elif ctl.param == "solo":
                m.solo = bool(ctl.value)
            elif ctl.param in ("temperature", "density", "top_p"):
                setattr(m, ctl.param, float(ctl.value))
            elif ctl.param in ("top_k", "volume", "dynamics"):
                setattr(m, ctl.param, int(ctl.value))
            elif ctl.param == "pan":
                m.pan = float(ctl.value)
            else:
                raise ValueError(f"param: unknown agent control {ctl.param!r}")
        self.params_epoch += 1
        return list(self.params_messages())

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Atomic write: a conductor killed mid-write must still find the previous state."""
        data = {
            "timeline": {k: getattr(self.timeline, k) for k in self.timeline.__dataclass_fields__},
            "plan": _plan_json(self.chart),  # a restart plays on as written
            "following": self.following,
            "follow_tempo": self.follow_tempo,
            "substitutions": self.substitutions,
            "written": None if self.written is None else _plan_json(self.written),
            "plan_epoch": self.plan_epoch,
            "params_epoch": self.params_epoch,
            "mix": {a: vars(m) for a, m in self.mix.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, agents: tuple[str, ...]) -> ConductorState:
        data = json.loads(path.read_text())
        p = data["plan"]
        state = cls(
            timeline=Timeline(**data["timeline"]),
            plan=ChordPlan.parse(p["text"], loop=p["loop"], key=p["key"]),
            plan_epoch=int(data["plan_epoch"]) + 1,
            agents=agents,
            params_epoch=int(data["params_epoch"]) + 1,
        )
        state.following = bool(data.get("following", False))
        follow_tempo = data.get("follow_tempo")
        state.follow_tempo = None if follow_tempo is None else bool(follow_tempo)
        substitutions = data.get("substitutions")
        state.substitutions = None if substitutions is None else bool(substitutions)
        w = data.get("written")
        state.written = None if w is None else ChordPlan.parse(w["text"], loop=w["loop"], key=w["key"])
        state.timeline = replace(state.timeline, epoch=state.timeline.epoch + 1)
        state.mix = {a: Mix(**m) for a, m in data.get("mix", {}).items() if a in agents}
        return state


def _plan_json(plan: ChordPlan) -> dict[str, Any]:
    return {"text": plan.to_text(), "loop": plan.loop, "key": plan.key}


def _osc_patterns(pattern: str) -> list[str]:
    """OSC address patterns as fnmatch patterns: `{a,b}` alternatives expand, `[!x]` is shared."""
    if "{" in pattern and "}" in pattern:
        head, _, rest = pattern.partition("{")
        alts, _, tail = rest.partition("}")
        return [p for a in alts.split(",") for p in _osc_patterns(head + a + tail)]
    return [pattern]
