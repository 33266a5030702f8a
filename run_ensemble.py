#!/usr/bin/env python3
"""Run a Barcelona ensemble: `python run_ensemble.py ensembles/default.yaml`.

Validates the YAML, starts the conductor and this host's agents as separate processes, restarts an
agent that dies, shows live status, and stops everything cleanly on Ctrl-C or SIGTERM (every child
gone within 2 s, every note released). Nothing it started outlives it: each child dies with the
launcher (`die_with_parent`), and the launcher adopts, ends and reaps whatever a dead child leaves
behind (a model process), so `out=$(python run_ensemble.py ... --bars 8)` always returns. See
README.md for the flags.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.artifacts import make_artifacts
from launcher.check import check_file, check_ports_free
from protocol.ensemble import Ensemble
from protocol.process import become_subreaper, die_with_parent, freeze_heap, reap_orphans

ROOT = Path(__file__).resolve().parent
STOP_GRACE_S = 1.5
REAP_S = 1.0  # how long the final sweep waits for adopted orphans to die and be reaped
# An agent that exits with an error this soon after starting, three times in a row, cannot start
# (a wrong password, a missing port): give up with its message rather than restart it for ever.
START_FAILURE_S = 15.0
# How long the conductor waits for the launcher's own agents before beat 0 (it starts as soon as all
# are ready); a part that cannot start ends the run before this (START_FAILURE_S).
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

    def start(self) -> None:
        env = {
            **os.environ,
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="run_ensemble.py", description="Run a Barcelona ensemble.")
    ap.add_argument("ensemble", type=Path, nargs="?", default=ROOT / "ensembles" / "default.yaml")
    ap.add_argument("--bars", type=int, help="play N bars, then stop and exit")
    ap.add_argument("--record", type=Path, help="write a MIDI file: one named track per part, human included")
    ap.add_argument("--report", type=Path, help="write a JSON report (timing, sync, notes, stuck notes)")
    ap.add_argument("--check", action="store_true", help="validate the YAML and exit")
    ap.add_argument("--host", help="start only the processes the YAML places on this host")
    ap.add_argument("--list-ports", action="store_true", help="list MIDI output and input ports and exit")
    ap.add_argument("--quiet", action="store_true", help="no live status display")
    ap.add_argument(
        "--stats-dir", type=Path, help="keep each process's live stats JSON in DIR (default: a temp dir)"
    )
    ap.add_argument("--render", type=Path, metavar="FILE.wav", help="after the run, render the recording")
    ap.add_argument("--plot", type=Path, metavar="FILE.png", help="after the run, draw a piano roll")
    ap.add_argument(
        "--from-midi", type=Path, metavar="FILE.mid", help="play nothing: --render/--plot this recording"
    )
    ap.add_argument("--schema", action="store_true", help="print the ensemble YAML's JSON Schema and exit")
    ap.add_argument("--log-level", default="WARNING")
    return ap.parse_args(argv)


def list_ports() -> int:
    """What a YAML `output: {type: midi, port: ...}` can name on this machine."""
    from protocol.midi_backend import midi_backend_error

    if (error := midi_backend_error()) is not None:
        print(f"error: --list-ports: {error}", file=sys.stderr)
        return 1
    from agents.outputs.midi import available_apis
    from agents.outputs.midi import list_ports as outputs

    apis = available_apis()
    print("MIDI systems:", ", ".join(apis) or "none reachable (no ALSA sequencer, no JACK server)")
    ports = outputs("auto")
    print("MIDI outputs:", ", ".join(ports) if ports else "(none)")
    return 0


def plan_children(ens: Ensemble, args: argparse.Namespace, run_dir: Path) -> list[Child]:
    py = sys.executable
    yaml_path = str(args.ensemble.resolve())
    common = ["--log-level", args.log_level]
    children = []
    for a in ens.agents:
        if args.host is None or a.host == args.host:
            stats = run_dir / f"agent-{a.name}.json"
            children.append(
                Child(
                    a.name,
                    "agent",
                    [py, "-m", "agents", yaml_path, a.name, "--stats", str(stats), *common],
                    stats,
                )
            )
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


class Launcher:
    def __init__(self, ens: Ensemble, args: argparse.Namespace, children: list[Child]) -> None:
        self.ens, self.args, self.children = ens, args, children
        self.stopping = False
        self.t0 = time.monotonic()
        self.ended_by = ""  # what ended the run, for the report: bars, a stop control, a signal…

    def request_stop(self, signum: int = 0, *_: object) -> None:
        if not self.ended_by:
            self.ended_by = signal.Signals(signum).name if signum else "a stop request"
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        # Orphans of a dead child (a model process whose agent was SIGKILLed) become ours to end
        # and reap, rather than init's to keep for ever with this launcher's stdout open.
        become_subreaper()
        for c in sorted(self.children, key=lambda c: c.role != "agent"):
            c.start()
        conductor = next((c for c in self.children if c.role == "conductor"), None)
        display = None if self.args.quiet else _make_display(self)
        rc = 0
        try:
            while not self.stopping:
                time.sleep(0.05)
                if conductor is not None and not conductor.alive:
                    code = conductor.proc.returncode if conductor.proc else 1
                    self.reap_orphans()
                    if code == 0 and self.args.bars:
                        self._bars_ended(conductor)
                        break
                    if code in (0, -signal.SIGTERM, -signal.SIGINT):
                        self.ended_by = self.ended_by or "the conductor's exit"
                        break
                    if self._cannot_start(conductor, code):
                        rc = 1
                        break
                    print(f"conductor exited with {code}; restarting it (state is kept)", file=sys.stderr)
                    conductor.restarts += 1
                    conductor.start()
                for c in self.children:
                    if c.role == "agent" and not c.alive and not self.stopping:
                        code = c.proc.returncode if c.proc else None
                        self.reap_orphans()
                        c.ended()
                        if self._cannot_start(c, code):
                            rc = 1
                            self.stopping = True
                            break
                        print(f"agent {c.name} exited with {code}; restarting it", file=sys.stderr)
                        c.restarts += 1
                        c.start()
                if display is not None:
                    display.update()
        finally:
            self.shutdown()
            if display is not None:
                display.close()
        if (
            conductor is not None
            and conductor.proc is not None
            and conductor.proc.returncode not in (0, None)
        ):
            if conductor.proc.returncode not in (-signal.SIGTERM, -signal.SIGINT):
                rc = rc or 1
        return rc

    def _cannot_start(self, c: Child, code: int | None) -> bool:
        """Three error exits in a row, each soon after starting: restarting will not help."""
        lived = time.monotonic() - c.started[-1] if c.started else 0.0
        c.start_failures = c.start_failures + 1 if code == 1 and lived < START_FAILURE_S else 0
        if c.start_failures >= 3:
            who = "conductor" if c.role == "conductor" else f"agent {c.name}"
            print(f"{who} keeps failing at start; giving up (its error is above)", file=sys.stderr)
            self.ended_by = f"giving up: {who} keeps failing at start"
            return True
        return False

    def _bars_ended(self, conductor: Child) -> None:
        """The conductor finished a --bars run: its N bars, or a stop control that ended it early."""
        by = str(conductor.read_stats().get("ended_by") or "")
        self.ended_by = by or f"bars ({self.args.bars} played)"
        if by:
            print(f"run stopped by {by}", file=sys.stderr)

    def shutdown(self) -> None:
        """SIGTERM everyone (they release their notes), then SIGKILL whatever is left after the grace;
        last, end and reap every orphan a child left behind."""
        live = [c for c in self.children if c.alive]
        for c in live:
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait()
        # A model process killed with its agent is adopted (become_subreaper) a moment after the
        # agent dies: sweep until none is left, or REAP_S has passed.
        deadline = time.monotonic() + REAP_S
        while self.reap_orphans() and time.monotonic() < deadline:
            time.sleep(0.01)

    def reap_orphans(self) -> int:
        """End and reap what this launcher adopted: it starts no process of its own but its children
        while it supervises, so any other child is an orphan a dead child left behind."""
        return reap_orphans({c.proc.pid for c in self.children if c.proc is not None})

    def report(self) -> dict[str, Any]:
        parts: dict[str, Any] = {}
        cond = next((c.read_stats() for c in self.children if c.role == "conductor"), {})
        stuck = 0
        for c in self.children:
            if c.role != "agent":
                continue
            s = c.read_stats()
            sounding = int(s.get("sounding", 0)) if c.alive else 0
            stuck += c.stuck_before + int(s.get("stuck_notes", 0)) + sounding
            parts[c.name] = {
                "role": "agent",
                "notes": int(s.get("notes", 0)),
                "late_notes": int(s.get("late_notes", 0)),
                # notes left out because they could only have started 0.25 s late or more
                "dropped_late": int(s.get("dropped_late", 0)),
                "timing_ms": s.get("timing_ms", {"p50": 0.0, "p99": 0.0, "max": 0.0}),
                # sync.state: synced, unsynced (no pong for 2 s: its clock is unchecked) or syncing
                "sync": s.get("sync", {"offset_ms": 0.0, "rtt_ms": 0.0, "state": "unknown"}),
                "invalid_messages": int(s.get("invalid_messages", 0)),
                "restarts": c.restarts,
                "priority": s.get("priority", "none"),
                "stuck_notes": c.stuck_before + int(s.get("stuck_notes", 0)),
            }
            if cond:
                # What the recording holds of this part (every note it committed), beside what it
                # played: equal unless notes were lost on the way (the agent sends unacknowledged ones
                # again, agents/unacked.py) or a stall left some out (`dropped_late`).
                parts[c.name]["recorded"] = int((cond.get("recorded") or {}).get(c.name, 0))
                # bars it rested while the player had its part (docs/roles.md)
                parts[c.name]["yielded_bars"] = int(((cond.get("roles") or {}).get("yielded_bars") or {})
                                                    .get(c.name, 0))
        if self.ens.human is not None and cond:
            parts[self.ens.human.name] = {
                "role": "human",
                "notes": int(cond.get("human_notes", 0)),
                "recorded": int((cond.get("recorded") or {}).get(self.ens.human.name, 0)),
                "late_notes": 0,
                "dropped_late": 0,
                "timing_ms": {"p50": 0.0, "p99": 0.0, "max": 0.0},
                "sync": {"offset_ms": 0.0, "rtt_ms": 0.0},
                "invalid_messages": 0,
                "restarts": 0,
            }
        return {
            "ensemble": self.ens.name,
            "bus": self.ens.bus.transport,
            "bars": self.args.bars,
            "duration_s": round(time.monotonic() - self.t0, 3),
            "ended_by": self.ended_by,
            "stuck_notes": stuck,
            # Agents out of sync at the end: playing on a clock no pong has checked (docs/multihost.md).
            "unsynced": sorted(n for n, p in parts.items() if p["sync"].get("state") == "unsynced"),
            "parts": parts,
            "conductor": {
                **{
                    k: cond.get(k)
                    for k in ("invalid_messages", "invalid_reasons", "refused", "recorded", "tempo", "bar",
                              "roles")
                },
                "restarts": sum(c.restarts for c in self.children if c.role == "conductor"),
            }
            if cond
            else {},
        }


def _make_display(launcher: Launcher) -> Any:
    from launcher.status import StatusDisplay

    return StatusDisplay(launcher)


def main(argv: list[str] | None = None) -> int:
    freeze_heap()  # after the imports (protocol/process.py says why)
    args = parse_args(argv)
    if args.list_ports:
        return list_ports()
    if args.schema:
        from launcher.schema import main as print_schema

        return print_schema()
    if args.bars is not None and args.bars < 1:
        print("error: --bars: must be at least 1", file=sys.stderr)
        return 1
    # Everything a run would trip on, before anything starts; --check stops here, a launch goes on only
    # when there is nothing (a run started from the file --check accepted must not fail at start-up).
    ens, problems = check_file(args.ensemble, args.host)
    if ens is not None and not args.check and args.from_midi is None:
        problems = [f"{args.ensemble}: {p}" for p in check_ports_free(ens, args.host)]
    if ens is None or problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.check:
        print(
            f"ok: {args.ensemble}: ensemble {ens.name!r}, {len(ens.agents)} agents, bus {ens.bus.transport}"
        )
        return 0
    if args.from_midi is not None:
        if args.render is None and args.plot is None:
            print(
                "error: --from-midi: say what to make with --render FILE.wav and/or --plot FILE.png",
                file=sys.stderr,
            )
            return 1
        return make_artifacts(args.from_midi, ens, args.render, args.plot, args.quiet)
    with tempfile.TemporaryDirectory(prefix="barcelona-") as tmp:
        run_dir = Path(tmp)
        if (args.render or args.plot) and args.record is None:
            args.record = run_dir / "session.mid"
        if args.stats_dir is not None:
            args.stats_dir.mkdir(parents=True, exist_ok=True)
            run_dir = args.stats_dir
            # A new run starts from zero: an old state file would resume the last run's conductor,
            # and old stats would be added to this run's counts as if its agents had restarted.
            stale_files = ["conductor.json", "state.json", "notes.journal"]
            for stale in [*run_dir.glob("agent-*.json"), *(run_dir / name for name in stale_files)]:
                stale.unlink(missing_ok=True)
        children = plan_children(ens, args, run_dir)
        if not children:
            print(
                f"error: --host: nothing in {args.ensemble} is placed on host {args.host!r}", file=sys.stderr
            )
            return 1
        launcher = Launcher(ens, args, children)
        rc = launcher.run()
        report = launcher.report()
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=2))
        if not args.quiet:
            _print_summary(report)
        for name in report["unsynced"]:
            sync = report["parts"][name]["sync"]
            print(f"warning: agent {name} is unsynced: no pong from the conductor's clock at "
                  f"{sync.get('pings_to', '?')} (check conductor.address)", file=sys.stderr)  # fmt: skip
        if report["stuck_notes"]:
            print(f"warning: {report['stuck_notes']} notes were still sounding at the end", file=sys.stderr)
        if args.render or args.plot:
            rc = make_artifacts(args.record, ens, args.render, args.plot, args.quiet) or rc
    return rc


def _print_summary(report: dict[str, Any]) -> None:
    print(
        f"{report['ensemble']}: {report['duration_s']:.1f} s on the {report['bus']} bus, "
        f"stuck notes {report['stuck_notes']}"
    )
    for name, p in report["parts"].items():
        t = p["timing_ms"]
        print(
            f"  {name:<10} {p['role']:<6} notes {p['notes']:>5}  late {p['late_notes']:>3}  "
            f"timing p50 {t['p50']:.3f} p99 {t['p99']:.3f} max {t['max']:.3f} ms  restarts {p['restarts']}"
            + (f"  left out late {p['dropped_late']}" if p.get("dropped_late") else "")
        )


if __name__ == "__main__":
    sys.exit(main())
