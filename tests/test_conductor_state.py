"""The conductor's state, driven by hand: controls, roster, solo folding and persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor.control import Allowlist, ControlError, parse_control
from conductor.state import ConductorState
from protocol.harmony import ChordError, ChordPlan
from protocol.messages import Control
from protocol.timeline import Timeline

AGENTS = ("bass", "piano", "drums")


def state() -> ConductorState:
    tl = Timeline(tempo_bpm=120.0).started(10.0, at_beat=0.0)
    return ConductorState(tl, ChordPlan.parse("C | F | G7 | C"), agents=AGENTS)


def test_tempo_change_is_announced_for_the_next_bar_line() -> None:
    s = state()
    [tl] = s.apply(Control("tempo", 90.0), now=10.75)  # beat 1.5 of bar 0
    assert tl.next_tempo_bpm == 90.0 and tl.change_beat == 4.0
    assert tl.beat_at(12.0) == pytest.approx(4.0)


def test_stop_ends_at_the_next_bar_line_and_a_second_stop_cuts() -> None:
    s = state()
    before = s.timeline.epoch
    [ending] = s.apply(Control("stop", 1.0), now=11.0)  # beat 2: the end is the next bar line
    assert ending.playing and ending.stop_beat == 4.0 and ending.epoch == before + 1
    [stopped] = s.apply(Control("stop", 1.0), now=11.5)  # a second press: stop now
    assert not stopped.playing
    assert s.apply(Control("stop", 1.0), now=11.6) == []
    [started] = s.apply(Control("play", 1.0), now=20.0)
    assert started.playing and started.beat_at(started.time_origin) == 3.0 and started.stop_beat == 0.0


def test_stop_too_close_to_a_bar_line_ends_at_the_one_after() -> None:
    """Agents commit a beat ahead: an end they could not reach in time goes a bar later."""
    s = state()
    [ending] = s.apply(Control("stop", 1.0), now=11.6)  # beat 3.2: bar line 4 is 0.8 beats away
    assert ending.stop_beat == 8.0
    s.commit_beats, s.latency_s = 0.25, 0.05
    s.timeline = state().timeline
    [ending] = s.apply(Control("stop", 1.0), now=11.6)  # a shorter lead reaches bar line 4
    assert ending.stop_beat == 4.0


def test_plan_edits_bump_the_epoch_and_bad_symbols_change_nothing() -> None:
    s = state()
    [plan] = s.apply(Control("bar", "1 Dm7 G7"), now=10.0)
    assert plan.epoch == 1 and "Dm7 G7" in plan.text
    before = s.plan
    with pytest.raises(ChordError):
        s.apply(Control("plan", "C | Hmaj13#5b | G"), now=10.0)
    assert s.plan == before and s.plan_epoch == 1


def test_mute_with_a_wildcard_and_solo_folds_into_muted() -> None:
    s = state()
    s.apply(Control("mute", 1.0, "*"), now=0.0)
    assert all(p.muted for p in s.params_messages())
    s.apply(Control("mute", 0.0, "{bass,piano}"), now=0.0)
    muted = {p.agent: p.muted for p in s.params_messages()}
    assert muted == {"bass": False, "piano": False, "drums": True}
    s.apply(Control("solo", 1.0, "bass"), now=0.0)
    muted = {p.agent: p.muted for p in s.params_messages()}
    assert muted == {"bass": False, "piano": True, "drums": True}


def test_unknown_agent_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="target"):
        state().apply(Control("mute", 1.0, "violin"), now=0.0)


def test_roster_joins_and_expires() -> None:
    s = state()
    assert s.heartbeat("bass", 1.0) is True
    assert s.heartbeat("bass", 1.2) is False
    s.heartbeat("piano", 2.0)
    assert s.roster_message(2.5, 1.5).names == ("bass", "piano")
    assert s.expire(3.0, 1.5) == ["bass"]


def test_state_survives_a_restart(tmp_path: Path) -> None:
    s = state()
    s.apply(Control("tempo", 100.0), now=10.2)
    s.apply(Control("bar", "2 Am7"), now=10.2)
    s.apply(Control("temperature", 0.7, "piano"), now=10.2)
    path = tmp_path / "state.json"
    s.save(path)
    back = ConductorState.load(path, AGENTS)
    assert back.timeline.epoch > s.timeline.epoch
    assert back.timeline.beat_at(20.0) == pytest.approx(s.timeline.beat_at(20.0))
    assert back.plan.to_text() == s.plan.to_text()
    assert back.mix["piano"].temperature == 0.7
    assert back.follow_tempo is None  # never set: the YAML decides
    s.follow_tempo = False  # a /follow_tempo 0 from a surface
    s.save(path)
    assert ConductorState.load(path, AGENTS).follow_tempo is False


@pytest.mark.parametrize(
    ("address", "args", "expected"),
    [
        ("/barcelona/demo/tempo", [132.0], Control("tempo", 132.0)),
        ("/tempo", [132], Control("tempo", 132.0)),
        ("/barcelona/demo/agent/bass/mute", [1.0], Control("mute", 1.0, "bass")),
        ("/agent/*/mute", [0.0], Control("mute", 0.0, "*")),
        ("/barcelona/demo/agent/piano/top_k", [12.0], Control("top_k", 12.0, "piano")),
        ("/barcelona/demo/play", [], Control("play", 1.0)),
        ("/barcelona/demo/bar", [2.0, "Dm7", "G7"], Control("bar", "2 Dm7 G7")),
        ("/barcelona/demo/plan", ["C | F | G"], Control("plan", "C | F | G")),
    ],
)
def test_surface_accepts_what_max_and_touchosc_send(
    address: str, args: list[object], expected: Control
) -> None:
    assert parse_control("demo", address, args) == expected


@pytest.mark.parametrize(
    ("address", "args", "reason"),
    [
        ("/barcelona/demo/tempo", [float("nan")], "bad_value.tempo"),
        ("/barcelona/demo/tempo", [-3.0], "bad_value.tempo"),
        ("/barcelona/demo/tempo", ["fast"], "bad_value.tempo"),
        ("/barcelona/demo/agent/bass/top_k", [1.5], "bad_value.top_k"),
        ("/barcelona/demo/agent/bass/reverb", [1.0], "unknown_control"),
        ("/barcelona/demo/agent/bass/volume", [128.0], "bad_value.volume"),
        ("/barcelona/demo/agent/bass/pan", [1.5], "bad_value.pan"),
        ("/barcelona/demo/agent/bass/dynamics", ["fff"], "bad_value.dynamics"),
        ("/barcelona/demo/agent/bass/dynamics", [0.0], "bad_value.dynamics"),
        ("/barcelona/other/tempo", [100.0], "foreign_ensemble"),
        ("/barcelona/demo/a/b/c/d", [1.0], "unknown_address"),
    ],
)
def test_surface_refusals_are_named(address: str, args: list[object], reason: str) -> None:
    with pytest.raises(ControlError) as err:
        parse_control("demo", address, args)
    assert err.value.reason == reason


def test_allowlist_counts_strangers() -> None:
    allow = Allowlist(["127.0.0.1/32", "198.18.0.0/24"])
    assert allow.allows("127.0.0.1") and allow.allows("198.18.0.7")
    assert not allow.allows("198.18.1.7") and not allow.allows("not-an-ip")
    assert allow.refused == {"198.18.1.7": 1, "not-an-ip": 1}
