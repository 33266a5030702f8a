"""The processes a launch starts on this host: the conductor, the agents the YAML places here, a
model process for each model file several of them share (engine.share), and the output process that
writes every part of this host at its moment (timing.output_host).

Each is a `Child` the supervisor (launcher/supervisor.py) starts, watches and restarts; each dies
with the launcher (`die_with_parent`), and each writes its live stats to its own file in the run's
directory, which the status display and the report read.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.ensemble import Ensemble
from protocol.process import die_with_parent

ROOT = Path(__file__).resolve().parents[1]  # every child starts here, with it on PYTHONPATH
# How long the conductor waits for the launcher's own agents before beat 0 (it starts as soon as all
# are ready); a part that cannot start ends the run before this (supervisor.py: START_FAILURE_S).
WAIT_OWN_AGENTS_S = 30.0


@dataclass
class Child:
    """One supervised process; `restarts` counts how often the launcher brought it back."""

    name: str
    role: str
    argv: list[str]
    stats: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: list[float] = field(default_factory=list)
    start_failures: int = 0  # exits with an error soon after starting, in a row
    stuck_before: int = 0  # notes earlier instances of this part reported stuck at their exit
    env: dict[str, str] = field(default_factory=dict)  # beside the launcher's own environment

    def start(self) -> None:
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        # A child gets SIGTERM (and so releases its notes) if the launcher itself is killed.
        die = functools.partial(die_with_parent, signal.SIGTERM, os.getpid())
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, preexec_fn=die)
        self.started.append(time.monotonic())

    def ended(self) -> None:
        """Before a restart: keep what the instance that ended reported stuck, or the next one's
        stats file (which replaces its own) would hide it from the report."""
        self.stuck_before += int(self.read_stats().get("stuck_notes", 0))

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return {}


def model_hosts(ens: Ensemble, args: argparse.Namespace,
                run_dir: Path) -> tuple[list[Child], dict[str, Child]]:
    """One shared model process per model file that this host's agents with engine.share use (two or
    more of them), and which one each such agent joins."""
    from agents.engines.model_host import KEY_ENV, shared_groups

    mine = {a.name for a in ens.agents if args.host is None or a.host == args.host}
    hosts, joins = [], {}
    env = {KEY_ENV: secrets.token_hex(16)}
    for i, group in enumerate(shared_groups(ens, args.ensemble.resolve().parent, mine)):
        address = socket_path(run_dir, f"model-{i}.sock")
        names = ",".join(a.name for a in group)
        stats = run_dir / f"model-{i}.json"
        argv = [sys.executable, "-m", "agents.engines.model_host", str(args.ensemble.resolve()), "--agents",
                names, "--address", str(address), "--stats", str(stats), "--log-level", args.log_level]
        host = Child(f"model-{i}", "model", argv, stats, env=env)
        hosts.append(host)
        joins.update({a.name: host for a in group})
    return hosts, joins


def socket_path(run_dir: Path, name: str) -> Path:
    """A Unix socket in the run's directory, or in a new temporary one where that path is too long."""
    address = run_dir / name
    if len(str(address)) > 100:  # a Unix socket's path has room for 107 bytes
        address = Path(tempfile.mkdtemp(prefix="barcelona-")) / name
    return address


def output_host(ens: Ensemble, args: argparse.Namespace, run_dir: Path) -> Child | None:
    """The process that writes every part this launcher starts (agents/output_host.py), unless the
    YAML asks each agent to time its own notes (`timing.output_host: false`)."""
    from agents.output_link import KEY_ENV

    if not ens.timing.output_host or not any(args.host is None or a.host == args.host for a in ens.agents):
        return None
    stats = run_dir / "outputs.json"
    address = socket_path(run_dir, "outputs.sock")
    argv = [sys.executable, "-m", "agents.output_host", "--address", str(address), "--stats", str(stats),
            "--log-level", args.log_level]
    if not ens.timing.realtime:
        argv.append("--no-realtime")
    return Child("outputs", "outputs", argv, stats, env={KEY_ENV: secrets.token_hex(16)})


def plan_children(ens: Ensemble, args: argparse.Namespace, run_dir: Path) -> list[Child]:
    py = sys.executable
    yaml_path = str(args.ensemble.resolve())
    common = ["--log-level", args.log_level]
    children, joins = model_hosts(ens, args, run_dir)
    outputs = output_host(ens, args, run_dir)
    if outputs is not None:
        children.append(outputs)
    for a in ens.agents:
        if args.host is None or a.host == args.host:
            stats = run_dir / f"agent-{a.name}.json"
            argv = [py, "-m", "agents", yaml_path, a.name, "--stats", str(stats), *common]
            env: dict[str, str] = {}
            host = joins.get(a.name)
            if host is not None:
                argv += ["--model-host", host.argv[host.argv.index("--address") + 1]]
                env.update(host.env)
            if outputs is not None:
                argv += ["--output-host", outputs.argv[outputs.argv.index("--address") + 1]]
                env.update(outputs.env)
            children.append(Child(a.name, "agent", argv, stats, env=env))
    if args.host is None or ens.conductor.host == args.host:
        stats = run_dir / "conductor.json"
        argv = [
            py,
            "-m",
            "conductor",
            yaml_path,
            "--stats",
            str(stats),
            "--state",
            str(run_dir / "state.json"),
            *common,
        ]
        if args.bars:
            argv += ["--bars", str(args.bars)]
        if args.record:
            argv += ["--record", str(args.record.resolve())]
        if all(args.host is None or a.host == args.host for a in ens.agents):
            # Every part is this launcher's own, each loading its model now: beat 0 waits for them
            # all. A busy machine takes longer than the conductor's own wait to load two models, and
            # a part that joins late misses the first bars (and plays the rest from another start).
            argv += ["--wait-agents", str(WAIT_OWN_AGENTS_S)]
        children.append(Child("conductor", "conductor", argv, stats))
    return children
