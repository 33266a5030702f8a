"""From the parts heard to the agents that yield (conductor/roles.py): which agent rests, from which
bar line, when it comes back, and how `human.role` is written and checked.

The follower is fed bars as the conductor hears them, asked at whole beats or at every tick, so
each yield and return can be checked to the beat.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.played_bars import bass_bar, chord_bar, melody_bar, notes

from conductor.bar_parts import PlayedNote
from conductor.roles import TURN_BEATS, RoleFollower, commit_lead, first_free_bar_line
from launcher.check import check_file
from protocol.ensemble import EnsembleError, parse_ensemble
from protocol.messages import HeldNote, Note, RoleState

ROOT = Path(__file__).resolve().parent.parent


# -- the follower: from roles to agents ------------------------------------------------------------------
def ensemble(**human: object) -> object:
    data = yaml.safe_load((ROOT / "ensembles" / "patterns.yaml").read_text())
    data["human"].update(human)
    data["timing"]["latency_ms"] = 150
    return parse_ensemble(data)


def play(follower: RoleFollower, bars: list[list[PlayedNote]], lead: float = 2.5) -> list[RoleState]:
    """The bars played, the follower asked at each whole beat with a lead over half a bar: nothing
    is judged part-way through a bar (too late for its bar line), so each change waits for a bar line
    (`tick` below asks as the conductor does)."""
    out = []
    for bar, played in enumerate(bars):
        for n in played:
            assert n.end is not None
            follower.note_on(HeldNote(n.start, n.pitch, 80, n.channel, "melody"))
            follower.note(Note(n.start, n.end - n.start, n.pitch, 80, n.channel, "melody"))
        for beat in range(4 * bar + 1, 4 * bar + 5):
            out += follower.at_beat(beat, lead)
    return out


def test_the_bass_agent_yields_at_the_next_free_bar_line_and_returns_after_return_bars() -> None:
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    msgs = play(follower, [bass_bar(b) for b in range(4)] + [[]] * 3)
    yields = [m.yields_of() for m in msgs]
    # heard at the end of bar 1 (beat 4); the agents have committed past it, so bar 3 (beat 8)
    assert yields[0] == {"bass": (8.0, None)}
    assert msgs[0].roles == ("bass",)
    # the player stops after bar 4; bars 5 and 6 without a bass; the bass plays again from bar 8
    assert {"bass": (8.0, 28.0)} in yields
    assert follower.yielded_at(27.9) == ["bass"] and follower.yielded_at(28.0) == []
    assert [m.epoch for m in msgs] == sorted({m.epoch for m in msgs})
    stats = follower.stats(12.0)
    assert stats["player"] == [] and stats["yielded_bars"]["bass"] == 5
    assert stats["changes"][0] == {"bar": 2, "player": ["bass"],
                                   "yields": {"bass": {"from_bar": 3, "until_bar": None}}}


def test_a_melody_over_the_band_takes_no_agent_when_none_plays_melody() -> None:
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    msgs = play(follower, [melody_bar(b) for b in range(3)])
    assert [m.roles for m in msgs] == [("melody",)]
    assert all(m.yields == "" for m in msgs)


def test_a_named_part_yields_whenever_the_player_plays() -> None:
    follower = RoleFollower(ensemble(role="piano"))  # type: ignore[arg-type]
    msgs = play(follower, [melody_bar(b) for b in range(3)])
    assert msgs[0].yields_of() == {"piano": (8.0, None)}
    by_role = RoleFollower(ensemble(role="comp"))  # type: ignore[arg-type]
    assert play(by_role, [bass_bar(0)])[0].yields_of() == {"piano": (8.0, None)}


def test_role_none_keeps_every_agent_playing_but_still_shows_what_it_hears() -> None:
    follower = RoleFollower(ensemble(role="none"))  # type: ignore[arg-type]
    msgs = play(follower, [bass_bar(b) for b in range(3)])
    assert [m.roles for m in msgs] == [("bass",)] and msgs[0].yields == ""


def test_a_player_back_before_the_return_keeps_the_agent_out() -> None:
    """With a lead of more than a bar (a short bar, a fast tempo) a return is announced two bar lines
    ahead; the player taking the part again before it keeps the agent out, with no gap."""
    follower = RoleFollower(ensemble(return_bars=1))  # type: ignore[arg-type]
    msgs = play(follower, [bass_bar(0), bass_bar(1), bass_bar(2), [], bass_bar(4)], lead=4.5)
    assert {"bass": (12.0, 24.0)} in [m.yields_of() for m in msgs]
    assert msgs[-1].yields_of()["bass"] == (12.0, None)


def test_a_player_back_after_the_return_takes_the_part_again_at_the_next_free_bar_line() -> None:
    follower = RoleFollower(ensemble(return_bars=1))  # type: ignore[arg-type]
    msgs = play(follower, [bass_bar(0), bass_bar(1), [], bass_bar(3), bass_bar(4)])
    assert [m.yields_of()["bass"] for m in msgs if m.yields] == [(8.0, None), (8.0, 16.0), (20.0, None)]


def test_the_free_bar_line_is_past_the_lead() -> None:
    assert first_free_bar_line(4, 2.1, 4) == 8.0
    assert first_free_bar_line(4, 4.5, 4) == 12.0
    assert first_free_bar_line(3, 2.1, 3) == 6.0


# -- part-way through a bar: the follower asked at every tick, as the conductor asks it -------------
def tick(follower: RoleFollower, bars: list[list[PlayedNote]], lead: float = 1.6,
         step: float = 0.05, phase: float = 0.0) -> list[RoleState]:
    """The bars played as the conductor hears them (note-on, then the whole note at its note-off),
    the follower asked at every tick (the ticks shifted by `phase` beats)."""
    played = [n for bar in bars for n in bar]
    out, k = [], 1
    while k * step + phase <= 4 * len(bars):
        now = k * step + phase
        for n in played:
            assert n.end is not None
            if now - step < n.start <= now:
                follower.note_on(HeldNote(n.start, n.pitch, 80, n.channel, "melody"))
            if now - step < n.end <= now:
                follower.note(Note(n.start, n.end - n.start, n.pitch, 80, n.channel, "melody"))
        out += follower.at_beat(now, lead)
        k += 1
    return out


def test_a_part_heard_part_way_through_its_first_bar_yields_from_the_next_bar_line() -> None:
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    msgs = tick(follower, [melody_bar(0), bass_bar(1), bass_bar(2), bass_bar(3), melody_bar(4), melody_bar(5),
                           melody_bar(6)])
    yields = [m.yields_of() for m in msgs if m.yields]
    # the bass line begins on bar 2 (beat 4), heard by beat 6.4 (1.6 before the bar line): bar 3 rests
    assert yields[0] == {"bass": (8.0, None)}
    assert msgs[1].yields_of() == {"bass": (8.0, None)} and "bass" in msgs[1].roles
    assert follower.changes[1]["bar"] == 2
    # the player leaves it after bar 4 (beat 16); bars 5 and 6 without it, the bass is back on bar 7
    assert yields[-1] == {"bass": (8.0, 24.0)}
    assert follower.recognizer.unconfirmed == 0
    # the same bars, judged only at bar lines: a bar later each way
    late = RoleFollower(ensemble())  # type: ignore[arg-type]
    tick(late, [melody_bar(0), bass_bar(1), bass_bar(2), bass_bar(3)] + [melody_bar(b) for b in (4, 5, 6)],
         step=4.0)
    assert late.yields == {"bass": (12.0, 28.0)}


@pytest.mark.parametrize("lead", [1.2, 1.6])
def test_the_same_playing_gives_the_same_yields_whatever_the_ticks_phase(lead: float) -> None:
    """A bass note struck just before the part-way moment counts on every tick phase alike: the bar
    is judged at its musical moment, not at the tick that happens to come after it."""
    moment = 8.0 - lead
    line = notes((4.0, 0.5, 48), (5.0, 0.5, 50), (moment - 0.03, 0.4, 52))  # above B2: three onsets needed
    seen = set()
    for phase in (0.0, 0.008, 0.02, 0.035, 0.049):
        follower = RoleFollower(ensemble())  # type: ignore[arg-type]
        msgs = tick(follower, [melody_bar(0), line, bass_bar(2), bass_bar(3)], lead=lead, phase=phase)
        seen.add(tuple(tuple(sorted(m.yields_of().items())) for m in msgs))
    assert len(seen) == 1, seen


def test_a_part_taken_part_way_that_the_bar_does_not_bear_out_is_dropped_at_its_bar_line() -> None:
    """Three low notes, then the bar goes on high: the whole bar reads as a melody. The bass was
    announced to rest from the next bar line, so it rests that one bar, and is back after it."""
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    fake = notes((0, 0.45, 43), (0.5, 0.45, 45), (1, 0.45, 47), (2.5, 0.4, 72), (3, 0.4, 74), (3.5, 0.4, 76))
    msgs = tick(follower, [fake, melody_bar(1)])
    assert [m.yields_of() for m in msgs if m.yields] == [{"bass": (4.0, None)}, {"bass": (4.0, 8.0)}]
    assert follower.recognizer.unconfirmed == 1
    assert follower.recognizer.roles == {"melody"}


def test_judged_part_way_a_rest_or_a_bar_of_chords_in_a_bass_line_still_changes_nothing() -> None:
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    bars = [bass_bar(0), [], bass_bar(2), chord_bar(3, (48, 52, 55)), bass_bar(4), bass_bar(5)]
    # the player stops after bar 6 (beat 24): bar 7 passes without a bass, and nothing of it is heard
    # in bar 8 by the lead before its bar line (a stray low note comes after), so the bass is back
    # on bar 9 (beat 32)
    msgs = tick(follower, [*bars, [], notes((30.6, 0.9, 40)), []])
    bass = [m.yields_of()["bass"] for m in msgs if "bass" in m.yields_of()]
    assert list(dict.fromkeys(bass)) == [(4.0, None), (4.0, 32.0)], bass
    assert follower.recognizer.unconfirmed == 0


def test_a_yield_too_late_for_the_next_bar_line_waits_for_the_bar_line() -> None:
    """A lead longer than half a bar leaves nothing to judge part-way: as before, a bar later."""
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    msgs = tick(follower, [bass_bar(0), bass_bar(1)], lead=2.5)
    assert next(m.yields_of() for m in msgs if m.yields) == {"bass": (8.0, None)}


def test_the_lead_is_the_agents_commit_distance_their_turns_and_the_transit() -> None:
    from agents.arrangement import COMMIT_STEP_BEATS

    assert TURN_BEATS == COMMIT_STEP_BEATS  # the conductor's copy of the agents' turn
    data = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    default = parse_ensemble(data)  # two model parts: one turn
    assert commit_lead(default, 120.0) == pytest.approx(1.0 + 0.4 + 0.2)
    assert commit_lead(default, 240.0) == pytest.approx(1.0 + 0.4 + 0.4)
    patterns = ensemble()  # no model: the commit distance, or the latency where that is longer
    assert commit_lead(patterns, 120.0) == pytest.approx(1.0 + 0.2)  # type: ignore[arg-type]
    assert commit_lead(patterns, 600.0) == pytest.approx(1.5 + 1.0)  # type: ignore[arg-type]


# -- the YAML -------------------------------------------------------------------------------------------
def test_human_role_defaults_to_auto_and_takes_roles_and_agent_names() -> None:
    ens = ensemble()
    assert ens.human.role == "auto" and ens.human.return_bars == 2  # type: ignore[attr-defined]
    for role in ("none", "bass", "comp", "melody", "drums", "piano"):
        assert ensemble(role=role).human.role == role  # type: ignore[attr-defined]


def test_an_unknown_human_role_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(EnsembleError, match=r"human\.role: 'guitar' is neither auto, none, a role"):
        ensemble(role="guitar")
    data = yaml.safe_load((ROOT / "ensembles" / "patterns.yaml").read_text())
    data["human"]["role"] = "keys"
    data["human"]["source"]["path"] = str(ROOT / "ensembles" / "melodies" / "ode_to_joy.mid")
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    ens, problems = check_file(path)
    assert ens is None and len(problems) == 1
    assert "human.role: 'keys'" in problems[0] and "(bass, piano, drums)" in problems[0]


def test_a_replayed_player_holding_the_bass_ends_on_the_bass() -> None:
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    assert follower.ending_role() == "melody"
    play(follower, [bass_bar(0), bass_bar(1)])
    assert follower.ending_role() == "bass"
