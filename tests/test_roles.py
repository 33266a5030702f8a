"""The player takes a part: what the conductor hears (conductor/roles.py), who yields and when, how an
agent rests and comes back (agents/yielding.py), and how `human.role` is written and checked."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from agents.yielding import Yielding
from bench.roles import STYLES, per_bar, reactions
from conductor.bar_parts import PlayedNote, bar_roles, early_roles
from conductor.role_recognizer import RoleRecognizer
from conductor.roles import TURN_BEATS, RoleFollower, commit_lead, first_free_bar_line
from launcher.check import check_file
from protocol.codec import from_mqtt, from_osc, mqtt_topic, to_msgpack, to_osc
from protocol.ensemble import EnsembleError, parse_ensemble
from protocol.messages import AgentParams, HeldNote, Note, RoleState

ROOT = Path(__file__).resolve().parent.parent


def notes(*items: tuple[float, float, int], channel: int = 0) -> list[PlayedNote]:
    return [PlayedNote(s, s + d, p, 80, channel) for s, d, p in items]


def bass_bar(bar: int = 0, low: int = 36) -> list[PlayedNote]:
    """A walking bass bar: four quarters, monophonic, low."""
    return notes(*((4 * bar + i, 0.9, low + step) for i, step in enumerate((0, 4, 7, 5))))


def chord_bar(bar: int = 0, voicing: tuple[int, ...] = (60, 64, 67)) -> list[PlayedNote]:
    """Comping: a chord on beat 1 and on the and of 2."""
    return notes(*((4 * bar + t, d, p) for t, d in ((0, 1.5), (1.5, 2.0)) for p in voicing))


def melody_bar(bar: int = 0, base: int = 72) -> list[PlayedNote]:
    return notes(*((4 * bar + t, 0.45, base + d) for t, d in ((0, 0), (0.5, 2), (1, 4), (2, 5), (3, 4))))


def drum_bar(bar: int = 0) -> list[PlayedNote]:
    hits = [(4 * bar + b, 0.25, 36 if b % 2 == 0 else 38) for b in range(4)]
    hats = [(4 * bar + b / 2, 0.2, 42) for b in range(8)]
    return notes(*hits, *hats, channel=9)


# -- one bar ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("played", "roles"),
    [
        (bass_bar(), {"bass"}),
        (chord_bar(), {"comp"}),
        (melody_bar(), {"melody"}),
        (drum_bar(), {"drums"}),
        # a pianist: left-hand roots under right-hand chords
        (notes((0, 1.5, 36), (2, 1.5, 43)) + chord_bar(), {"bass", "comp"}),
        # left-hand roots under right-hand shells (two notes): the bass makes them chords
        (notes((0, 1.5, 36), (0, 1.5, 58), (0, 1.5, 64), (2, 1.5, 43), (2, 1.5, 58), (2, 1.5, 65)),
         {"bass", "comp"}),
        # held chords under a tune above them
        (notes((0, 2, 48), (0, 2, 52), (0, 2, 55), (2, 2, 48), (2, 2, 53), (2, 2, 57)) + melody_bar(),
         {"comp", "melody"}),
        # low close voicings are comping, not a bass line
        (chord_bar(voicing=(48, 52, 55)), {"comp"}),
        # a trombone's tune in the tenor register is a melody
        (melody_bar(base=55), {"melody"}),
        # a bass line played legato (each note rings into the next) and one played staccato
        (notes(*((i, 1.12, 38 + 2 * i) for i in range(4))), {"bass"}),
        (notes(*((i, 0.1, 38 + 2 * i) for i in range(4))), {"bass"}),
        # a bass line that leaps an octave is still one line
        (notes((0, 0.9, 36), (1, 0.9, 48), (2, 0.9, 36), (3, 0.9, 48)), {"bass"}),
        # a pickup note is no part; neither is silence
        (notes((3.5, 0.4, 67)), set()),
        ([], set()),
    ],
    ids=["bass", "comp", "melody", "drums", "lh-bass+chords", "lh-bass+shells", "chords+tune",
         "low-voicings", "trombone", "legato-bass", "staccato-bass", "octave-bass", "pickup", "silence"],
)
def test_a_bar_reads_as_the_part_it_plays(played: list[PlayedNote], roles: set[str]) -> None:
    assert bar_roles(played, 0.0, 4.0) == roles


def test_a_chord_held_over_the_bar_line_is_still_comping() -> None:
    pad = notes((0, 8, 60), (0, 8, 64), (0, 8, 67))
    assert bar_roles(pad, 4.0, 8.0) == {"comp"}


def test_a_note_struck_just_before_the_bar_line_belongs_to_the_next_bar() -> None:
    tune = melody_bar(1, base=72)
    early = [PlayedNote(n.start - 0.03, n.end, n.pitch, 80, 0) if n.start == 4 else n for n in tune]
    assert bar_roles(chord_bar(0) + early, 0.0, 4.0) == {"comp"}


def test_decisions_are_causal_a_held_note_counts_up_to_the_bar_line() -> None:
    rec = RoleRecognizer(4)
    for t, p in ((0, 36), (1, 40), (2, 43)):
        rec.note(t, 0.9, p, 80, 1)
    rec.note_on(38, 80, 3.0, 1)  # not released yet
    assert rec.decide(4.0) == {"bass"}
    rec.note(3.0, 0.9, 38, 80, 1)  # its note-off closes it: one note, not two
    assert len(rec._notes) == 4


def test_a_note_whose_note_off_never_came_stops_counting() -> None:
    rec = RoleRecognizer(4, return_bars=1)
    for n in chord_bar(0):
        rec.note_on(n.pitch, 80, n.start, 0)  # every note-off lost
    assert rec.decide(4.0) == {"comp"}
    for line in (8.0, 12.0, 16.0):
        rec.decide(line)
    assert rec.roles == frozenset()


@pytest.mark.parametrize("style", STYLES, ids=[s.name for s in STYLES])
def test_synthetic_players_are_heard_bar_by_bar(style) -> None:  # type: ignore[no-untyped-def]
    """Seeded synthetic players with a player's looseness (bench/roles.py): most bars exactly right.
    (A bar where a player plays one short note or rests reads as nothing; the hysteresis covers it.)"""
    right, total = per_bar(style, seeds=6)
    assert right / total >= 0.8, (style.name, right, total)


def test_over_all_styles_bars_are_read_right_and_parts_change_within_two_bars() -> None:
    right = total = 0
    for style in STYLES:
        r, t = per_bar(style, seeds=6)
        right, total = right + r, total + t
    assert right / total >= 0.9
    r = reactions(seeds=4)
    assert len(r["take"]) >= 20 and len(r["return"]) >= 20
    # heard part-way through its first bar: the agent rests from the next bar line
    assert sorted(r["take"])[len(r["take"]) // 2] == 1
    assert max(r["take"]) <= 3
    assert sorted(r["take bass"])[len(r["take bass"]) // 2] == 1
    assert sorted(r["take comp"])[len(r["take comp"]) // 2] == 1
    assert sorted(r["return"])[len(r["return"]) // 2] == 2  # two bars without it, and it is back
    # judged at bar lines only (no part-way judgment): a bar to hear it, a bar to reach a bar line
    late = reactions(seeds=4, early=False)
    assert sorted(late["take"])[len(late["take"]) // 2] == 2
    assert sorted(late["return"])[len(late["return"]) // 2] == 3
    # the parts held are the same either way, and no part taken part-way was not played
    assert r["settled"] == late["settled"] and r["spurious"] == late["spurious"]
    assert r["unconfirmed"] <= 1


# -- part-way through a bar --------------------------------------------------------------------------
def causal(played: list[PlayedNote], now: float) -> list[PlayedNote]:
    """As heard at `now`: a note not released by then is still held."""
    return [n if n.end is not None and n.end <= now
            else PlayedNote(n.start, None, n.pitch, n.velocity, n.channel) for n in played if n.start <= now]


@pytest.mark.parametrize(
    ("played", "roles"),
    [
        (bass_bar(), {"bass"}),  # three quarters of a walking bass
        (notes((0, 1.6, 36), (2, 1.6, 43)), {"bass"}),  # a two-feel bass, low
        (notes((0, 1.6, 38), (2, 1.6, 50)), set()),  # ... with a D3: two notes are not enough
        (notes((0, 0.9, 45), (1, 0.9, 43), (2, 0.9, 72)), set()),  # a melody dipping low for two notes
        (notes((0, 0.9, 55), (1, 0.9, 50), (2, 0.9, 48)), set()),  # ... or sliding down into it
        (chord_bar(), {"comp"}),  # a chord struck: a melody player strikes none
        (notes((0, 4, 60), (0, 4, 64), (0, 4, 67)), {"comp"}),  # a whole-bar chord
        (notes((0, 0.45, 72), (0.5, 0.45, 74), (1, 0.9, 76)), {"melody"}),
        (notes((0, 1.5, 72), (1.5, 1.5, 74)), set()),  # two notes of a tune
        (drum_bar(), {"drums"}),
        (notes((0, 1.5, 36), (2, 1.5, 43)) + chord_bar(), {"bass", "comp"}),  # a pianist's two hands
        (notes((1.5, 0.9, 36)), set()),
    ],
    ids=["walking", "two-feel", "two-feel-d3", "dip", "slide", "chords", "pad", "tune", "tune-2",
         "drums", "lh-bass+chords", "one-note"],
)
def test_a_part_is_beyond_doubt_part_way_through_a_bar_only_on_more_evidence(
        played: list[PlayedNote], roles: set[str]) -> None:
    assert early_roles(causal(played, 2.4), 0.0, 2.4) == roles


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


# -- hysteresis ---------------------------------------------------------------------------------------
def feed(rec: RoleRecognizer, played: list[PlayedNote]) -> None:
    for n in played:
        assert n.end is not None
        rec.note(n.start, n.end - n.start, n.pitch, n.velocity, n.channel)


def test_a_part_is_taken_after_a_bar_and_left_after_return_bars_without_it() -> None:
    rec = RoleRecognizer(4, return_bars=2)
    script = [bass_bar(0), bass_bar(1), [], bass_bar(3), [], [], []]
    held = []
    for bar, played in enumerate(script):
        feed(rec, played)
        held.append(set(rec.decide(4.0 * (bar + 1))))
    # taken at the first bar line; one bar's rest does not give it back; two do
    assert held == [{"bass"}, {"bass"}, {"bass"}, {"bass"}, {"bass"}, set(), set()]


def test_switching_parts_takes_the_new_one_at_once_and_leaves_the_old_after_return_bars() -> None:
    rec = RoleRecognizer(4, return_bars=2)
    held = []
    for bar in range(6):
        feed(rec, bass_bar(bar) if bar < 3 else melody_bar(bar))
        held.append(set(rec.decide(4.0 * (bar + 1))))
    assert held[2] == {"bass"}
    assert held[3] == {"bass", "melody"}
    assert held[5] == {"melody"}


def test_one_bar_of_chords_in_a_bass_line_does_not_flip_the_part() -> None:
    rec = RoleRecognizer(4, return_bars=2)
    held = []
    for bar in range(5):
        feed(rec, chord_bar(bar, (48, 52, 55)) if bar == 2 else bass_bar(bar))
        held.append(set(rec.decide(4.0 * (bar + 1))))
    assert all("bass" in h for h in held)


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


def test_random_streams_never_raise() -> None:
    rng = random.Random(5)
    for _ in range(300):
        played = [PlayedNote(rng.uniform(-4, 8), None if rng.random() < 0.2 else rng.uniform(-4, 12),
                             rng.randint(0, 127), rng.randint(1, 127), rng.choice((0, 9)))
                  for _ in range(rng.randint(0, 30))]
        played = [n for n in played if n.end is None or n.end > n.start]
        assert bar_roles(played, 4.0, 8.0) <= {"bass", "comp", "melody", "drums"}


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


def test_a_replayed_player_holding_the_bass_ends_on_the_bass() -> None:
    follower = RoleFollower(ensemble())  # type: ignore[arg-type]
    assert follower.ending_role() == "melody"
    play(follower, [bass_bar(0), bass_bar(1)])
    assert follower.ending_role() == "bass"


def test_a_flood_of_notes_is_bounded() -> None:
    rec = RoleRecognizer(4)
    for i in range(5000):
        rec.note(i * 0.001, 0.5, 60 + i % 12, 80, 0)
    assert len(rec._notes) <= 1024
    assert rec.decide(8.0) <= {"bass", "comp", "melody"}
