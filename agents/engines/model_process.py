"""The model process of an `onnx` agent: its message loop around the part's Planner.

The model runs in its own process, never beside the timing thread: Python work in the sampling loop
holds the GIL, and a realtime thread that waits for the GIL is late however high its priority
(bench/timing.py measures both arrangements). The agent sends what it hears and the commit windows
it wants (agents/engines/model_protocol.py); this loop answers each message at once and lets the
Planner (agents/engines/model_worker.py) draw ahead while there is nothing to answer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection

from agents.engines.model_protocol import (
    AgentMessage,
    Committed,
    CommitWindow,
    Failed,
    Hear,
    Held,
    ParamsChange,
    PlanChange,
    Ready,
    StepFailed,
    Stop,
)
from agents.engines.model_worker import Planner, WorkerConfig
from protocol.process import die_with_parent

log = logging.getLogger("barcelona.model")


def handle(planner: Planner, msg: AgentMessage, load: float) -> Committed | None:
    """One message from the agent (anything but `Stop`); the answer to send back, for a commit
    window. `load` is the share of its time the model has spent drawing, which the answer reports."""
    if isinstance(msg, Hear):
        n = msg.note
        planner.hear(n.source, n.start_beat, n.duration_beats, n.pitch, n.velocity, n.channel)
    elif isinstance(msg, Held):
        h = msg.note
        planner.hear_held(h.source, h.start_beat, h.pitch, h.velocity, h.channel)
    elif isinstance(msg, CommitWindow):
        notes = tuple(planner.commit(msg.start_beat, msg.end_beat))
        return Committed(notes, planner.events, planner.replans, load, planner.behind_beats,
                         planner.late_heard)
    elif isinstance(msg, PlanChange):
        planner.set_plan(msg.plan)
    elif isinstance(msg, ParamsChange):
        planner.set_params(msg.muted, msg.temperature, msg.top_p, msg.top_k, msg.density, msg.dynamics)
    else:
        raise TypeError(f"model message: {type(msg).__name__} is not one the model answers")
    return None


def ready_message(planner: Planner) -> Ready:
    """What the model says once it can play: its providers, context, cache mode and window."""
    return Ready(tuple(planner.runtime.providers), len(planner.context), planner.runtime.cache_mode,
                 planner.max_events)


def serve(
    conn: Connection, cfg: WorkerConfig, parent_pid: int | None = None, agent_end: Connection | None = None
) -> None:
    """The model process's loop: answer messages at once, generate while there is nothing to answer.

    It ends with its agent however the agent ends: the kernel kills it when the agent dies
    (`die_with_parent`, SIGKILL included), and between any two steps it looks for a closed pipe or a
    new parent pid, so an agent that vanished is noticed within one generation step even where the
    kernel cannot tell. `parent_pid` is the agent's pid; `agent_end` is the agent's end of the pipe,
    which a forked child holds a copy of and must close, or the pipe would never report EOF."""
    if agent_end is not None:
        agent_end.close()
    if parent_pid is not None:
        # SIGKILL: this process holds nothing that needs cleaning up (no notes, no ports).
        die_with_parent(signal.SIGKILL, parent_pid)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s model %(levelname)s %(message)s")
    with contextlib.suppress(OSError, AttributeError):
        # Where the processes that keep time have no SCHED_FIFO, the model yields the CPU to them
        # (protocol.realtime.model_niceness; the agent decides, since it knows).
        os.nice(cfg.nice)
    try:
        planner = Planner(cfg)
    except Exception as exc:  # a missing model file, a bad export: one line back to the agent
        conn.send(Failed(f"{type(exc).__name__}: {exc}"))
        return
    if planner.model_note:
        log.warning("%s", planner.model_note)
    conn.send(ready_message(planner))
    answer(conn, planner, parent_pid)


def answer(conn: Connection, planner: Planner, parent_pid: int | None = None,
           drawing: Callable[[], contextlib.AbstractContextManager[object]] | None = None) -> None:
    """Answer the agent's messages at once and draw while there are none, until it stops or goes.

    `drawing` brackets each stretch of drawing: a shared model (model_host.py) batches the calls of
    the agents drawing at the same time, and waits for no agent that is not."""
    busy_s = 0.0
    t0 = time.perf_counter()
    bracket = drawing if drawing is not None else contextlib.nullcontext

    def waiting() -> bool:
        """A message waits: the window pauses so a commit is answered at once (Planner.work)."""
        return conn.poll(0)
    while True:
        if parent_pid is not None and os.getppid() != parent_pid:
            return  # the agent is gone (reparented to init or a subreaper): nobody to play for
        timeout = 0.0 if planner.wants_work() else 0.05
        try:
            while conn.poll(timeout):
                timeout = 0.0
                msg = conn.recv()
                if isinstance(msg, Stop):
                    return
                reply = handle(planner, msg, busy_s / max(1e-6, time.perf_counter() - t0))
                if reply is not None:
                    conn.send(reply)
            if planner.wants_work():
                s = time.perf_counter()
                with bracket():
                    planner.work(interrupt=waiting)
                busy_s += time.perf_counter() - s
        except (EOFError, ConnectionError, KeyboardInterrupt):  # the agent's end closed: it is gone
            return
        except Exception as exc:  # keep the process alive: a bad message must not silence the part
            log.warning("model step failed: %s\n%s", exc, traceback.format_exc(limit=3))
            try:
                conn.send(StepFailed(f"{type(exc).__name__}: {exc}"))
            except (BrokenPipeError, OSError):
                return


def model_process(
    conn: Connection, cfg: WorkerConfig, parent_pid: int | None = None, agent_end: Connection | None = None
) -> None:
    """The model process's entry point: `serve`, then leave at once. Tearing down the interpreter
    (the ONNX session, the imported modules) takes most of a second on a busy machine, and nothing
    here needs it: no file is written, and an agent stopping waits for this process to end."""
    code = 0
    try:
        serve(conn, cfg, parent_pid, agent_end)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
