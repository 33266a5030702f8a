"""A busy machine that keeps up, simulated for an ensemble in one event loop (tests/support/inprocess.py).

Every bus datagram is delayed by a random few tens of milliseconds (in order per route, as loopback
keeps them), and each model part gets a model that reads its messages late, answers late, draws a
window only now and then and pauses windows mid-way (`SlowModel`). All of it stays within what a
machine that keeps up shows, so a part's notes must be the ones it plays idle (docs/band.md, "The same
music under any load"). Used by tests/test_band_determinism.py and `python -m bench.band --inprocess`.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from pathlib import Path
from typing import Any

from agents.engines.model_process import handle, ready_message
from agents.engines.model_protocol import AgentMessage, ModelMessage, Stop
from agents.engines.model_worker import Planner
from agents.engines.onnx_engine import OnnxEngine
from protocol.bus_memory import MemoryNetwork
from protocol.virtual_time import ManualClock
from support.inprocess import InProcessEnsemble, ensemble

BUS_JITTER_S = 0.04  # a datagram's delay, 0 to this
MODEL_DELAY_S = 0.05  # a message's wait before the model reads it, and an answer's before it is read
DRAW_CHANCE = 0.35  # the chance the slow model draws (part of) a window at a poll (10 ms apart)
PAUSE_CHANCE = 0.2  # the chance it pauses a window after an event


class SlowModel:
    """A model process on a busy machine, as the agent's engine sees it: each message is read a
    random while after it is sent and answered a while after that (in order, as a pipe keeps them),
    and the windows are drawn a bit at a time, paused whenever a message waits."""

    def __init__(self, planner: Planner, clock: ManualClock, rng: random.Random,
                 delay_s: float = MODEL_DELAY_S) -> None:
        self.planner, self.clock, self.rng, self.delay_s = planner, clock, rng, delay_s
        self.inbox: deque[tuple[float, AgentMessage]] = deque()
        self.outbox: deque[tuple[float, ModelMessage]] = deque([(clock(), ready_message(planner))])

    def send(self, msg: AgentMessage) -> None:
        if isinstance(msg, Stop):
            return
        last = self.inbox[-1][0] if self.inbox else -1.0
        self.inbox.append((max(last, self.clock() + self.rng.uniform(0.0, self.delay_s)), msg))

    def poll(self, timeout: float | None = 0.0) -> bool:
        now = self.clock()
        while self.inbox and self.inbox[0][0] <= now:
            answer = handle(self.planner, self.inbox.popleft()[1], 0.0)
            if answer is not None:
                last = self.outbox[-1][0] if self.outbox else -1.0
                self.outbox.append((max(last, now + self.rng.uniform(0.0, self.delay_s)), answer))
        if self.planner.wants_work() and self.rng.random() < DRAW_CHANCE:
            self.planner.work(interrupt=lambda: bool(self.inbox) or self.rng.random() < PAUSE_CHANCE)
        return bool(self.outbox) and self.outbox[0][0] <= now

    def recv(self) -> ModelMessage:
        return self.outbox.popleft()[1]


def jittered(network: MemoryNetwork, rng: random.Random, jitter_s: float = BUS_JITTER_S) -> None:
    """Every datagram of ``network`` is delayed by a random 0..jitter_s, in order per route."""
    last: dict[tuple[Any, Any], float] = {}

    def carry(data: bytes, sender: Any, target: Any) -> None:
        endpoint = network._bound.get(target)
        if endpoint is None:
            MemoryNetwork.carry(network, data, sender, target)  # a wildcard or nobody: as it was
            return
        now = network.clock()
        at = max(last.get((sender, target), now), now + rng.uniform(0.0, jitter_s))
        last[(sender, target)] = at
        network.delivered += 1
        asyncio.get_running_loop().call_later(at - now, endpoint.receive, bytes(data), sender)

    network.carry = carry  # type: ignore[method-assign]


def play(data: dict[str, Any], base_dir: Path, bars: int, busy: bool, seed: int = 5,
         scale: float = 1.0) -> tuple[InProcessEnsemble, dict[str, Planner]]:
    """One in-process run of ``data``; ``busy`` makes the machine busy (delays times ``scale``).
    Returns the ensemble, played, and each model part's Planner."""
    band = InProcessEnsemble(ensemble(data), base_dir, bars=bars)
    planners = {}
    rng = random.Random(seed)
    for name, agent in band.agents.items():
        engine = agent.engine
        if isinstance(engine, OnnxEngine):
            planners[name] = engine.conn.planner
            if busy:
                engine.conn = SlowModel(engine.conn.planner, band.clock, random.Random(rng.random()),
                                        MODEL_DELAY_S * scale)
    if busy:
        jittered(band.network, random.Random(rng.random()), BUS_JITTER_S * scale)
    band.play()
    return band, planners
