"""The agent's side of a yield (agents/yielding.py): it rests from its bar line, lets notes ring, comes
back on time, and its model keeps listening while it rests.

What the conductor decides reaches the agent as a RoleState, so that message's travel over both
buses is checked here too.
"""

from __future__ import annotations

import pytest

from agents.yielding import Yielding
from protocol.codec import from_mqtt, from_osc, mqtt_topic, to_msgpack, to_osc
from protocol.messages import AgentParams, RoleState


# -- the agent's side ---------------------------------------------------------------------------------
def params(muted: bool = False) -> AgentParams:
    return AgentParams("bass", 0, muted, 1.0, 1.0, 0.98, 20)


def state(epoch: int, yields: str) -> RoleState:
    return RoleState(epoch, "bass", yields)


def test_an_agent_rests_from_its_bar_line_lets_notes_ring_and_returns() -> None:
    y = Yielding("bass", 4, lead_beats=4.0)
    assert all(y.plays(b) for b in (0.0, 2.0, 4.0, 6.0))
    y.update(state(1, "bass:8:-1 piano:0:4"))
    assert y.plays(7.5)  # before the bar line: played (and rings as long as it was planned)
    assert not y.plays(8.0) and not y.plays(10.0)
    assert y.params(params(), 8.0).muted and not y.params(params(), 6.0).muted
    y.update(state(2, "bass:8:28"))
    assert y.params(params(), 23.0).muted
    assert not y.params(params(), 24.0).muted  # the model draws again before the return
    assert not y.plays(26.0)
    assert y.plays(28.0) and y.plays(30.0)
    assert y.dropped == 3
    assert not y.params(params(), 40.0).muted and y.params(params(True), 40.0).muted


def test_a_late_yield_or_return_waits_for_the_next_bar_line_not_yet_played() -> None:
    y = Yielding("bass", 4, lead_beats=4.0)
    for b in (0.0, 2.0, 4.0, 6.0, 8.0, 9.0):
        assert y.plays(b)
    y.update(state(1, "bass:8:-1"))  # came after beat 9 was played
    assert y.plays(10.0) and y.plays(11.5)
    for b in (12.0, 14.0, 16.0, 17.0):
        assert not y.plays(b)
    y.update(state(2, "bass:8:16"))  # came after beat 17 was left out
    assert not y.plays(18.0)
    assert y.plays(20.0)
    y.update(state(3, "bass:8:16"))  # a repeat changes nothing
    assert (y.start, y.until) == (12.0, 20.0)


def test_a_yield_that_vanishes_returns_at_the_next_bar_line() -> None:
    y = Yielding("bass", 4, lead_beats=4.0)
    y.update(state(1, "bass:8:-1"))
    assert y.plays(6.0) and not y.plays(9.0)
    y.update(state(2, ""))  # a restarted conductor has no yield for this part
    assert not y.plays(10.0)
    assert y.plays(12.0)
    z = Yielding("bass", 4, lead_beats=4.0)
    z.update(state(1, "bass:8:-1"))
    z.update(state(2, ""))  # gone before it began: nothing is left out
    assert z.plays(8.0)


def test_role_state_travels_over_osc_and_mqtt_and_bad_items_are_refused() -> None:
    msg = RoleState(3, "bass,comp", RoleState.pack({"bass": (8.0, None), "piano": (16.0, 24.0)}))
    assert msg.yields == "bass:8:-1 piano:16:24"
    address, args = to_osc("demo", msg)
    assert from_osc("demo", address, [v for _, v in args]) == msg
    assert from_mqtt("demo", mqtt_topic("demo", msg), to_msgpack(msg)) == msg
    assert msg.yields_of() == {"bass": (8.0, None), "piano": (16.0, 24.0)}
    for bad in ("bass", "bass:x:-1", "bass:8:4", ":8:-1", "bass:-4:-1"):
        with pytest.raises(ValueError):
            RoleState(1, "", bad).yields_of()


# -- a yielded model keeps listening ------------------------------------------------------------------
def test_a_muted_model_hears_the_player_as_it_plays_and_comes_back_on_time() -> None:
    """The part rests (muted) from beat 8 and its model draws again 4 beats before its return at 20:
    while it rests, each of the player's notes is in its context within a beat or two (not queued
    until it plays again), and it plays from the return on with no beat missed."""
    from test_planner_determinism import MELODY, config

    from agents.engines.model_worker import Planner

    planner = Planner(config())
    step, held, heard, muted = 0.05, 0, 0, False
    committed: list[tuple] = []
    checked = 0
    for i in range(int(28 / step)):
        now = i * step
        want = 8.0 <= now + 1.0 < 16.0
        if want != muted:
            planner.set_params(want, 0.9, 0.98, 20, 1.0)
            muted = want
        while held < len(MELODY) and MELODY[held][0] <= now:
            s, _, p, v = MELODY[held]
            planner.hear_held("melody", s, p, v, 0)
            held += 1
        while heard < len(MELODY) and sum(MELODY[heard][:2]) <= now:
            s, d, p, v = MELODY[heard]
            planner.hear("melody", s, d, p, v, 0)
            heard += 1
        committed += planner.commit(now, now + 1.0)
        while planner.wants_work():
            planner.work()
        if muted and abs(now - round(now)) < 1e-9 and round(now) % 2 == 0 and now >= 10:
            tracks, pitches, _ = planner.context.sounding(planner.context.slot_of(now - 2.0))
            melody = {s: p for s, _, p, _ in MELODY}
            assert (1, melody[now - 2.0]) in set(zip(tracks.tolist(), pitches.tolist(), strict=True)), now
            assert len(planner.player) <= 2
            checked += 1
    assert checked >= 3
    starts = sorted(n.start_beat for n in committed)
    assert not [s for s in starts if 8.0 <= s < 16.0]
    assert {16.0, 18.0, 20.0, 24.0} <= {round(s, 3) for s in starts}
    assert planner.behind_beats == 0
