"""The live status shown while an ensemble runs: beat, bar, chord and each agent's health.

On a terminal it is a rich table redrawn a few times a second; in a log (CI, a service) it is one
plain line every few seconds, so the output stays readable in both places.
"""

from __future__ import annotations

import sys
import time
from typing import Any


class StatusDisplay:
    def __init__(self, launcher: Any, interactive: bool | None = None) -> None:
        self.launcher = launcher
        self.interactive = sys.stdout.isatty() if interactive is None else interactive
        self.last = 0.0
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
            else:
                agents.append((c.name, c.read_stats(), c.restarts, c.alive))
        return cond, agents

    def _table(self) -> Any:
        from rich.table import Table

        cond, agents = self._rows()
        beat = float(cond.get("beat", 0.0))
        ens = self.launcher.ens
        title = (
            f"{ens.name}  bar {cond.get('bar', '-')}  beat {beat % ens.meter:4.1f}  "
            f"{cond.get('chord', '')}  {cond.get('tempo', 0):.1f} BPM  bus {ens.bus.transport}"
        )
        table = Table(title=title)
        for col in (
            "part",
            "state",
            "notes",
            "late",
            "p99 ms",
            "offset ms",
            "rtt ms",
            "bad msgs",
            "restarts",
        ):
            table.add_column(col)
        for name, s, restarts, alive in agents:
            t, sync = s.get("timing_ms", {}), s.get("sync", {})
            table.add_row(
                name,
                "up" if alive else "down",
                str(s.get("notes", 0)),
                str(s.get("late_notes", 0)),
                f"{t.get('p99', 0):.3f}",
                f"{sync.get('offset_ms', 0):.3f}",
                f"{sync.get('rtt_ms', 0):.3f}",
                str(s.get("invalid_messages", 0)),
                str(restarts),
            )
        return table

    def update(self) -> None:
        now = time.monotonic()
        if self.live is not None:
            if now - self.last > 0.12:
                self.live.update(self._table())
                self.last = now
            return
        if now - self.last < 4.0:
            return
        self.last = now
        cond, agents = self._rows()
        parts = " ".join(f"{n}:{s.get('notes', 0)}{'' if up else '(down)'}" for n, s, _, up in agents)
        where = f"bar {cond.get('bar', '-')} {cond.get('chord', '')} {cond.get('tempo', 0):.0f}bpm"
        print(f"{where}  notes {parts}", flush=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
