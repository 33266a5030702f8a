"""Run a command as a child subreaper: whatever it leaves running is named, then ended.

    python tests/support/reaper.py CMD [ARG...]

WHY: "no process outlives its parent" cannot be checked from outside once the parent is gone: an
orphan is handed to init and looks like any other process. With PR_SET_CHILD_SUBREAPER (Linux) the
orphans of CMD's whole tree are handed to this process instead, so after CMD exits (and a grace for
processes still on their way out) whatever is left is a leak. Exit status: CMD's, or 3 after one
`leftover: PID CMDLINE` line on stderr per process still running, each then SIGKILLed.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
GRACE_S = 3.0  # the launcher stops everything within 2 s
LEAKED = 3


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_us() -> None:
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _children() -> list[int]:
    out = []
    for task in Path("/proc/self/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: reaper.py CMD [ARG...]", file=sys.stderr)
        return 2
    if _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"reaper: PR_SET_CHILD_SUBREAPER failed (errno {ctypes.get_errno()})", file=sys.stderr)
        return 2
    rc = subprocess.call(argv, preexec_fn=_die_with_us)
    deadline = time.monotonic() + GRACE_S
    while True:
        _reap()
        left = [p for p in _children() if _running(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # processes still on their way out: a grace with a deadline
    leaked: dict[int, str] = {}
    while left:  # a killed process's own children come here next: end those too
        for pid in left:
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                line = "?"
            leaked.setdefault(pid, line)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)  # for the kills to land before looking again
        _reap()
        left = [p for p in _children() if _running(p)]
    for pid, line in leaked.items():
        print(f"leftover: {pid} {line}", file=sys.stderr)
    while True:  # collect every child, the killed ones included
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    return LEAKED if leaked else rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
