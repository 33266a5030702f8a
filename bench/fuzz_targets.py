"""What bench.fuzz aims at: run_ensemble.py in a subprocess, and each receiving process's count of
what it refused.

A process counts the packets it refuses in its stats file (`invalid_messages`); a datagram the
kernel dropped before the process could read it (a full socket buffer) is counted from
/proc/net/udp instead, so every packet sent is accounted for by one or the other.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def udp_drops(port: int, host: str = "127.0.0.1", pid: int | str = "self") -> int:
    """Datagrams the kernel dropped on a bound UDP socket (buffer full), which no process can count."""
    want = f"{socket.htonl(struct.unpack('!I', socket.inet_aton(host))[0]):08X}:{port:04X}"
    try:
        lines = Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(int(ln.split()[-1]) for ln in lines if ln.split()[1] == want)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def wait_until(cond: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    """Poll a condition against a deadline; returns its last value (falsy when it never held)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@dataclass
class Proc:
    """One receiving process: its stats file and the UDP ports (if any) where it takes our packets."""

    name: str
    stats: Path
    ports: list[int] = field(default_factory=list)
    expected: int = 0  # packets sent to it that it must refuse
    base_invalid: int = 0

    def invalid(self) -> int:
        return int(read_json(self.stats).get("invalid_messages", 0)) - self.base_invalid

    def dropped(self) -> int:
        return sum(udp_drops(p) for p in self.ports)

    def caught_up(self) -> bool:
        return self.invalid() + self.dropped() >= self.expected


@dataclass
class Ensemble:
    """run_ensemble.py in a subprocess, with its per-process stats in `stats_dir`."""

    yaml_path: Path
    stats_dir: Path
    agents: tuple[str, ...]
    proc: subprocess.Popen[bytes] | None = None
    wrap: Callable[[list[str]], list[str]] = list  # e.g. run it inside a network namespace

    def start(self, timeout: float = 60.0) -> None:
        report = self.stats_dir / "report.json"
        argv = [sys.executable, str(ROOT / "run_ensemble.py"), str(self.yaml_path), "--quiet",
                "--stats-dir", str(self.stats_dir), "--report", str(report)]  # fmt: skip
        self.stats_dir.mkdir(parents=True, exist_ok=True)
        with open(self.stats_dir / "launcher.log", "wb") as log:  # a file: a full pipe would block them
            self.proc = subprocess.Popen(self.wrap(argv), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        roster = set(self.agents)
        ok = wait_until(lambda: self.proc is None or self.proc.poll() is not None
                        or (self.playing() and roster <= set(self.conductor().get("roster", []))),
                        timeout)  # fmt: skip
        if not ok or self.proc.poll() is not None:
            raise RuntimeError(f"ensemble did not start: {self.stop()[1][-2000:]}")

    def conductor(self) -> dict[str, Any]:
        return read_json(self.stats_dir / "conductor.json")

    def agent(self, name: str) -> dict[str, Any]:
        return read_json(self.stats_dir / f"agent-{name}.json")

    def playing(self) -> bool:
        return bool(self.conductor().get("playing"))

    def pids(self) -> dict[str, int]:
        out = {"conductor": int(self.conductor().get("pid", 0))}
        out.update({a: int(self.agent(a).get("pid", 0)) for a in self.agents})
        return out

    def snapshot(self) -> dict[str, Any]:
        """What a hostile packet must never change: tempo, plan, mix, transport (not the beat)."""
        c, state = self.conductor(), read_json(self.stats_dir / "state.json")
        tl = state.get("timeline", {})
        keys = ("plan", "plan_epoch", "params_epoch", "mix")
        return {"playing": c.get("playing"), "tempo": c.get("tempo"), "roster": c.get("roster"),
                "next_tempo_bpm": tl.get("next_tempo_bpm"), **{k: state.get(k) for k in keys}}  # fmt: skip

    def stop(self, timeout: float = 20.0) -> tuple[int, str]:
        """SIGTERM the launcher (it stops everything within 2 s); its exit code and its log."""
        if self.proc is None:
            return 0, ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return int(self.proc.returncode), (self.stats_dir / "launcher.log").read_text(errors="replace")

    def report(self) -> dict[str, Any]:
        return read_json(self.stats_dir / "report.json")
