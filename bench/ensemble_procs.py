"""A real ensemble as child processes on free loopback ports: what the beat-agreement bench plays.

WHY apart from the bench: starting, watching and stopping the conductor and agents (and finding
free ports for their bus and control surface) is the same whatever is measured; the bench itself
only decides what to sample and when to change tempo. bench/soak_setup.py uses the port helpers too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.procs import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STOP_GRACE_S = 3.0


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
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
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


def check_alive(children: list[Child]) -> None:
    """Raise, with its log's tail, as soon as any child has exited: samples without it mean nothing."""
    for c in children:
        if not c.alive():
            code = c.proc.returncode if c.proc else None
            raise RuntimeError(f"{c.name} exited early with {code}:\n{c.tail()}")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port on 127.0.0.1 that is free now (the OS picks it), for a bus or control socket."""
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


