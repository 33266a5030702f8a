"""The beats plan/commit reckons with: how far ahead, how late and in what turn each input counts.

These are what make a part's notes a function of musical time (agents/engines/model_worker.py's
Planner says how each one is used): a window's random stream, the lead a re-plan leaves the model,
and the margins within which a message read a little late still takes effect where it would on time.
"""

from __future__ import annotations

import math

from agents.arrangement import COMMIT_STEP_BEATS

SYNC_WINDOWS = 2  # windows a commit may draw itself to reach what an idle machine has drawn
PROVISIONAL_BEATS = 2.0  # a held note's length until its note-off says: the band avoids it meanwhile
FIRST_BEAT_MARGIN = 0.5  # the least a part's first beat may lie ahead of now
START_SLACK_BEATS = 0.1  # how far past its commit turn a part's first beat may lie (a late first tick)
REPLAN_LEAD_BEATS = 0.25  # the least time a re-plan leaves the model before its first redrawn beat
# how late the player's message may be read (past its beat plus the commit distance) and still take
# effect exactly where it would on time; less than REPLAN_LEAD_BEATS, which leaves the model time to
# draw the re-plan's first window
PLAYER_SLACK_BEATS = 0.1875
OTHERS_GATE_BEATS = 1.0  # how long after its start another agent's note has surely arrived
HEARD_GUARD_BEATS = COMMIT_STEP_BEATS  # a commit takes the notes the others committed a turn before
MAX_STEPS_PER_WINDOW = 48  # a model that keeps re-striking cannot hold a window for ever


def ceil_quarter(beat: float) -> float:
    """The first quarter beat at or after ``beat`` (a hair past a quarter counts as on it)."""
    return math.ceil(4 * beat - 1e-6) / 4


def window_seed(seed: int, beat: float) -> int:
    """The random stream of the window starting at ``beat``: a function of the two, nothing else."""
    return (seed * 1_000_003 + round(beat * 16) * 7_919) % (2**32)

