"""`python -m conductor ENSEMBLE.yaml`: run the conductor of an ensemble (the launcher does this)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from protocol.ensemble import EnsembleError, load_ensemble
from protocol.process import EXIT_LOOP_FAILED, freeze_heap, install_stop_signals, setup_logging
from protocol.tasks import LoopFailedError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conductor", description=__doc__)
    ap.add_argument("ensemble", type=Path)
    ap.add_argument("--bars", type=int, help="play this many bars, then stop and exit")
    ap.add_argument("--record", type=Path, help="write every part to this MIDI file at exit")
    ap.add_argument("--stats", type=Path, help="write live stats JSON here")
    ap.add_argument("--state", type=Path, help="persist tempo, plan and position here; resume from it")
    ap.add_argument(
        "--wait-agents", type=float, default=5.0, help="seconds to wait for agents before starting"
    )
    ap.add_argument("--no-autostart", action="store_true", help="wait for a play control")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    setup_logging("conductor", args.log_level)
    try:
        ens = load_ensemble(args.ensemble)
    except EnsembleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.bars is not None and args.bars < 1:
        print("error: --bars: must be at least 1", file=sys.stderr)
        return 1
    from conductor.conductor import Conductor

    freeze_heap()  # after the imports (protocol/process.py says why)

    try:
        cond = Conductor(
            ens,
            base_dir=args.ensemble.resolve().parent,
            bars=args.bars,
            record=args.record,
            stats_path=args.stats,
            state_path=args.state,
            wait_agents_s=args.wait_agents,
            autostart=not args.no_autostart,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    async def run() -> None:
        install_stop_signals(asyncio.get_running_loop(), cond.stop)
        await cond.run()

    try:
        asyncio.run(run())
    except LoopFailedError as exc:  # mid-performance: the launcher restarts it, and it resumes its state
        print(f"error: conductor: {exc}", file=sys.stderr)
        return EXIT_LOOP_FAILED
    except OSError as exc:
        print(f"error: conductor: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the broker refused our credentials or certificate: one line, like an agent
        from protocol.transport_mqtt import MqttAuthError

        if not isinstance(exc, MqttAuthError):
            raise
        print(f"error: conductor: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
