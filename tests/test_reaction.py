"""The part answers the player's note-on as soon as its commit point allows: a re-plan redraws from
the first quarter beat a quarter beat past the commit point, not from the next whole beat."""

from __future__ import annotations

from agents.engines.model_worker import Planner
from bench.reaction import COMMIT_BEATS, STEP, config, perform, reaction


def test_a_replan_for_a_note_between_beats_starts_a_quarter_beat_past_the_commit_point() -> None:
    planner = Planner(config("comp", seed=3))
    for i in range(int(8 / STEP)):
        now = i * STEP
        planner.commit(now, now + COMMIT_BEATS)
        while planner.wants_work():
            planner.work()
    distance = COMMIT_BEATS + planner.cfg.commit_offset  # 1.4, a quarter-beat grid reads it as 1.5
    for at in (8.0, 8.1, 8.3, 8.55, 8.8):
        restart = planner.restart_beat(at)
        assert at + distance + 0.25 - 0.1 <= restart <= at + distance + 0.25 + 0.25 + 0.1, (at, restart)
        assert (4 * restart) % 1 == 0, "re-plans start on the quarter-beat grid"


def test_an_extra_player_note_changes_the_comping_within_a_few_beats() -> None:
    cfg = config("comp", seed=11)
    base = perform(cfg, None)
    late = [reaction(base, perform(cfg, (at, 63)), at) for at in (9.25, 13.5)]
    assert all(r is not None and COMMIT_BEATS <= r <= 6.0 for r in late), late
