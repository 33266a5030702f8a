"""What the security tests share: OSC datagrams, a launcher or a conductor alone, and docs/security.md.

The recipes and limits under test are written in docs/security.md, so its table is read here; a
conductor run on its own (no agents, so it starts at once) is what a control surface talks to.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder

from protocol import codec
from protocol.ensemble import load_ensemble
from support.ensembles import DEFAULT, ROOT, read_json, wait_for, write_ensemble

ENS = "demo"
DOCS_ACL = ROOT / "docs" / "security.md"


def osc(address: str, *args: tuple[str, Any]) -> bytes:
    """An OSC datagram as a control surface sends it: (type tag, value) per argument."""
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    return b.build().dgram


def launch(yaml_path: Path, log: Path, *extra: str, wrap: Callable[[list[str]], list[str]] = list,
           ) -> subprocess.Popen[bytes]:  # fmt: skip
    """run_ensemble.py, its output to `log`; `wrap` puts the command inside another (a namespace)."""
    argv = [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", *extra]
    with open(log, "wb") as out:
        return subprocess.Popen(wrap(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL if it does not end in time; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def agents_named(*names: str) -> list[dict[str, Any]]:
    """The named agents of the test ensemble, as YAML dicts to place in an override."""
    return [a for a in yaml.safe_load(DEFAULT.read_text())["agents"] if a["name"] in names]


def codec_osc(msg: Any) -> bytes:
    """A bus message as the OSC bus carries it, for sending from a stranger."""
    address, args = codec.to_osc(ENS, msg)
    return osc(address, *args)


def enforced() -> dict[str, str]:
    """The rule -> value rows of security.md's "What the code enforces" table."""
    section = DOCS_ACL.read_text().split("## What the code enforces", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    return rows


class ConductorProc:
    """`python -m conductor` alone (no agents: it starts at once) with its stats file, for the surface."""

    def __init__(self, tmp: Path, overrides: dict[str, Any], *extra: str,
                 wrap: Callable[[list[str]], list[str]] = list) -> None:  # fmt: skip
        self.path = write_ensemble(tmp, overrides)
        self.cfg = load_ensemble(self.path)
        self.stats_path, self.log = tmp / "conductor.json", tmp / "conductor.log"
        argv = [sys.executable, "-m", "conductor", str(self.path), "--stats", str(self.stats_path),
                "--wait-agents", "0", *extra]  # fmt: skip
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(wrap(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        wait_for(lambda: self.stats() or self.proc.poll() is not None, 30, "the conductor's stats")
        assert self.proc.poll() is None, self.log.read_text(errors="replace")

    @property
    def control(self) -> tuple[str, int]:
        return ("127.0.0.1", self.cfg.control.port)

    def stats(self) -> dict[str, Any]:
        return read_json(self.stats_path)

    def stop(self) -> str:
        rc = stop(self.proc)
        text = self.log.read_text(errors="replace")
        assert rc == 0 and "Traceback" not in text, text[-3000:]
        return text


def sender(host: str) -> socket.socket:
    """A UDP socket bound to `host` (a loopback address): skips where the machine cannot send from it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
    except OSError as exc:
        s.close()
        pytest.skip(f"cannot send from {host} on this machine: {exc}")
    return s
