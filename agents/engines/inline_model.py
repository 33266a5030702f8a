"""The model process's side of the pipe, run in the agent's own thread.

An `onnx` agent keeps its model in a process of its own so that the timing thread never waits for
the GIL (agents/engines/model_worker.py). An agent that plays on virtual time, in one event loop
with the conductor and other agents (protocol/virtual_time.py), has no timing thread to protect,
and a process beside it would draw on the real clock while the loop's clock jumped ahead. So this
object answers the engine's messages at once, with the same `handle` the model process runs, and
after each one draws until the plan reaches its horizon: it is the idle machine the Planner's rules
make every machine sound like, so the part commits exactly what a model process keeping up would.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque

from agents.engines.model_process import handle, ready_message
from agents.engines.model_protocol import AgentMessage, Failed, ModelMessage, StepFailed, Stop
from agents.engines.model_worker import Planner, WorkerConfig

log = logging.getLogger("barcelona.model")

__all__ = ["InlineModel"]


class InlineModel:
    """A stand-in for the engine's end of the pipe (`send`, `poll`, `recv`) with the Planner behind it."""

    def __init__(self, cfg: WorkerConfig) -> None:
        self._out: deque[ModelMessage] = deque()
        self._closed = False
        self.planner: Planner | None = None
        try:
            self.planner = Planner(cfg)
        except Exception as exc:  # a missing model file, a bad export: one line, as a model process says
            self._out.append(Failed(f"{type(exc).__name__}: {exc}"))
            return
        if self.planner.model_note:
            log.warning("%s", self.planner.model_note)
        self._out.append(ready_message(self.planner))

    def send(self, msg: AgentMessage) -> None:
        if self._closed or self.planner is None:
            raise BrokenPipeError("the model is stopped")
        if isinstance(msg, Stop):
            self._closed = True
            return
        try:
            # load 0: drawing takes no time on the loop's clock
            answer = handle(self.planner, msg, 0.0)
            if answer is not None:
                self._out.append(answer)
            while self.planner.wants_work():
                self.planner.work()
        except Exception as exc:  # as the model process does: a bad message must not silence the part
            log.warning("model step failed: %s\n%s", exc, traceback.format_exc(limit=3))
            self._out.append(StepFailed(f"{type(exc).__name__}: {exc}"))

    def poll(self, timeout: float | None = 0.0) -> bool:
        """Whether an answer waits; never blocks, since every answer is made inside `send`."""
        return bool(self._out)

    def recv(self) -> ModelMessage:
        if not self._out:
            raise EOFError("no answer waiting")
        return self._out.popleft()
