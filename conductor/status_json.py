"""The ensemble's state as one JSON object, built from the conductor's stats once a beat.

WHY JSON in one OSC string: Max (`dict.deserialize`, `[fromsymbol]`), TouchOSC scripts and web
dashboards read it whole, and the set of agents changes while the ensemble plays, which positional
OSC arguments cannot say. The agents' heartbeats (AgentStatus) stay as they are; this aggregates them.
What only an agent's own stats file knows (lateness p99, model events/s) is not on the bus, so it is
not here; the launcher's terminal display shows it.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from typing import Any

from protocol.status_messages import MAX_STATUS_JSON, AgentStatus, EnsembleStatus

RATE_WINDOW_S = 5.0


def bar_and_beat(beat: float, beats_per_bar: int) -> tuple[int, int]:
    """Bar and beat in bar as musicians count them, from 1: the downbeat of the piece is bar 1 beat 1.

    Every display counts this way (beat ticks, this status, the launcher's table, `--plot`'s bar
    numbers), so a bar a musician calls out is the same bar everywhere.
    """
    whole = math.floor(beat)
    return whole // beats_per_bar + 1, whole % beats_per_bar + 1


def agent_fields(s: AgentStatus) -> dict[str, Any]:
    """One agent's heartbeat as stats/status fields (the names the conductor's stats always used)."""
    return {
        "state": s.state,
        "notes": s.notes,
        "late": s.late_notes,
        "lateness_p50_ms": round(s.latency_ms, 4),
        "lookahead_beats": round(s.lookahead_beats, 3),
        "offset_ms": round(s.offset_ms, 4),
        "rtt_ms": round(s.rtt_ms, 4),
        "invalid": s.invalid,
    }


class StatusJson:
    """Builds EnsembleStatus messages; keeps a few seconds of note counts to report notes/s."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.counts: dict[str, deque[tuple[float, int]]] = {}

    def _rate(self, agent: str, notes: int, now: float) -> float:
        hist = self.counts.setdefault(agent, deque())
        if hist and notes < hist[-1][1]:  # a restarted agent counts from its own saved total again
            hist.clear()
        hist.append((now, notes))
        while len(hist) > 2 and now - hist[1][0] >= RATE_WINDOW_S:
            hist.popleft()
        t0, n0 = hist[0]
        return (notes - n0) / (now - t0) if now > t0 else 0.0

    def data(self, stats: dict[str, Any]) -> dict[str, Any]:
        """The status object from `Conductor.stats()` (which holds every agent's last heartbeat)."""
        now = self.clock()
        roster = list(stats.get("roster", []))
        roles = stats.get("roles") or {}
        yielded = set(roles.get("yielded", []))
        agents = {}
        for name, a in stats.get("agents", {}).items():
            agents[name] = {
                **a,
                "alive": name in roster,
                "notes_per_s": round(self._rate(name, int(a.get("notes", 0)), now), 3),
                "yielded": name in yielded,  # resting: the player has its part (docs/roles.md)
            }
            if name in roles.get("parts", {}):
                agents[name]["role"] = roles["parts"][name]
        out = {
            "bar": stats.get("bar", 0),
            "beat": round(float(stats.get("beat", 0.0)), 4),
            "chord": stats.get("chord", ""),
            "tempo": round(float(stats.get("tempo", 0.0)), 4),
            "tempo_follow": stats.get("tempo_follow", "off"),
            "playing": bool(stats.get("playing", False)),
            "agents": agents,
            "bus": {
                "transport": stats.get("bus", ""),
                "invalid": stats.get("invalid_messages", 0),
                "invalid_reasons": stats.get("invalid_reasons", {}),
                "refused": stats.get("refused", {}),
                "roster": roster,
            },
        }
        if roles:
            out["roles"] = {k: roles.get(k) for k in ("mode", "player", "yielded", "yields")}
        if stats.get("link"):
            out["link"] = stats["link"]
        return out

    def message(self, stats: dict[str, Any]) -> EnsembleStatus:
        """The message; over the size limit the detail goes first, so it always fits one datagram."""
        data = self.data(stats)
        text = json.dumps(data, separators=(",", ":"))
        if len(text) > MAX_STATUS_JSON:
            data["bus"]["invalid_reasons"] = {}
            data["bus"]["refused"] = {}
            text = json.dumps(data, separators=(",", ":"))
        if len(text) > MAX_STATUS_JSON:
            keep = ("state", "notes", "late", "alive", "yielded")
            data["agents"] = {n: {k: a[k] for k in keep} for n, a in data["agents"].items()}
            text = json.dumps(data, separators=(",", ":"))
        if len(text) > MAX_STATUS_JSON:
            text = json.dumps({k: data[k] for k in ("bar", "beat", "chord", "tempo", "playing")})
        return EnsembleStatus(text)
