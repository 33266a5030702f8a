"""The same band under load: ensembles/band.yaml's five model parts (bass, piano, guitar, sax,
trumpet) and its drums behind the replayed player, in one event loop on virtual time
(tests/support/inprocess.py), play exactly the same notes idle and on a simulated busy machine.

The parts hear each other: which of the others' notes a part takes into account when it draws and
when it commits (no unisons, the bass lowest) must depend on musical time only, never on when the
notes happened to arrive (docs/band.md, "The same music under any load"). The busy run delays every
bus datagram by a random few tens of milliseconds, and gives each part a model that reads its
messages late, answers late, draws a window only now and then and pauses windows mid-way, all
within what a machine that keeps up can show: no part falls behind (`behind_beats`) and no note
comes after the turn it was due in (`late_heard`).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import yaml
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble

from agents.engines.model_process import handle, ready_message
from agents.engines.model_protocol import AgentMessage, ModelMessage, Stop
from agents.engines.model_worker import Planner
from agents.engines.onnx_engine import OnnxEngine
from protocol.bus_memory import MemoryNetwork
from protocol.virtual_time import ManualClock

BARS = 6
SEED = 3
BUS_JITTER_S = 0.04  # a datagram's delay, 0 to this
MODEL_DELAY_S = 0.05  # a message's wait before the model reads it, and an answer's before it is read
DRAW_CHANCE = 0.35  # the chance the slow model draws (part of) a window at a poll (10 ms apart)
PAUSE_CHANCE = 0.2  # the chance it pauses a window after an event


def band_data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ENSEMBLES / "band.yaml").read_text())
    data["seed"] = SEED
    return data


class SlowModel:
    """A model process on a busy machine, as the agent's engine sees it: each message is read a
    random while after it is sent and answered a while after that (in order, as a pipe keeps them),
    and the windows are drawn a bit at a time, paused whenever a message waits."""

    def __init__(self, planner: Planner, clock: ManualClock, rng: random.Random) -> None:
        self.planner, self.clock, self.rng = planner, clock, rng
        self.inbox: deque[tuple[float, AgentMessage]] = deque()
        self.outbox: deque[tuple[float, ModelMessage]] = deque([(clock(), ready_message(planner))])

    def send(self, msg: AgentMessage) -> None:
        if isinstance(msg, Stop):
            return
        last = self.inbox[-1][0] if self.inbox else -1.0
        self.inbox.append((max(last, self.clock() + self.rng.uniform(0.0, MODEL_DELAY_S)), msg))

    def poll(self, timeout: float | None = 0.0) -> bool:
        now = self.clock()
        while self.inbox and self.inbox[0][0] <= now:
            answer = handle(self.planner, self.inbox.popleft()[1], 0.0)
            if answer is not None:
                last = self.outbox[-1][0] if self.outbox else -1.0
                self.outbox.append((max(last, now + self.rng.uniform(0.0, MODEL_DELAY_S)), answer))
        if self.planner.wants_work() and self.rng.random() < DRAW_CHANCE:
            self.planner.work(interrupt=lambda: bool(self.inbox) or self.rng.random() < PAUSE_CHANCE)
        return bool(self.outbox) and self.outbox[0][0] <= now

    def recv(self) -> ModelMessage:
        return self.outbox.popleft()[1]


def jittered(network: MemoryNetwork, rng: random.Random) -> None:
    """Every datagram of ``network`` is delayed by a random 0..BUS_JITTER_S, in order per route."""
    import asyncio

    last: dict[tuple[Any, Any], float] = {}

    def carry(data: bytes, sender: Any, target: Any) -> None:
        endpoint = network._bound.get(target)
        if endpoint is None:
            MemoryNetwork.carry(network, data, sender, target)  # a wildcard or nobody: as it was
            return
        now = network.clock()
        at = max(last.get((sender, target), now), now + rng.uniform(0.0, BUS_JITTER_S))
        last[(sender, target)] = at
        network.delivered += 1
        asyncio.get_running_loop().call_later(at - now, endpoint.receive, bytes(data), sender)

    network.carry = carry  # type: ignore[method-assign]


def play(busy: bool) -> tuple[InProcessEnsemble, dict[str, Planner]]:
    band = InProcessEnsemble(ensemble(band_data()), ENSEMBLES, bars=BARS)
    planners = {}
    rng = random.Random(5)
    for name, agent in band.agents.items():
        engine = agent.engine
        if isinstance(engine, OnnxEngine):
            planners[name] = engine.conn.planner
            if busy:
                engine.conn = SlowModel(engine.conn.planner, band.clock, random.Random(rng.random()))
    if busy:
        jittered(band.network, random.Random(rng.random()))
    band.play()
    return band, planners


def test_a_busy_band_that_keeps_up_plays_the_same_notes() -> None:
    idle, _ = play(busy=False)
    busy, planners = play(busy=True)
    for name, planner in planners.items():
        assert planner.behind_beats == 0 and planner.late_heard == 0, name  # it kept up
    for name in [*planners, "drums"]:
        notes = idle.recorded(name)
        assert len(notes) > 2 * BARS, name  # it played
        assert busy.recorded(name) == notes, name
