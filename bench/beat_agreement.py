"""Beat agreement: how far apart the agents of a real ensemble are on the beat, over each bus.

What is measured
    A real ensemble (ensembles/default.yaml on free loopback ports: a conductor and three agents, each
    its own process) plays for a while, once per bus: OSC; MQTT through a private mosquitto on
    127.0.0.1 configured as Debian ships it, Nagle's algorithm on the broker's sockets ("mqtt");
    and the same with `set_tcp_nodelay true` ("mqtt-nodelay"). Our MqttTransport sets TCP_NODELAY
    on its own client sockets in both. Every agent writes its own beat clock to its stats file
    whenever its timeline or its clock-offset estimate changes: `timemap = {timeline, offset_s}`.
    This bench polls those files, keeps each agent's history of beat clocks, and afterwards
    evaluates every agent's clock at the same instants t (every `--step-ms` of the shared kernel
    clock, time.monotonic, which all processes on one host share):

        beat_i(t) = LocalTimeMap(Timeline(**timeline_i), offset_s_i).beat_at(t)

    `spread` is max_i beat_i(t) - min_i beat_i(t), turned from beats into milliseconds at the tempo
    playing at t. It is what a listener hears as flamming between parts, before output jitter.
    `vs conductor` is each agent's beat minus the conductor's own (the newest timeline any agent
    holds, read with offset 0: on one host the true offset is exactly 0), as |error| in ms.

    Two tempo changes are sent to the conductor's control port like a control surface would
    (`/barcelona/<ens>/tempo BPM`, OSC to 127.0.0.1): one wherever it falls in the bar, one 15 ms
    before a bar line (the hard case: the change is due at that bar line, so the new timeline has
    those 15 ms to reach every agent; if the conductor handles the control only after the bar line,
    the change goes to the next bar and the line under the tables says so). "lag" is how long after
    the control each agent held the new timeline; "lead" is how long before the change beat it did
    (negative: it switched late, with a phase jump).

How to read it
    Rows per bus and window: "all" is every sample while all agents play; "start" the first two
    seconds of playing (clock sync still settling); "steady" the rest outside the tempo-change
    windows; "tempo" each window from the control until one second after the change beat.
    p50/p99/max of the spread and of the worst agent's error versus the conductor. Goal (DESIGN §2):
    spread p99 <= 0.01 ms; Ableton Link manages 0.009 ms on this host. The spread is mostly the
    difference between the agents' offset estimates, each off by at most half its ping round trip
    (on one host the true offset is 0): the agent table shows offset, round trip and how far the
    offset wandered during the run. The machine is shared and noisy: compare buses within one run
    (the ratio lines), not numbers across runs.

    .venv/bin/python -m bench.beat_agreement [--quick] [--transport osc|mqtt|mqtt-nodelay|all]
                                             [--seconds 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import ctypes
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/beat_agreement.py`
    sys.path.insert(0, str(ROOT))

from protocol.timeline import LocalTimeMap, Timeline  # noqa: E402
from protocol.transport_osc import encode_message  # noqa: E402

GOAL_P99_MS = 0.01
LINK_P99_MS = 0.009
POLL_S = 0.005
START_S = 2.0  # the first seconds of playing, while clock sync settles, are a window of their own
LATE_MS = 15.0  # the second tempo change is sent this long before a bar line
START_TIMEOUT_S = 25.0
STOP_GRACE_S = 3.0
HOST = "127.0.0.1"
TRANSPORTS = ("osc", "mqtt", "mqtt-nodelay")


# -- processes --------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Runs in each child before exec: SIGTERM it if this bench dies, even by SIGKILL (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class StopRequestedError(Exception):
    """SIGTERM turned into an exception so the same `finally` cleanup runs as for Ctrl-C."""


def _on_sigterm(_sig: int, _frame: FrameType | None) -> None:
    raise StopRequestedError


@dataclass
class Child:
    """One process of the ensemble, its stats file and its log (shown when it fails)."""

    name: str
    argv: list[str]
    stats: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def stop_all(children: list[Child]) -> None:
    """SIGTERM every child (they release notes and write final stats), SIGKILL any left after the grace."""
    live = [c for c in children if c.alive()]
    for c in live:
        assert c.proc is not None
        with contextlib.suppress(ProcessLookupError):
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for c in children:
        if c.proc is None:
            continue
        try:
            c.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_udp_block(n: int) -> int:
    """A base port with n consecutive free UDP ports: the OSC bus puts process i at base + i."""
    for _ in range(200):
        base = free_port()
        if base + n >= 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((HOST, p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no block of free UDP ports on 127.0.0.1")


def write_ensemble(directory: Path, transport: str, broker_port: int | None) -> tuple[Path, dict[str, Any]]:
    """The default ensemble with free loopback ports, the chosen bus and an absolute melody path."""
    source = ROOT / "ensembles" / "default.yaml"
    data = yaml.safe_load(source.read_text())
    bus = "mqtt" if transport.startswith("mqtt") else "osc"
    data["bus"] = {"transport": bus, "osc": {"base_port": free_udp_block(len(data["agents"]) + 2)}}
    if bus == "mqtt":
        data["bus"]["mqtt"] = {"host": HOST, "port": broker_port}
    data["control"] = {**data.get("control", {}), "listen": HOST, "port": free_port(),
                       "allow": ["127.0.0.1/32"]}
    human = data.get("human") or {}
    if human.get("source", {}).get("path"):
        human["source"]["path"] = str((source.parent / human["source"]["path"]).resolve())
    path = directory / f"ensemble-{transport}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data


def make_broker(nodelay: bool) -> Any:
    """The test helper's private mosquitto with `set_tcp_nodelay` set as asked: false is how Debian
    ships it (Nagle's algorithm on the broker's sockets), true is what docs and tests recommend."""
    from tests.support.broker import Mosquitto, mosquitto_missing_reason

    if reason := mosquitto_missing_reason():
        raise RuntimeError(reason)

    class Broker(Mosquitto):
        def _configure(self) -> None:
            super()._configure()
            conf = self.dir / "mosquitto.conf"
            lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("set_tcp_nodelay")]
            conf.write_text("\n".join([*lines, f"set_tcp_nodelay {'true' if nodelay else 'false'}"]) + "\n")

    return Broker()


# -- sampling the agents' beat clocks ---------------------------------------------------------------
@dataclass
class History:
    """One agent's beat clocks over time: `times[k]` is when `maps[k]` took over (monotonic s)."""

    times: list[float] = field(default_factory=list)
    maps: list[LocalTimeMap] = field(default_factory=list)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    sync: dict[str, float] = field(default_factory=dict)
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
            data = read_json(path)
            tm = data.get("timemap")
            if not tm:
                continue
            written = float(data.get("updated", 0.0)) - self.wall_minus_mono
            h = self.hist[name]
            h.add(min(written, now) if written > 0 else now, tm)
            h.sync = {k: float(v) for k, v in (data.get("sync") or {}).items()}
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


def check_alive(children: list[Child]) -> None:
    for c in children:
        if not c.alive():
            code = c.proc.returncode if c.proc else None
            raise RuntimeError(f"{c.name} exited early with {code}:\n{c.tail()}")


# -- one transport ----------------------------------------------------------------------------------
@dataclass
class TempoChange:
    label: str
    bpm: float
    sent: float  # monotonic time the control left this process
    epoch: int = -1
    change_time: float = math.nan  # conductor time of the change beat (same clock on one host)
    received: dict[str, float] = field(default_factory=dict)


def send_tempo(port: int, ensemble: str, bpm: float) -> float:
    """One control message as a surface sends it (float32 where the value is a number)."""
    data = encode_message(f"/barcelona/{ensemble}/tempo", [("f", float(bpm))])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        t = time.monotonic()
        sock.sendto(data, (HOST, port))
    return t


def next_bar_time(poller: Poller) -> float:
    """When the next bar line falls, from any agent's current clock."""
    tm = next(h.maps[-1] for h in poller.hist.values() if h.maps)
    beat = tm.beat_at(time.monotonic())
    bpb = tm.timeline.beats_per_bar
    t = tm.time_at((math.floor(beat / bpb) + 1) * bpb)
    assert t is not None
    return t


def run_transport(transport: str, seconds: float, step_s: float, work: Path, quiet: bool) -> dict[str, Any]:
    """Play the ensemble on one bus, change tempo twice, and return the sampled histories."""
    broker = None
    children: list[Child] = []
    try:
        broker_port = None
        if transport.startswith("mqtt"):
            broker = make_broker(nodelay=transport == "mqtt-nodelay").start()
            broker_port = broker.port
        yaml_path, data = write_ensemble(work, transport, broker_port)
        ens_name, control_port = data["name"], data["control"]["port"]
        py = sys.executable
        stats: dict[str, Path] = {}
        for a in data["agents"]:
            name = a["name"]
            stats[name] = work / f"{transport}-{name}.json"
            argv = [py, "-m", "agents", str(yaml_path), name, "--stats", str(stats[name])]
            children.append(Child(name, argv, stats[name], work / f"{transport}-{name}.log"))
        cstats = work / f"{transport}-conductor.json"
        argv = [py, "-m", "conductor", str(yaml_path), "--stats", str(cstats), "--wait-agents", "15"]
        children.append(Child("conductor", argv, cstats, work / f"{transport}-conductor.log"))
        for c in children:
            c.start()
        poller = Poller(stats)
        progress(f"[{transport}] started conductor and {len(stats)} agents; waiting for them to play", quiet)
        deadline = time.monotonic() + START_TIMEOUT_S
        while poller.playing_since() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"[{transport}] agents not all playing after {START_TIMEOUT_S} s")
            poller.run_for(0.02, children)
        t_play = poller.playing_since()
        assert t_play is not None
        if t_play > time.monotonic():
            poller.run_for(t_play - time.monotonic(), children)  # count-in: the first beat is ahead
        progress(f"[{transport}] all agents playing; sampling for {seconds:.0f} s", quiet)
        changes: list[TempoChange] = []
        poller.run_for(START_S + (seconds - START_S) / 3, children)
        # Wherever in the bar it falls: the normal case, the change is due at the next bar line.
        changes.append(TempoChange("unaligned", 100.0, send_tempo(control_port, ens_name, 100.0)))
        poller.run_for(2.5, children)  # a bar at 100 bpm: the first change is behind us
        # Just before a bar line: the change is due LATE_MS after the control, so every agent must
        # hear it within that, or it switches late with a phase jump.
        bar = next_bar_time(poller)
        if bar - time.monotonic() < 0.5:
            poller.run_for(bar - time.monotonic() + 0.1, children)
            bar = next_bar_time(poller)
        send_at = bar - LATE_MS / 1000.0
        poller.run_for(max(0.0, send_at - 0.005 - time.monotonic()), children)
        while time.monotonic() < send_at:  # the last few ms: wait precisely
            pass
        sent = send_tempo(control_port, ens_name, 120.0)
        changes.append(TempoChange(f"{LATE_MS:g} ms before bar", 120.0, sent))
        poller.run_for(max(1.5, seconds - (time.monotonic() - t_play)), children)
        t_end = time.monotonic()
        progress(f"[{transport}] stopping", quiet)
    finally:
        stop_all(children)
        if broker is not None:
            broker.close()
    poller.poll()
    return analyse(transport, poller, changes, t_play, t_end, step_s)


def progress(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


# -- analysis ---------------------------------------------------------------------------------------
def pct(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    p50, p99 = np.percentile(values, (50, 99))
    return {"count": int(values.size), "p50": float(p50), "p99": float(p99), "max": float(values.max())}


def analyse(transport: str, poller: Poller, changes: list[TempoChange], t_play: float, t_end: float,
            step_s: float) -> dict[str, Any]:
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
    windows = {"all": np.ones(ts.size, dtype=bool), "start": start, "steady": ~in_change & ~start,
               "tempo": in_change & ~start}
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



# -- output -----------------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def print_tables(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 130))
    t = Table(title=f"Beat spread between agents, ms of beat time (goal p99 ≤ {GOAL_P99_MS}; "
                    f"Link {LINK_P99_MS})")  # fmt: skip
    for col in ("bus", "window", "seconds", "spread p50", "p99", "max", "vs conductor p50", "p99", "max",
                "goal"):
        t.add_column(col, justify="right")
    for res in results:
        for r in res["rows"]:
            s, e = r["spread_ms"], r["vs_conductor_ms"]
            t.add_row(r["transport"], r["window"], f"{r['seconds']:.1f}", fmt(s["p50"]), fmt(s["p99"]),
                      fmt(s["max"]), fmt(e["p50"]), fmt(e["p99"]), fmt(e["max"]),
                      "-" if s["count"] == 0 else ("yes" if s["p99"] <= GOAL_P99_MS else "NO"))  # fmt: skip
    console.print(t)
    a = Table(title="Agents: clock offset to the conductor, ms (true value on one host: 0); tempo changes")
    labels = [c["label"] for c in results[0]["tempo_changes"]] if results else []
    cols = ["bus", "agent", "offset", "rtt", "offset min", "max", "updates", "|err| p99"]
    for label in labels:
        cols += [f"{label}: lag", "lead"]
    for col in cols:
        a.add_column(col, justify="right")
    for res in results:
        for g in res["agents"]:
            cells = [g["transport"], g["agent"], fmt(g["offset_ms"]), fmt(g["rtt_ms"]),
                     fmt(g["offset_min_ms"]), fmt(g["offset_max_ms"]), str(g["clock_changes"]),
                     fmt(g["vs_conductor_ms"]["p99"])]  # fmt: skip
            for c in g["tempo_changes"]:
                cells += [fmt(c["lag_ms"], 1), fmt(c["lead_ms"], 1)]
            a.add_row(*cells)
    console.print(a)
    for res in results:
        labels = ", ".join(f"{c['label']} → {c['bpm']:g} bpm due {fmt(c['control_to_change_ms'], 1)} ms "
                           f"after the control, heard by {len(c['heard_by'])}" for c in res["tempo_changes"])
        print(f"{res['transport']}: tempo changes: {labels}")
    by = {r["transport"]: {row["window"]: row for row in r["rows"]} for r in results}
    for other in ("mqtt", "mqtt-nodelay"):
        if "osc" in by and other in by:
            o, m = by["osc"]["all"]["spread_ms"], by[other]["all"]["spread_ms"]
            ratios = "  ".join(f"{k} {m[k] / o[k]:.1f}x" if o[k] else f"{k} -" for k in ("p50", "p99", "max"))
            print(f"spread {other}/osc (all): {ratios}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transport", choices=(*TRANSPORTS, "all"), default="all",
                    help="mqtt-nodelay: mosquitto with set_tcp_nodelay true (default: all three)")
    ap.add_argument("--seconds", type=float, default=20.0, help="sampled seconds of playing per transport")
    ap.add_argument("--step-ms", type=float, default=1.0, help="sampling step on the shared clock")
    ap.add_argument("--quick", action="store_true", help="6 s per bus (the whole run < 60 s)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    seconds = 6.0 if args.quick else max(args.seconds, 6.0)
    transports = list(TRANSPORTS) if args.transport == "all" else [args.transport]
    signal.signal(signal.SIGTERM, _on_sigterm)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="barcelona-beat-") as tmp:
            for transport in transports:
                step_s = args.step_ms / 1000.0
                results.append(run_transport(transport, seconds, step_s, Path(tmp), args.quiet))
    except (KeyboardInterrupt, StopRequestedError):
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_tables(results)
    if args.json:
        report = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "platform": platform.platform(),
                        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
            "config": {"seconds": seconds, "step_ms": args.step_ms, "ensemble": "ensembles/default.yaml"},
            "goal": {"spread_p99_ms": GOAL_P99_MS, "link_p99_ms": LINK_P99_MS},
            "transports": results,
        }  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
