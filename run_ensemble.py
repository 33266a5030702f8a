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
import json
import sys
import tempfile
from pathlib import Path

from launcher.artifacts import make_artifacts
from launcher.check import check_file, check_ports_free
from launcher.processes import plan_children
from launcher.report import print_summary, run_report
from launcher.supervisor import Launcher
from protocol.process import freeze_heap

ROOT = Path(__file__).resolve().parent


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
        report = run_report(launcher)
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report, indent=2))
        if not args.quiet:
            print_summary(report)
        for name in report["unsynced"]:
            sync = report["parts"][name]["sync"]
            print(f"warning: agent {name} is unsynced: no pong from the conductor's clock at "
                  f"{sync.get('pings_to', '?')} (check conductor.address)", file=sys.stderr)  # fmt: skip
        if report["stuck_notes"]:
            print(f"warning: {report['stuck_notes']} notes were still sounding at the end", file=sys.stderr)
        if args.render or args.plot:
            rc = make_artifacts(args.record, ens, args.render, args.plot, args.quiet) or rc
    return rc


if __name__ == "__main__":
    sys.exit(main())
