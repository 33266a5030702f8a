"""Every agent's beat clock over time, read from the stats files of launchers running in a NetRig.

WHY from the stats files: an agent writes `timemap = {timeline, offset_s}` (its own beat clock) and
`updated` each time its timeline or its offset estimate changes, so the history of those writes is
exactly what it played by. All namespaces share the kernel's monotonic clock, so every agent's beat
can be evaluated at the same instants, and a restarted agent (a new `pid` in the same file) can be
followed from its first beat clock until it agrees with the others.
"""

from __future__ import annotations

import bisect
import json
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.beat_clocks import read_clock, read_json
from protocol.timeline import LocalTimeMap, Timeline

POLL_S = 0.003


@dataclass
class Entry:
    t: float
    pid: int
    synced: bool
    offset_s: float
    map: LocalTimeMap


@dataclass
class History:
    entries: list[Entry] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    last_key: tuple[Any, ...] | None = None
    rtt_ms: float = 0.0

    def add(self, t: float, pid: int, synced: bool, tm: dict[str, Any]) -> None:
        key = (pid, synced, tuple(sorted(tm["timeline"].items())), tm["offset_s"])
        if key == self.last_key:
            return
        if self.times and t < self.times[-1]:
            t = self.times[-1]  # a write stamped before one already seen: keep the order
        self.last_key = key
        self.times.append(t)
        self.entries.append(
            Entry(
                t,
                pid,
                synced,
                float(tm["offset_s"]),
                LocalTimeMap(Timeline(**tm["timeline"]), float(tm["offset_s"])),
            )
        )

    def at(self, t: float) -> Entry | None:
        k = bisect.bisect_right(self.times, t) - 1
        return self.entries[k] if k >= 0 else None


class AgentClocks:
    """Polls the agents' stats files, keeps each one's clock history, and answers spread/rejoin."""

    def __init__(self, paths: dict[str, Path], procs: dict[str, subprocess.Popen[bytes]], work: Path) -> None:
        self.paths = paths
        self.procs = procs
        self.work = work
        self.hist = {name: History() for name in paths}
        self.wall_minus_mono = time.time() - time.monotonic()

    def poll(self) -> None:
        now = time.monotonic()
        for name, path in self.paths.items():
            clock = read_clock(path, self.wall_minus_mono, now)
            if clock is None:
                continue
            t, data, tm = clock
            rtt = float((data.get("sync") or {}).get("rtt_ms", 0.0))
            self.hist[name].add(t, int(data.get("pid", 0)), rtt > 0, tm)
            self.hist[name].rtt_ms = rtt

    def check_alive(self) -> None:
        for host, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.work / f"{host}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"launcher on {host} exited {proc.returncode}:\n{log}")

    def poll_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.poll()
            self.check_alive()
            time.sleep(POLL_S)  # the polling period of the stats files

    def wait_all_playing(self, timeout: float) -> float:
        """Seconds until every agent is synced and holds a playing timeline (raises on timeout)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.poll_for(0.05)
            last = [h.entries[-1] if h.entries else None for h in self.hist.values()]
            if all(e is not None and e.synced and e.map.timeline.playing for e in last):
                return time.monotonic() - start
        raise TimeoutError(f"agents not all playing within {timeout} s: see logs in {self.work}")

    def pid(self, name: str) -> int:
        return self.hist[name].entries[-1].pid

    def stop_all(self) -> dict[str, dict[str, Any]]:
        """SIGTERM every launcher (the stage last), wait, and return the band launchers' reports."""
        order = sorted(self.procs, key=lambda h: h == "stage")
        for host in order:
            self.procs[host].send_signal(signal.SIGTERM)
        for host in order:
            try:
                self.procs[host].wait(10.0)
            except subprocess.TimeoutExpired:
                self.procs[host].kill()
        return {h: read_json(self.work / f"report-{h}.json") for h in self.procs if h != "stage"}

    def beats(self, t: float) -> dict[str, tuple[float, float, Entry]] | None:
        """Each agent's (beat, tempo, entry) at t, or None when any is missing or not playing."""
        out = {}
        for name, h in self.hist.items():
            e = h.at(t)
            if e is None or not e.map.timeline.playing:
                return None
            beat = e.map.beat_at(t)
            out[name] = (beat, e.map.timeline.tempo_at_beat(beat), e)
        return out

    def spreads(self, t0: float, t1: float, step: float) -> list[float]:
        result = []
        t = t0
        while t < t1:
            b = self.beats(t)
            if b is not None:
                vals = [v[0] for v in b.values()]
                tempo = next(iter(b.values()))[1]
                result.append((max(vals) - min(vals)) * 60_000.0 / tempo)
            t += step
        return result

    def abs_offset_max_ms(self, t0: float, t1: float) -> dict[str, float]:
        """Largest |offset estimate| per agent in [t0, t1]: the sync error (true offset is 0 here)."""
        out = {}
        for name, h in self.hist.items():
            vals = [abs(e.offset_s) for e in h.entries if t0 <= e.t <= t1]
            first = h.at(t0)
            if first is not None:
                vals.append(abs(first.offset_s))
            out[name] = round(max(vals, default=0.0) * 1000.0, 4)
        return out

    def dump(self, path: Path) -> None:
        """Every agent's offset estimates (t, pid, synced, offset ms): what --keep leaves to plot."""
        rows = {name: [(e.t, e.pid, e.synced, e.offset_s * 1000.0) for e in h.entries]
                for name, h in self.hist.items()}
        path.write_text(json.dumps(rows))

    def rtt_ms(self) -> dict[str, float]:
        return {name: round(h.rtt_ms, 3) for name, h in self.hist.items()}

    def rejoin(
        self, name: str, old_pid: int, t_kill: float, t_end: float, tol_ms: float, step: float
    ) -> dict[str, Any]:
        """How long the restarted agent took to be in time (within tol_ms of every other, for good).

        Counted from its first beat clock (it holds the timeline and would play); before its first
        sync sample it is not in time whatever its beat says, since its offset is then a guess.
        """
        h = self.hist[name]
        new = [e for e in h.entries if e.pid != old_pid and e.t >= t_kill]
        if not new:
            return {
                "agent": name,
                "start_after_kill_s": None,
                "in_time_s": None,
                "from_kill_s": None,
                "last_s_worst_ms": None,
            }
        t_first = new[0].t
        first_ok: float | None = None
        worst_tail: list[float] = []
        t = t_first
        while t <= t_end:
            b = self.beats(t)
            ok = False
            if b is not None and b[name][2].pid != old_pid and b[name][2].synced:
                mine, tempo, _ = b[name]
                worst = max(abs(mine - v[0]) for n, v in b.items() if n != name) * 60_000.0 / tempo
                ok = worst <= tol_ms
                if t >= t_end - 1.0:
                    worst_tail.append(worst)
            if ok and first_ok is None:
                first_ok = t
            elif not ok:
                first_ok = None
            t += step
        got = None if first_ok is None else first_ok - t_first
        return {
            "agent": name,
            "start_after_kill_s": round(t_first - t_kill, 3),
            "in_time_s": got,
            "from_kill_s": None if got is None else round(got + t_first - t_kill, 3),
            "last_s_worst_ms": max(worst_tail) if worst_tail else None,
        }
