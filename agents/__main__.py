"""`python -m agents ENSEMBLE.yaml NAME`: run one agent of an ensemble (the launcher does this)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from protocol.ensemble import EnsembleError, load_ensemble
from protocol.process import EXIT_LOOP_FAILED, freeze_heap, install_stop_signals, setup_logging
from protocol.tasks import LoopFailedError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents", description=__doc__)
    ap.add_argument("ensemble", type=Path)
    ap.add_argument("name")
    ap.add_argument("--stats", type=Path, help="write live stats JSON here (the launcher reads it)")
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--model-host", metavar="SOCKET",
                    help="the shared model process to join (engine.share; the launcher starts it)")
    ap.add_argument("--output-host", metavar="SOCKET",
                    help="the machine's output process that plays the part (the launcher starts it)")
    args = ap.parse_args(argv)
    setup_logging(f"agent:{args.name}", args.log_level)
    try:
        ens = load_ensemble(args.ensemble)
        ens.agent(args.name)
    except (EnsembleError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from agents.agent import Agent

    freeze_heap()  # after the imports (protocol/process.py says why)

    agent = Agent(ens, args.name, base_dir=args.ensemble.resolve().parent, stats_path=args.stats,
                  model_host=args.model_host, output_host=args.output_host)

    async def run() -> None:
        install_stop_signals(asyncio.get_running_loop(), agent.request_stop)
        await agent.run()

    try:
        asyncio.run(run())
    except LoopFailedError as exc:  # mid-performance: notes are released; the launcher restarts the agent
        agent.shutdown()
        print(f"error: agent {args.name}: {exc}", file=sys.stderr)
        return EXIT_LOOP_FAILED
    except Exception as exc:  # an output that cannot open, a bus that cannot bind: one line, exit 1
        agent.shutdown()
        print(f"error: agent {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
