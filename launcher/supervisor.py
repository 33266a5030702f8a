"""The launcher's supervision: start the children, restart one that dies, stop them all cleanly.

On Ctrl-C or SIGTERM every child gets SIGTERM (and releases its notes), and whatever is left after
the grace is killed; the launcher is a subreaper, so it also ends and reaps what a dead child leaves
behind (a model process). A part that keeps failing at start ends the run with its message rather
than restarting for ever.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from typing import Any

from launcher.processes import Child
from protocol.ensemble import Ensemble
from protocol.process import become_subreaper, reap_orphans

STOP_GRACE_S = 1.5
REAP_S = 1.0  # how long the final sweep waits for adopted orphans to die and be reaped
# An agent that exits with an error this soon after starting, three times in a row, cannot start
# (a wrong password, a missing port): give up with its message rather than restart it for ever.
START_FAILURE_S = 15.0


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
        # shared model and output processes first (their agents join them), the conductor last
        order = ("model", "outputs", "agent", "conductor")
        for c in sorted(self.children, key=lambda c: order.index(c.role)):
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
                    if c.role in ("agent", "model", "outputs") and not c.alive and not self.stopping:
                        code = c.proc.returncode if c.proc else None
                        self.reap_orphans()
                        c.ended()
                        if self._cannot_start(c, code):
                            rc = 1
                            self.stopping = True
                            break
                        # a shared model or output process's agents lose it too: they restart and join
                        # the new one
                        print(f"{c.role} {c.name} exited with {code}; restarting it", file=sys.stderr)
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
            who = "conductor" if c.role == "conductor" else f"{c.role} {c.name}"
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


def _make_display(launcher: Launcher) -> Any:
    from launcher.status import StatusDisplay

    return StatusDisplay(launcher)
