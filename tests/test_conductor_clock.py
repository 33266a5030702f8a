"""An agent's view of the conductor's clock says when nobody answers its pings.

WHY: an agent that pings the wrong address hears nothing, keeps offset 0 and round trip 0, and would
otherwise look perfectly in time. These drive ConductorClock by hand with a fake time source; the
real run with a wrong `conductor.address` is in test_multihost_shipped.py.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from support.until import until

from agents.agent import Agent
from agents.conductor_clock import (
    SYNCED,
    SYNCING,
    UNSYNCED,
    UNSYNCED_AFTER_S,
    ConductorClock,
    inherited_offset_ms,
)
from protocol.ensemble import parse_ensemble
from protocol.messages import SyncPing, SyncPong

TARGET = "192.0.2.10:57120 (udp)"


def pong(clock: ConductorClock, at: float, offset: float = 0.001) -> bool:
    """A pong for a ping sent 0.2 ms before `at`, from a conductor `offset` s ahead."""
    return clock.on_pong(SyncPong(clock.name, 0, at - 0.0002, at - 0.0001 + offset, at - 0.0001 + offset), at)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_pong_for_two_seconds_warns_once_naming_the_address(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="barcelona.agent")
    clock = ConductorClock("bass", same_host=False, target=TARGET)
    assert clock.check(100.0) == SYNCING
    assert clock.check(100.0 + UNSYNCED_AFTER_S - 0.01) == SYNCING
    assert warnings_of(caplog) == []
    assert clock.check(100.0 + UNSYNCED_AFTER_S) == UNSYNCED
    for t in (103.0, 110.0, 150.0):  # still nothing: no second warning, however long
        assert clock.check(t) == UNSYNCED
    [warning] = warnings_of(caplog)
    assert "bass: unsynced" in warning and TARGET in warning and "no pong yet" in warning
    assert "its own clock" in warning
    assert clock.rtt_s() == 0.0 and clock.unsynced_total_s(150.0) == pytest.approx(48.0)

    caplog.clear()
    pong(clock, 150.5)
    assert clock.state == SYNCED
    for k in range(1, 20):  # pongs keep coming: said once
        pong(clock, 150.5 + k * 0.01)
        assert clock.check(150.5 + k * 0.01) == SYNCED
    [again] = warnings_of(caplog)
    assert "bass: synced again" in again and TARGET in again
    assert clock.rtt_s() > 0.0
    assert clock.unsynced_total_s(160.0) == pytest.approx(48.5)


def test_a_lost_conductor_makes_a_synced_agent_unsynced_and_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="barcelona.agent")
    clock = ConductorClock("pads", same_host=False, target=TARGET)
    clock.check(0.0)
    for k in range(300):
        pong(clock, 0.01 * (k + 1), offset=0.004)
    assert clock.state == SYNCED and warnings_of(caplog) == []  # first sync is no news
    assert any("pads: synced with" in r.getMessage() for r in caplog.records)
    last = 3.0
    assert clock.check(last + UNSYNCED_AFTER_S - 0.01) == SYNCED
    assert clock.check(last + UNSYNCED_AFTER_S + 0.01) == UNSYNCED
    [warning] = warnings_of(caplog)
    assert "no pong for 2.0 s" in warning and "last offset (+4.000 ms)" in warning
    pong(clock, 7.0, offset=0.004)
    assert clock.state == SYNCED and len(warnings_of(caplog)) == 2
    assert clock.unsynced_total_s(8.0) == pytest.approx(7.0 - (last + UNSYNCED_AFTER_S + 0.01))


def test_same_host_is_never_unsynced() -> None:
    clock = ConductorClock("drums", same_host=True, target=TARGET)
    clock.check(0.0)
    assert clock.check(60.0) == SYNCING and clock.offset_s() == 0.0


def test_ping_loop_keeps_pinging_while_unsynced() -> None:
    """Nothing answers: the state turns unsynced on the fake clock, and the pings go on."""
    clock = ConductorClock("bass", same_host=False, target=TARGET)
    sent: list[SyncPing] = []
    now = [0.0]

    def tick() -> float:
        now[0] += 0.05
        return now[0]

    async def publish(ping: SyncPing) -> None:
        sent.append(ping)

    async def run() -> None:
        task = asyncio.create_task(clock.ping_loop(publish, tick))
        await until(lambda: len(sent) >= 200, 10.0, "the ping loop's 200th ping", every=0.001)
        task.cancel()

    asyncio.run(run())
    assert clock.state == UNSYNCED
    assert [p.seq for p in sent[:200]] == list(range(200))  # 10 s of fake time, still pinging


def test_agent_heartbeat_stats_say_unsynced() -> None:
    ens = parse_ensemble({
        "bus": {"transport": "osc"},
        "conductor": {"host": "stage", "address": "192.0.2.10"},
        "agents": [{"name": "bass", "host": "band", "address": "192.0.2.20",
                    "engine": {"type": "pattern"}, "output": {"type": "null"}}],
    })  # fmt: skip
    agent = Agent(ens, "bass", base_dir=Path("."))
    assert agent.conductor_clock.target == f"192.0.2.10:{ens.bus.osc.base_port} (udp)"
    agent.clock = lambda: 10.0
    agent.conductor_clock.check(0.0)
    assert agent._status("ready").state == "ready"
    assert agent.stats()["sync"]["state"] == SYNCING
    agent.conductor_clock.check(UNSYNCED_AFTER_S)
    assert agent._status("playing").state == UNSYNCED
    assert agent._status("gone").state == "gone"  # leaving is still leaving
    sync = agent.stats()["sync"]
    assert sync["state"] == UNSYNCED and sync["rtt_ms"] == 0.0 and sync["unsynced_s"] == 8.0
    assert sync["pings_to"] == agent.conductor_clock.target
    pong(agent.conductor_clock, 10.0)
    assert agent._status("playing").state == "playing" and agent.stats()["sync"]["state"] == SYNCED


@pytest.mark.parametrize(
    ("sync", "expected"),
    [
        ({"estimated_offset_ms": 1.5, "rtt_ms": 0.2}, 1.5),
        ({"estimated_offset_ms": -3, "rtt_ms": 1}, -3.0),
        ({"estimated_offset_ms": 0.0, "rtt_ms": 0.0}, None),  # started, never measured a round trip
        ({"estimated_offset_ms": 1.0, "rtt_ms": None}, None),
        ({"estimated_offset_ms": None, "rtt_ms": 0.2}, None),
        ({"estimated_offset_ms": 1.0}, None),
        ({"estimated_offset_ms": "1.0", "rtt_ms": 0.2}, None),
        ({"estimated_offset_ms": float("nan"), "rtt_ms": 0.2}, None),
        ({"estimated_offset_ms": 1.0, "rtt_ms": float("inf")}, None),
        (None, None),
    ],
)
def test_a_restart_inherits_only_a_measured_offset(sync: dict | None, expected: float | None) -> None:
    assert inherited_offset_ms({"sync": sync}) == expected
