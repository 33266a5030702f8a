"""The launcher's terminal dashboard from stats files: model events/s, p99, bus health, chord, bar/beat.

A fake launcher stands in for the real one (the display only reads `children` and `ens`), so the
table and the log line are checked exactly, with no processes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from launcher.status import Rates, StatusDisplay
from protocol.ensemble import parse_ensemble


@dataclass
class FakeChild:
    name: str
    role: str
    stats: dict[str, Any] = field(default_factory=dict)
    restarts: int = 0
    alive: bool = True

    def read_stats(self) -> dict[str, Any]:
        return self.stats


COND = {
    "role": "conductor", "playing": True, "tempo": 96.0, "beat": 13.5, "bar": 3, "chord": "Dm7",
    "roster": ["bass", "piano"], "invalid_messages": 2, "refused": {"10.0.0.9": 3},
    "link": {"mode": "follow", "peers": 1, "phase_error_ms": 0.01},
}


def agent(events: int, *, onnx: bool = True) -> dict[str, Any]:
    return {
        "notes": 40, "late_notes": 1, "timing_ms": {"p50": 0.1, "p99": 0.75, "max": 2.0},
        "sync": {"offset_ms": 0.02, "rtt_ms": 0.3}, "invalid_messages": 0,
        "engine": "onnx" if onnx else "pattern", "providers": ["CPUExecutionProvider"] if onnx else [],
        "model_events": events, "model_load": 0.42, "replans": 7,
    }


class FakeLauncher:
    def __init__(self) -> None:
        self.ens = parse_ensemble({"agents": [{"name": "bass"}, {"name": "piano", "channel": 1}]})
        self.children = [
            FakeChild("conductor", "conductor", COND),
            FakeChild("bass", "agent", agent(100)),
            FakeChild("piano", "agent", agent(0, onnx=False), restarts=1),
        ]


def render(display: StatusDisplay) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(display._table())
    return out.getvalue()


def test_rates_follow_a_counter_and_restart_with_it() -> None:
    r = Rates(window_s=5.0)
    assert r.update("a", 0, 10.0) == 0.0
    assert r.update("a", 50, 12.0) == 25.0
    assert r.update("a", 5, 13.0) == 0.0  # a restarted agent counts from zero again


def test_table_shows_events_per_second_bus_health_and_position() -> None:
    launcher = FakeLauncher()
    display = StatusDisplay(launcher, interactive=False)
    render(display)
    launcher.children[1].stats = agent(160)
    display.rates.hist["bass"][0] = (display.rates.hist["bass"][0][0] - 2.0, 100.0)  # two seconds ago
    text = render(display)
    assert "bar 3" in text and "beat 2.5/4" in text and "Dm7" in text and "96.0 BPM" in text
    assert "bad 2  refused 3  roster 2/2" in text and "link follow 1 peer" in text
    assert "bass (CPU)" in text and "0.750" in text and "0.42" in text
    row = next(line for line in text.splitlines() if "bass" in line)
    events_per_s = float(row.split("│")[8])  # the events/s column
    assert 25.0 < events_per_s <= 30.0, row  # 60 events in a little over 2 s
    piano = next(line for line in text.splitlines() if "piano" in line)
    assert piano.count(" - ") >= 1  # no model: no events/s, load or replans


def test_log_line_is_one_readable_line() -> None:
    display = StatusDisplay(FakeLauncher(), interactive=False)
    line = display.line()
    assert "\n" not in line
    assert line.startswith("bar 3  beat 2.5/4  Dm7  96.0 BPM")
    assert "bass:40 0ev/s p99 0.8ms late 1" in line and "piano:40 p99 0.8ms late 1" in line
    assert "bus bad 2  refused 3  roster 2/2" in line and "link follow" in line


def test_an_unsynced_agent_shows_unsynced_in_the_table_and_the_line() -> None:
    launcher = FakeLauncher()
    launcher.children[2].stats = {**agent(0, onnx=False), "sync": {"offset_ms": 0.0, "rtt_ms": 0.0,
                                                                    "state": "unsynced"}}  # fmt: skip
    display = StatusDisplay(launcher, interactive=False)
    rows = {name: next(line for line in render(display).splitlines() if name in line)
            for name in ("bass", "piano")}  # fmt: skip
    assert rows["piano"].split("│")[2].strip() == "unsynced", rows
    assert rows["bass"].split("│")[2].strip() == "up", rows
    line = display.line()
    assert "piano:40 p99 0.8ms late 1 (unsynced)" in line and "bass:40 0ev/s p99 0.8ms late 1 |" in line
    launcher.children[2].alive = False
    assert "piano:40 p99 0.8ms late 1 (down)" in display.line()


def test_the_parts_the_player_took_show_in_the_title_the_state_and_the_line() -> None:
    launcher = FakeLauncher()
    roles = {"mode": "auto", "player": ["bass"], "yielded": ["bass"], "parts": {"bass": "bass"}}
    launcher.children[0].stats = {**COND, "roles": roles}
    display = StatusDisplay(launcher, interactive=False)
    text = render(display)
    assert "player bass (auto)  yielded bass" in text
    rows = {name: next(line for line in text.splitlines() if name in line and "│" in line)
            for name in ("bass", "piano")}  # fmt: skip
    assert rows["bass"].split("│")[2].strip() == "yielded"
    assert rows["piano"].split("│")[2].strip() == "up"
    line = display.line()
    assert "bass:40 0ev/s p99 0.8ms late 1 (yielded)" in line
    assert line.endswith("| player bass (auto)  yielded bass")
    launcher.children[0].stats = {**COND, "roles": {**roles, "player": [], "yielded": []}}
    assert "player - (auto)  yielded -" in display.line()


def test_a_shared_model_process_shows_whom_it_serves_and_is_not_a_part() -> None:
    """engine.share's model process: under the table and in the line, never a row of its own."""
    launcher = FakeLauncher()
    launcher.children.append(FakeChild("model-0", "model", {
        "agents": ["bass", "piano"], "providers": ["CPUExecutionProvider"], "mean_rows": {"base": 1.42},
        "max_rss_mb": 775.2}, restarts=1))
    display = StatusDisplay(launcher, interactive=False)
    text = "model-0 (bass, piano): CPU, 1.42 agents per step, 775 MB, restarts 1"
    assert text in display.line()
    table = render(display)
    assert text in table
    assert not any(row.startswith("│ model-0") for row in table.splitlines())
