"""Thread settings that decide how precisely notes leave on time and clock-sync pings are stamped.

Two things stand between a sleeping timing thread and its due time (docs/timing.md): the CPU scheduler,
which may keep a woken thread off the CPU for milliseconds while other work runs, and the GIL, which
a pure-Python thread may hold for a whole switch interval (5 ms by default). SCHED_FIFO answers the
first, a short switch interval the second. The agents use both; the conductor's loop asks for
SCHED_FIFO too, since it stamps the arrival of every agent's ping. They are opt-in calls made by the
processes at start, never side effects of an import: a library that silently changed the
interpreter's switch interval would change the behaviour of every other thread in its host.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
from collections.abc import Callable

__all__ = [
    "DEFAULT_RT_PRIORITY",
    "DEFAULT_SWITCH_INTERVAL_S",
    "MODEL_NICE_WITHOUT_FIFO",
    "PRIORITY_FIFO",
    "PRIORITY_NORMAL",
    "drop_realtime",
    "fifo_permitted",
    "model_niceness",
    "request_realtime",
    "set_switch_interval",
    "spin_yield",
]

log = logging.getLogger(__name__)

PRIORITY_FIFO = "SCHED_FIFO"
PRIORITY_NORMAL = "normal"

# Below JACK: its server thread runs at 10 and, in JACK2, every client's process thread (a synth's
# audio) at the server's priority - 5. The timing thread spins up to half a millisecond before each
# note; above a synth's audio thread on two cores that spin could cost it a period. Any SCHED_FIFO
# priority already pre-empts every normal thread, which is all the timing thread needs.
DEFAULT_RT_PRIORITY = 4

# Measured on a 2-core machine: with a pure-Python thread in the process the timing thread was up
# to 4 ms late at the default 5 ms interval and 0.003 ms late at 0.5 ms.
DEFAULT_SWITCH_INTERVAL_S = 0.0005


def request_realtime(priority: int = DEFAULT_RT_PRIORITY) -> str:
    """Ask for SCHED_FIFO for the calling thread; return the policy that actually holds.

    Falls back quietly because normal priority still works, only less precisely: a musician's machine
    without rtprio limits, macOS and Windows must still play. The caller reports the result so a user
    can see why timing is worse. Linux applies the policy per thread, so the native thread id is used
    rather than 0 to make that explicit.
    """
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None or not hasattr(os, "SCHED_FIFO"):
        return PRIORITY_NORMAL
    tid = threading.get_native_id()
    for prio in _candidate_priorities(priority):
        try:
            setter(tid, os.SCHED_FIFO, os.sched_param(prio))
        except (PermissionError, OSError) as exc:
            log.debug("SCHED_FIFO priority %d refused: %s", prio, exc)
            continue
        return PRIORITY_FIFO
    return PRIORITY_NORMAL


def drop_realtime() -> str:
    """Return the calling thread to normal scheduling; return the policy that holds afterwards.

    For a stopping process. What is left to do (release notes, write stats, exit the interpreter)
    is not time-critical, and at SCHED_FIFO it outranks every normal thread: a non-realtime jackd
    and the JACK clients of a synth (JACK2 runs client threads at the server's priority - 5, below
    ours) then miss the very cycles that carry this agent's final note-offs. Seen here: with every
    agent of an ensemble stopping at once on two cores, the receiving client ran no cycle for the
    whole stop and the note-offs never arrived. Lowering a priority needs no privilege.
    """
    setter = getattr(os, "sched_setscheduler", None)
    if setter is None or not hasattr(os, "SCHED_OTHER"):
        return PRIORITY_NORMAL
    tid = threading.get_native_id()
    try:
        setter(tid, os.SCHED_OTHER, os.sched_param(0))
    except OSError as exc:
        log.debug("cannot return thread %d to normal scheduling: %s", tid, exc)
        try:
            return PRIORITY_FIFO if os.sched_getscheduler(tid) == os.SCHED_FIFO else PRIORITY_NORMAL
        except OSError:
            return PRIORITY_NORMAL
    return PRIORITY_NORMAL


def _candidate_priorities(priority: int) -> list[int]:
    """The wanted priority, then the highest that RLIMIT_RTPRIO allows (what a non-root user gets)."""
    lo = os.sched_get_priority_min(os.SCHED_FIFO)
    hi = os.sched_get_priority_max(os.SCHED_FIFO)
    wanted = min(max(priority, lo), hi)
    candidates = [wanted]
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_RTPRIO)
    except (ImportError, AttributeError, OSError, ValueError):
        return candidates
    if soft != resource.RLIM_INFINITY and lo <= soft < wanted:
        candidates.append(int(soft))
    return candidates


def set_switch_interval(seconds: float | None = DEFAULT_SWITCH_INTERVAL_S) -> float:
    """Set the interpreter's GIL switch interval for this process; return the previous one.

    A parameter of the agent process (its config decides), because it trades a little throughput of
    Python-heavy threads for timing precision of the output thread. None leaves it unchanged.
    """
    previous = sys.getswitchinterval()
    if seconds is not None:
        if not seconds > 0.0:
            raise ValueError(f"seconds: switch interval must be > 0, got {seconds!r}")
        sys.setswitchinterval(seconds)
    return previous


def _gil_holding_sched_yield() -> Callable[[], object] | None:
    """libc's sched_yield called through ctypes.PyDLL, which keeps the GIL over the call (CDLL would
    release it, and retaking it could cost a switch interval); None where there is no such symbol."""
    if not hasattr(os, "sched_yield"):
        return None
    try:
        fn: Callable[[], object] = ctypes.PyDLL(None).sched_yield
    except (OSError, AttributeError, TypeError):
        return None
    return fn


def _no_yield() -> None:
    """The spin's step where the CPU cannot be offered: spin plainly."""


_YIELD = _gil_holding_sched_yield()


def spin_yield() -> Callable[[], object]:
    """The step of a timing thread's last-moment spin: offer the CPU to other realtime threads.

    Each agent's timing thread spins the last half millisecond before a note at SCHED_FIFO, and the
    parts of an ensemble play on the same beats: three spinners on two cores left the third waiting
    for a core until one of the others had finished spinning and sending, 0.2 to 0.6 ms after its
    due time (docs/timing.md). A FIFO thread is never time-sliced, so it has to give the core away:
    sched_yield hands it to a runnable thread of the same priority (another part's timing thread)
    and returns at once when there is none. The GIL is kept over the call, so no thread of this
    process can take it in the last moments before the send.
    """
    return _YIELD if _YIELD is not None else _no_yield


def fifo_permitted() -> bool:
    """Whether this process's threads may take SCHED_FIFO (root, CAP_SYS_NICE or an rtprio limit):
    tried on the calling thread and put back at once, since no limit tells it as surely."""
    if not all(hasattr(os, f) for f in ("sched_getscheduler", "sched_setscheduler", "SCHED_FIFO")):
        return False
    tid = threading.get_native_id()
    try:
        policy, param = os.sched_getscheduler(tid), os.sched_getparam(tid)
    except OSError:
        return False
    if policy == os.SCHED_FIFO:
        return True
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(os.SCHED_FIFO)))
    except OSError:
        return False
    os.sched_setscheduler(tid, policy, param)
    return True


# How far a model process steps back where the processes that keep time cannot take SCHED_FIFO.
MODEL_NICE_WITHOUT_FIFO = 5


def model_niceness(realtime: bool) -> int:
    """The nice value for a model process, whose drawing is the bulk of an ensemble's CPU.

    Where the agents' timing and loop threads run at SCHED_FIFO they pre-empt any normal process,
    so a model process has nothing to give way to, and stepping back would only hand its CPU to
    whatever else the machine runs: niced by 5, the band's five model processes beside two
    CPU-bound processes on two cores answered commits late, the parts heard each other's notes
    after their turn and played 90-95 % of their idle notes (docs/band.md). Where there is no
    SCHED_FIFO (no rtprio limit, `timing.realtime: false`), the timing threads are normal threads
    too, and the models step back for them.
    """
    return 0 if realtime and fifo_permitted() else MODEL_NICE_WITHOUT_FIFO
