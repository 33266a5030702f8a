"""The band follows the player's dynamics: a bar or so behind, on top of each part's own accents and
level, in the model parts and the drummer alike."""

from __future__ import annotations

from statistics import mean, median

import pytest
import test_planner_determinism as performance
import yaml
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble
from test_drums import ctx, engine

from agents.dynamics import FOLLOW_GAIN, UNDER_PLAYER, PlayerDynamics, level_velocity
from agents.engines.model_worker import Planner
from protocol.messages import Note

MF = level_velocity("mf")


def test_the_level_moves_toward_the_players_a_bar_behind() -> None:
    d = PlayerDynamics()
    for beat in (3.0, 3.5, 3.75):  # the last beat of bar 1, played loud
        d.add(beat, 60, 112)
    assert d.level(4.0, MF, 4) == MF, "the beat before a bar line is not heard in time to shape that bar"
    assert d.level(8.0, MF, 4) == round(MF + FOLLOW_GAIN * (112 - MF))  # bar 3 follows them
    assert d.level(9.5, MF, 4) == d.level(8.0, MF, 4), "one level for the whole bar"
    assert d.level(20.0, MF, 4) == MF, "with nothing heard lately the part keeps its own level"


def test_soft_playing_brings_the_part_down_and_a_note_counts_once() -> None:
    d = PlayerDynamics()
    for beat in (3.0, 4.0, 5.0, 6.0):
        d.add(beat, 64, 40)
        d.add(beat, 64, 40)  # the same note heard at its note-on and again at its note-off
    assert len(d.onsets) == 4
    assert d.level(8.0, 98, 4) < 98
    sparse = PlayerDynamics()
    sparse.add(5.0, 64, 120)
    assert sparse.level(8.0, MF, 4) == MF, "one note says nothing about how loud the player plays"


def test_the_drummer_plays_up_when_the_player_digs_in() -> None:
    quiet, loud = engine(), engine()
    quiet.human = loud.human = "player"
    for beat in range(12):
        quiet.hear(Note(float(beat), 0.5, 72, 45, 0, "player"))
        loud.hear(Note(float(beat), 0.5, 72, 115, 0, "player"))
        loud.hear(Note(float(beat), 0.5, 40, 127, 0, "piano"))  # another part's notes count for nothing
    soft_bar = [n.velocity for n in quiet.plan(8.0, 12.0, ctx())]
    hard_bar = [n.velocity for n in loud.plan(8.0, 12.0, ctx())]
    assert len(soft_bar) == len(hard_bar) > 0
    assert mean(hard_bar) > mean(soft_bar) + 15


def test_a_model_part_follows_the_players_dynamics(monkeypatch: pytest.MonkeyPatch) -> None:
    def bass_velocities(player_velocity: int) -> list[int]:
        melody = [(s, d, p, player_velocity) for s, d, p, _ in performance.MELODY]
        monkeypatch.setattr(performance, "MELODY", melody)
        notes = performance.perform(Planner(performance.config()), None)
        return [n.velocity for n in notes if n.start_beat >= 8.0]  # from bar 3: the player heard

    soft, loud = bass_velocities(40), bass_velocities(120)
    assert soft and loud
    assert mean(loud) > mean(soft) + 25


def test_a_part_keeps_under_the_player_it_follows() -> None:
    d = PlayerDynamics()
    for beat in (0.0, 1.0, 2.0, 3.0):
        d.add(beat, 76, 92)
    followed = round(MF + FOLLOW_GAIN * (92 - MF))
    assert d.level(8.0, MF, 4) == followed, "without a role the part only follows"
    assert d.level(8.0, MF, 4, "comp") == 92 - UNDER_PLAYER["comp"] < followed
    assert d.level(8.0, MF, 4, "drums") == 92 - UNDER_PLAYER["drums"]
    assert d.level(8.0, 52, 4, "comp") == round(52 + FOLLOW_GAIN * (92 - MF)), "a soft part stays as soft"
    assert d.level(20.0, MF, 4, "comp") == MF, "with nothing heard the part keeps its own level"


def test_the_band_plays_under_the_tune() -> None:
    """The default ensemble behind a flute at 92: every part's notes from bar 3 on (the player heard)
    are softer than the tune at the median, and few of them louder than the tune's note they sound
    under. Before the band kept under the player, the drums' backbeat and kick (104-120) were louder
    than the flute on more than half their strokes."""
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    data["seed"] = 3
    band = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=8)
    band.play()
    tune = band.recorded("melody")
    assert {v for *_, v in tune} == {92}

    def tune_at(beat: float) -> int | None:
        return max((v for s, d, _, v in tune if s <= beat < s + d), default=None)

    for part in ("bass", "piano", "drums"):
        notes = [(s, v) for s, _, _, v in band.recorded(part) if 8.0 <= s < 32.0]
        under = [(v, t) for s, v in notes if (t := tune_at(s)) is not None]
        assert len(under) > 20, part
        assert median(v for v, _ in under) < 92, part
        louder = sum(1 for v, t in under if v > t) / len(under)
        assert louder < 0.3, f"{part}: {louder:.0%} of its notes over the tune"
