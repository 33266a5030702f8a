"""What every Barcelona process does the same way at start: logging, signal handling, lifetime.

SIGTERM and SIGINT both ask the process to stop through its asyncio loop, so every path to exit
runs the same cleanup (note-offs, all-notes-off, final stats). No process outlives its parent: a
child asks the kernel for a signal when its parent dies (`die_with_parent`), and the launcher adopts
and reaps whatever a dead child leaves behind (`become_subreaper`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

# The exit status of a process whose long-running loop raised (sysexits' EX_SOFTWARE): the launcher
# restarts it like any crash, and never mistakes it for a process that cannot start (status 1).
EXIT_LOOP_FAILED = 70

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """Linux prctl(2) through libc; False where there is none (macOS, a libc without it)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies, however the parent dies
    (SIGKILL and the OOM killer included, where no cleanup code of the parent runs).

    Called in the child. The parent may already have died between fork and this call, in which case
    the kernel has nothing left to report: with `parent_pid` (the parent's pid, taken before the
    fork) a parent that is already gone raises the signal at once. Linux only; elsewhere it returns
    False and the caller's own watch of its parent (a pipe that closes) is all there is. Note the
    kernel fires when the *thread* that forked the child ends, so fork from a thread that lives as
    long as the process (the main thread)."""
    armed = _prctl(_PR_SET_PDEATHSIG, int(sig))
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)
    return armed


def become_subreaper() -> bool:
    """Linux: orphans among this process's descendants (a model process whose agent was killed)
    become this process's children rather than init's, so it can end and reap them."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def child_pids(pid: int | None = None) -> list[int]:
    """Direct children of a process (this one by default), from /proc; empty where there is none."""
    pid = os.getpid() if pid is None else pid
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out.extend(int(k) for k in (task / "children").read_text().split())
    return out


def reap_orphans(known: Collection[int]) -> int:
    """SIGKILL and reap the children of this process whose pid is not in `known`: for a subreaper
    that starts no other process, the orphans it adopted (a model process whose agent died).

    Only those still in this process's group: an orphan that left it made itself a daemon on
    purpose (a JACK server that a client auto-started, which other parts still play through) and is
    not this run's to end; it is only reaped once it exits. Returns how many it ended; one that will
    not die at once (stuck in the kernel) is left for the next call."""
    orphans = []
    for pid in child_pids():
        if pid in known:
            continue
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                continue  # it had exited: reaped now
            if os.getpgid(pid) != os.getpgrp():
                continue
        except (ChildProcessError, ProcessLookupError):
            continue
        orphans.append(pid)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in orphans:
        deadline = time.monotonic() + 0.2
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
                time.sleep(0.002)
    return len(orphans)


def freeze_heap() -> None:
    """Take every object made so far (the imports: pydantic's schemas, numpy, the codecs) out of the
    garbage collector's sight, once the imports are done. Those objects live as long as the process;
    without this the collector walks them all again at every full collection and once more at exit.
    An agent took 0.40 s (median) to exit after SIGTERM without it and 0.09 s with it, a conductor
    0.41 s and 0.12 s (bench/exit_time.py, 2 busy CPUs): time that a stop's and a restart's 2 s
    budgets cannot spare."""
    gc.freeze()


def setup_logging(name: str, level: str = "WARNING") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.WARNING),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def install_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop)
        except (NotImplementedError, RuntimeError):  # non-main thread or platform without it
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write-then-rename: a reader (the launcher's display, a test) never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
