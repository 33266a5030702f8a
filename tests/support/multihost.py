"""Running one ensemble file across the hosts of a NetRig: a launcher per host, a broker on its own
host, the agents' beat clocks sampled at shared instants, and what the stage recorded.

Shared by the multi-host tests (tests/test_multihost_*.py): the whole band spread over four hosts,
and the shipped multi-host example on hosts of its own.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from protocol.timeline import Timeline
from support.ensembles import ROOT, read_json
from support.netns import NetRig

MQTT_PORT = 1883


MIN_BEAT_SAMPLES = 100


def launch(rig: NetRig, host: str, yaml_path: Path, tmp: Path, *extra: str) -> subprocess.Popen[bytes]:
    """run_ensemble.py --host HOST inside that host's namespace; output to tmp/HOST.log."""
    log = open(tmp / f"{host}.log", "wb")
    argv = [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--host", host, "--quiet",
            "--report", str(tmp / f"report-{host}.json"), *extra]
    try:
        return rig.popen(host, argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    finally:
        log.close()


def log_tail(tmp: Path, host: str, n: int = 3000) -> str:
    path = tmp / f"{host}.log"
    return f"--- {host} log ---\n" + (path.read_text(errors="replace")[-n:] if path.exists() else "(none)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class BeatSampler:
    """Reads every agent's published beat clock (timeline + clock offset) at shared instants.

    At instant t of the shared monotonic clock, agent i is at beat timeline_i.beat_at(t + offset_i).
    The spread across agents, in ms at the current tempo, is how far apart their notes would sound;
    each |offset_i| is agent i's own sync error, since the true offset between namespaces is 0.
    """

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self.spreads_ms: list[float] = []
        self.beats: list[float] = []  # the (first agent's) beat of each sample, to place it in the bar
        self.offsets_ms: dict[str, list[float]] = {name: [] for name in paths}

    def sample(self) -> None:
        t = time.monotonic()
        beats, tempo = {}, 0.0
        for name, path in self.paths.items():
            stats = read_json(path)
            tm = stats.get("timemap")
            if not tm or stats.get("sync", {}).get("rtt_ms", 0.0) <= 0.0:
                return  # not synced yet: nothing to compare
            timeline = Timeline(**tm["timeline"])
            if not timeline.playing:
                return
            beats[name] = timeline.beat_at(t + tm["offset_s"])
            tempo = timeline.tempo_at_beat(beats[name])
            self.offsets_ms[name].append(tm["offset_s"] * 1000.0)
        self.spreads_ms.append((max(beats.values()) - min(beats.values())) * 60_000.0 / tempo)
        self.beats.append(next(iter(beats.values())))

    def per_bar(self) -> dict[int, float]:
        """The worst spread in each bar: shows whether error is a start-up transient or lasts."""
        worst: dict[int, float] = {}
        for beat, spread in zip(self.beats, self.spreads_ms, strict=True):
            bar = int(beat // 4)
            worst[bar] = max(worst.get(bar, 0.0), spread)
        return worst

    def summary(self) -> dict[str, Any]:
        s = self.spreads_ms
        return {
            "samples": len(s),
            "spread_ms": {"p50": statistics.median(s), "p99": percentile(s, 99), "max": max(s)} if s else {},
            "abs_offset_ms_max": {n: max(map(abs, v)) for n, v in self.offsets_ms.items() if v},
            "max_spread_ms_per_bar": self.per_bar(),
        }


def start_broker(rig: NetRig, tmp: Path) -> subprocess.Popen[bytes]:
    """mosquitto in the broker host, listening on that host's address only."""
    mosquitto = shutil_which_mosquitto()
    conf = tmp / "mosquitto.conf"
    conf.write_text("\n".join([
        f"listener {MQTT_PORT} {rig.host_ip('broker')}",
        "allow_anonymous true",
        # Without it the broker's Nagle holds each pong until the agent's delayed ACK (40 ms) comes:
        # measured here, every sample's return leg 40 ms late, offsets -19 ms, beat spread 20-40 ms.
        "set_tcp_nodelay true",
        "persistence false",
        f"log_dest file {tmp / 'mosquitto.log'}",
        "connection_messages true",
        "user root",
    ]) + "\n")
    broker = rig.popen("broker", [mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                       stderr=open(tmp / "mosquitto.err", "wb"))
    rig.wait_tcp("stage", (rig.host_ip("broker"), MQTT_PORT), timeout=10.0)
    return broker


def shutil_which_mosquitto() -> str:
    from support.broker import MOSQUITTO, mosquitto_missing_reason

    reason = mosquitto_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    assert MOSQUITTO is not None
    return MOSQUITTO
