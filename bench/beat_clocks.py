"""The agents' beat clocks over a run: sampled from their stats files, then compared at shared instants.

WHY apart from the bench: what an agent's beat was at time t, and how far apart the agents were, is
pure bookkeeping over the stats files; the bench (beat_agreement.py) only plays the ensemble, sends
the tempo changes and prints what ``analyse`` returns. The metric is described in that module.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.ensemble_procs import Child, check_alive
from bench.percentiles import pct
from protocol.timeline import LocalTimeMap, Timeline

POLL_S = 0.005
START_S = 2.0  # the first seconds of playing, while clock sync settles, are a window of their own


@dataclass
class History:
    """One agent's beat clocks over time: `times[k]` is when `maps[k]` took over (monotonic s)."""

    times: list[float] = field(default_factory=list)
    maps: list[LocalTimeMap] = field(default_factory=list)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    sync: dict[str, float] = field(default_factory=dict)
    sync_via: str = ""
    priority: str = ""

    def add(self, t: float, tm: dict[str, Any]) -> None:
        key = (tuple(sorted(tm["timeline"].items())), tm["offset_s"])
        if self.keys and key == self.keys[-1]:
            return
        if self.times and t < self.times[-1]:
            t = self.times[-1]  # a write stamped before the previous one we saw: keep the order
        self.times.append(t)
        self.keys.append(key)
        self.maps.append(LocalTimeMap(Timeline(**tm["timeline"]), float(tm["offset_s"])))

    def at(self, t: float) -> LocalTimeMap | None:
        k = bisect.bisect_right(self.times, t) - 1
        return self.maps[k] if k >= 0 else None

    def first_playing(self) -> float | None:
        return next((t for t, m in zip(self.times, self.maps, strict=True) if m.timeline.playing), None)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_clock(
    path: Path, wall_minus_mono: float, now: float
) -> tuple[float, dict[str, Any], dict[str, Any]] | None:
    """An agent's published beat clock: (monotonic time it was installed, stats, timemap), or None.

    The agent stamps `updated` with time.time() right after installing the clock; mapping that to
    time.monotonic() places the change to within the stats write, not the reader's polling period.
    """
    data = read_json(path)
    tm = data.get("timemap")
    if not tm:
        return None
    written = float(data.get("updated", 0.0)) - wall_minus_mono
    return (min(written, now) if written > 0 else now), data, tm


class Poller:
    """Reads every agent's stats file and files each new beat clock under the time it was written.

    The agent stamps `updated` with time.time() right after installing the clock; mapping that to
    time.monotonic() places the change to within the stats write, not our polling period.
    """

    def __init__(self, agents: dict[str, Path]) -> None:
        self.paths = agents
        self.hist = {name: History() for name in agents}
        self.wall_minus_mono = time.time() - time.monotonic()

    def poll(self) -> None:
        now = time.monotonic()
        for name, path in self.paths.items():
            clock = read_clock(path, self.wall_minus_mono, now)
            if clock is None:
                continue
            t, data, tm = clock
            h = self.hist[name]
            h.add(t, tm)
            sync = data.get("sync") or {}
            # The numbers only: the block also names the path the pings take ("via": "udp" / "broker").
            h.sync = {k: float(v) for k, v in sync.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
            h.sync_via = str(sync.get("via", ""))
            h.priority = str(data.get("priority", ""))

    def playing_since(self) -> float | None:
        starts = [h.first_playing() for h in self.hist.values()]
        return None if any(s is None for s in starts) else max(s for s in starts if s is not None)

    def run_for(self, seconds: float, children: list[Child]) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            check_alive(children)
            time.sleep(POLL_S)


@dataclass
class TempoChange:
    """One tempo control the bench sent, and what it found out about it: the epoch of the timeline
    it produced, when that timeline's change beat fell, and when each agent held it."""

    label: str
    bpm: float
    sent: float  # monotonic time the control left this process
    epoch: int = -1
    change_time: float = math.nan  # conductor time of the change beat (same clock on one host)
    received: dict[str, float] = field(default_factory=dict)


def analyse(
    transport: str, poller: Poller, changes: list[TempoChange], t_play: float, t_end: float, step_s: float
) -> dict[str, Any]:
    """Every agent's beat at each ``step_s`` from ``t_play`` to ``t_end``: spread and error versus the
    conductor per window ("all", "start", "steady", "tempo"), the per-agent table and, filled into
    ``changes``, when each agent held each tempo change. Returns the bench's JSON for one bus."""
    names = list(poller.hist)
    hist = [poller.hist[n] for n in names]
    ts = np.arange(t_play, t_end, step_s)
    beats = np.empty((len(names), ts.size))
    ref = np.empty(ts.size)
    tempo = np.empty(ts.size)
    for j, t in enumerate(ts):
        newest: Timeline | None = None
        for i, h in enumerate(hist):
            tm = h.at(float(t))
            assert tm is not None  # every agent was playing by t_play
            beats[i, j] = tm.beat_at(float(t))
            if newest is None or tm.timeline.epoch > newest.epoch:
                newest = tm.timeline
        assert newest is not None
        ref[j] = newest.beat_at(float(t))
        tempo[j] = newest.tempo_at_beat(ref[j])
    ms_per_beat = 60000.0 / tempo
    spread_ms = (beats.max(axis=0) - beats.min(axis=0)) * ms_per_beat
    error_ms = (beats - ref) * ms_per_beat  # agent minus conductor

    for ch in changes:  # find the timeline each control produced and when each agent held it
        for name, h in zip(names, hist, strict=True):
            for t, m in zip(h.times, h.maps, strict=True):
                if t >= ch.sent - 0.01 and m.timeline.next_tempo_bpm == ch.bpm:
                    ch.received[name] = t
                    ch.epoch = m.timeline.epoch
                    ct = m.timeline.time_at(m.timeline.change_beat)
                    ch.change_time = ct if ct is not None else math.nan
                    break
    in_change = np.zeros(ts.size, dtype=bool)
    for ch in changes:
        end = (ch.change_time if math.isfinite(ch.change_time) else ch.sent + 2.0) + 1.0
        in_change |= (ts >= ch.sent) & (ts <= end)
    start = ts < t_play + START_S
    windows = {
        "all": np.ones(ts.size, dtype=bool),
        "start": start,
        "steady": ~in_change & ~start,
        "tempo": in_change & ~start,
    }
    rows = []
    for label, mask in windows.items():
        rows.append({
            "transport": transport,
            "window": label,
            "seconds": float(mask.sum() * step_s),
            "spread_ms": pct(spread_ms[mask]),
            "vs_conductor_ms": pct(np.abs(error_ms[:, mask]).max(axis=0) if mask.any() else np.array([])),
        })  # fmt: skip
    agents = []
    for i, (name, h) in enumerate(zip(names, hist, strict=True)):
        offsets = np.array([m.offset_s for t, m in zip(h.times, h.maps, strict=True) if t >= t_play]) * 1000
        agents.append({
            "transport": transport,
            "agent": name,
            "offset_ms": h.sync.get("offset_ms", math.nan),
            "rtt_ms": h.sync.get("rtt_ms", math.nan),
            "sync_via": h.sync_via,
            "offset_min_ms": float(offsets.min()) if offsets.size else math.nan,
            "offset_max_ms": float(offsets.max()) if offsets.size else math.nan,
            "clock_changes": int(offsets.size),
            "vs_conductor_ms": pct(np.abs(error_ms[i])),
            "priority": h.priority,
            "tempo_changes": [
                {"label": ch.label,
                 "lag_ms": (ch.received[name] - ch.sent) * 1000 if name in ch.received else None,
                 "lead_ms": (ch.change_time - ch.received[name]) * 1000 if name in ch.received else None}
                for ch in changes
            ],
        })  # fmt: skip
    return {
        "transport": transport,
        "sampled_s": float(t_end - t_play),
        "samples": int(ts.size),
        "rows": rows,
        "agents": agents,
        "tempo_changes": [
            {"label": ch.label, "bpm": ch.bpm, "epoch": ch.epoch,
             "heard_by": sorted(ch.received), "control_to_change_ms": (ch.change_time - ch.sent) * 1000}
            for ch in changes
        ],
    }  # fmt: skip
