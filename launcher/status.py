"""The live status shown while an ensemble runs: beat, bar, chord, bus health and each agent's health.

On a terminal it is a rich table redrawn a few times a second; in a log (CI, a service) it is one
plain line every few seconds, so the output stays readable in both places. It reads the stats files
the processes write (the conductor's and this host's agents'), so it shows what only an agent knows
(lateness p99, model events/s), which the bus's JSON status cannot carry.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import Any

RATE_WINDOW_S = 5.0
LINE_EVERY_S = 4.0


class Rates:
    """Per-second rates of ever-growing counters (model events), over the last few seconds.

    A counter that goes down belongs to a restarted process: its history starts again.
    """

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.hist: dict[str, deque[tuple[float, float]]] = {}

    def update(self, key: str, value: float, now: float) -> float:
        h = self.hist.setdefault(key, deque())
        if h and value < h[-1][1]:
            h.clear()
        h.append((now, value))
        while len(h) > 2 and now - h[1][0] >= self.window_s:
            h.popleft()
        t0, v0 = h[0]
        return (value - v0) / (now - t0) if now > t0 else 0.0


def bus_health(cond: dict[str, Any], expected: int) -> str:
    """`bad 0  refused 0  roster 3/3`: what says the bus is sound at a glance."""
    refused = sum(int(v) for v in (cond.get("refused") or {}).values())
    roster = cond.get("roster") or []
    return f"bad {cond.get('invalid_messages', 0)}  refused {refused}  roster {len(roster)}/{expected}"


def link_text(cond: dict[str, Any]) -> str:
    link = cond.get("link")
    if not link:
        return ""
    peers = link.get("peers", 0)
    phase = link.get("phase_error_ms", 0.0)
    return f"link {link.get('mode', '')} {peers} peer{'s' if peers != 1 else ''} {phase:+.2f} ms"


def agent_state(stats: dict[str, Any], alive: bool, yielded: bool = False) -> str:
    """`up`, `down`, `unsynced` (alive but hearing no pong, so its beat may not be the band's), or
    `yielded`: up, and resting while the player has its part."""
    if not alive:
        return "down"
    if (stats.get("sync") or {}).get("state") == "unsynced":
        return "unsynced"
    return "yielded" if yielded else "up"


def roles_text(cond: dict[str, Any]) -> str:
    """`player bass, comp (auto)  yielded bass, piano`: which parts the player has taken."""
    roles = cond.get("roles")
    if not roles or (roles.get("mode") == "none" and not roles.get("player")):
        return ""
    player = ", ".join(roles.get("player") or []) or "-"
    yielded = ", ".join(roles.get("yielded") or []) or "-"
    return f"player {player} ({roles.get('mode', 'auto')})  yielded {yielded}"


def _yielded(cond: dict[str, Any]) -> set[str]:
    return set((cond.get("roles") or {}).get("yielded") or [])


class StatusDisplay:
    def __init__(self, launcher: Any, interactive: bool | None = None) -> None:
        self.launcher = launcher
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.last = 0.0
        self.rates = Rates()
        self.live: Any = None
        if self.interactive:
            from rich.live import Live

            self.live = Live(self._table(), refresh_per_second=8, transient=False)
            self.live.start()

    def _rows(self) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any], int, bool]]]:
        cond: dict[str, Any] = {}
        agents = []
        for c in self.launcher.children:
            if c.role == "conductor":
                cond = c.read_stats()
            elif c.role == "agent":
                agents.append((c.name, c.read_stats(), c.restarts, c.alive))
        return cond, agents

    def _events_per_s(self, name: str, s: dict[str, Any]) -> float:
        return self.rates.update(name, float(s.get("model_events", 0)), time.monotonic())

    def _where(self, cond: dict[str, Any]) -> str:
        meter = self.launcher.ens.meter
        beat = float(cond.get("beat", 0.0))
        chord = cond.get("chord", "") or "-"
        tempo = float(cond.get("tempo", 0.0))
        follow = cond.get("tempo_follow", "off")
        lock = f" (following: {follow})" if follow != "off" else ""
        where = f"bar {cond.get('bar', '-')}  beat {beat % meter + 1:3.1f}/{meter}  {chord}"
        return f"{where}  {tempo:.1f} BPM{lock}"

    def _models(self) -> str:
        """The shared model processes (engine.share): whom each serves, how its calls batch, its memory;
        and the output process that writes this host's parts (timing.output_host), at its priority."""
        out = []
        for c in self.launcher.children:
            if c.role == "outputs":
                s = c.read_stats()
                parts = ", ".join(s.get("parts", [])) or "starting"
                out.append(f"outputs ({parts}): {s.get('priority', '-')}"
                           + (f", restarts {c.restarts}" if c.restarts else ""))
        for c in self.launcher.children:
            if c.role == "model":
                s = c.read_stats()
                providers = ",".join(p.removesuffix("ExecutionProvider") for p in s.get("providers", []))
                rows = (s.get("mean_rows") or {}).get("base", 0.0)
                out.append(f"{c.name} ({', '.join(s.get('agents', [])) or 'starting'}): {providers or '-'}, "
                           f"{rows:.2f} agents per step, {s.get('max_rss_mb', 0):.0f} MB"
                           + (f", restarts {c.restarts}" if c.restarts else ""))
        return "  ".join(out)

    def _table(self) -> Any:
        from rich.table import Table

        cond, agents = self._rows()
        ens = self.launcher.ens
        link = link_text(cond)
        roles = roles_text(cond)
        title = (
            f"{ens.name}  {self._where(cond)}\n"
            f"bus {ens.bus.transport}: {bus_health(cond, len(ens.agents))}" + (f"  {link}" if link else "")
            + (f"\n{roles}" if roles else "")
        )
        table = Table(title=title, caption=self._models() or None)
        for col in (
            "part",
            "state",
            "notes",
            "late",
            "p99 ms",
            "offset ms",
            "rtt ms",
            "events/s",
            "model load",
            "replans",
            "bad msgs",
            "restarts",
        ):
            table.add_column(col, justify="left" if col in ("part", "state") else "right")
        for name, s, restarts, alive in agents:
            t, sync = s.get("timing_ms", {}), s.get("sync", {})
            engine = s.get("engine", "")
            model = engine == "onnx"
            providers = ",".join(p.removesuffix("ExecutionProvider") for p in s.get("providers", []))
            table.add_row(
                name + (f" ({providers})" if providers else ""),
                agent_state(s, alive, name in _yielded(cond)),
                str(s.get("notes", 0)),
                str(s.get("late_notes", 0)),
                f"{t.get('p99', 0):.3f}",
                f"{sync.get('offset_ms', 0):.3f}",
                f"{sync.get('rtt_ms', 0):.3f}",
                f"{self._events_per_s(name, s):.1f}" if model else "-",
                f"{s.get('model_load', 0):.2f}" if model else "-",
                str(s.get("replans", 0)) if model else "-",
                str(s.get("invalid_messages", 0)),
                str(restarts),
            )
        return table

    def line(self) -> str:
        """The plain one-line status for logs."""
        cond, agents = self._rows()
        parts = []
        for name, s, _, up in agents:
            text = f"{name}:{s.get('notes', 0)}"
            if s.get("engine") == "onnx":
                text += f" {self._events_per_s(name, s):.0f}ev/s"
            text += f" p99 {s.get('timing_ms', {}).get('p99', 0):.1f}ms"
            if s.get("late_notes", 0):
                text += f" late {s['late_notes']}"
            state = agent_state(s, up, name in _yielded(cond))
            parts.append(text + ("" if state == "up" else f" ({state})"))
        link = link_text(cond)
        health = bus_health(cond, len(self.launcher.ens.agents))
        roles = roles_text(cond)
        models = self._models()
        return (f"{self._where(cond)} | {' | '.join(parts)} | bus {health}" + (f" | {link}" if link else "")
                + (f" | {roles}" if roles else "") + (f" | {models}" if models else ""))

    def update(self) -> None:
        now = time.monotonic()
        if self.live is not None:
            if now - self.last > 0.12:
                self.live.update(self._table())
                self.last = now
            return
        if now - self.last < LINE_EVERY_S:
            return
        self.last = now
        print(self.line(), flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
