"""The same music under any CPU load: what a model agent commits is a function of its inputs in
musical time and its seed, not of how far ahead its model happened to get.

A real Planner on the shipped model is fed one scripted performance (clock messages every 1/20 beat,
the player's notes as the conductor sends them, another agent's committed notes) three times: with
the model drawing everything it may at once (an idle machine), with the model drawing one window per
three clock messages (a busy machine that still keeps up), and starved (a machine that cannot keep
up). The first two must commit exactly the same notes; the starved one must still play every
downbeat chord it could not draw, fewer notes in all, and say how far behind it was.

And as real runs feed it: the clock messages an agent sends (the window from its last commit point
to now + the commit distance, on ticks that fall differently each run) and the player's messages
read a few milliseconds before or after the tick that crosses their beat. Three such timings must
commit the same notes.
"""

from __future__ import annotations

import hashlib
import random
from itertools import accumulate, pairwise
from pathlib import Path

from agents.engines.model_worker import Planner, WorkerConfig

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "default"
BARS = 8
STEP = 0.05  # beats between clock messages (the agent's 10 ms tick is ~0.02 beat at 120 BPM)
MELODY = [(b + 0.0, 1.0, 72 - (b % 5), 90) for b in range(0, 4 * BARS, 2)]  # a half-note line
PIANO = [(b + 0.0, 1.0, p, 80) for b in range(0, 4 * BARS) for p in (60, 64, 67)]
# a tune as a replayed file sends it: dotted rhythms, each note 95 % of its value, so its note-offs
# (which correct the lengths of the held notes) fall between the quarter beats
VALUES = [1.0, 1.0, 1.0, 1.0, 1.5, 0.5, 2.0] * (BARS // 2)  # two bars: quarters, a dotted quarter, a half
DOTTED = [(end - value, 0.95 * value, 72 - i % 5, 90)
          for i, (end, value) in enumerate(zip(accumulate(VALUES), VALUES, strict=True))]


def config(**over: object) -> WorkerConfig:
    base = dict(model=str(SHIPPED), track=2, channel=1, pitch_range=(36, 55),
                programs=((1, 0, 73), (2, 1, 33), (3, 2, 0)), tempo=120.0, beats_per_bar=4,
                key_sharps=0, key_minor=0, plan_text="C | G7 | Am | F", plan_loop=True, plan_key="C",
                horizon_beats=2.0, seed=11, temperature=0.9, top_p=0.98, top_k=20, density=1.0,
                chord_bias=4.0, bass=True, tracks={"melody": (1, 0), "bass": (2, 1), "piano": (3, 2)},
                human="melody", onset_grid=8, role="bass", polyphony=1,
                roles=((1, "melody"), (2, "bass"), (3, "comp")))
    return WorkerConfig(**(base | over))  # type: ignore[arg-type]


def perform(planner: Planner, windows_per_tick: int | None, every: int = 1,
            step: float = STEP, pause: random.Random | None = None) -> list[tuple]:
    """Drive one performance; ``windows_per_tick`` None draws all the model may, else at most that
    many windows every ``every`` ticks. A ``step`` longer than STEP is a model process so slow that
    it reads the clock only that often (the clock messages between pile up unread). With ``pause``,
    a window pauses after an event at random (a message waits), to go on at the next call."""
    committed: list[tuple] = []
    heard_melody = heard_piano = held = 0
    ticks = int(4 * BARS / step)
    for i in range(ticks):
        now = i * step
        until = now + 1.0
        # the player's note reaches the agent at its note-on (held) and again, whole, at its note-off;
        # the piano's when the piano commits it
        while held < len(MELODY) and MELODY[held][0] <= now:
            s, _, p, v = MELODY[held]
            planner.hear_held("melody", s, p, v, 0)
            held += 1
        while heard_melody < len(MELODY) and sum(MELODY[heard_melody][:2]) <= now:
            s, d, p, v = MELODY[heard_melody]
            planner.hear("melody", s, d, p, v, 0)
            heard_melody += 1
        while heard_piano < len(PIANO) and PIANO[heard_piano][0] < until:
            s, d, p, v = PIANO[heard_piano]
            planner.hear("piano", s, d, p, v, 2)
            heard_piano += 1
        committed += planner.commit(now, until)
        budget = None if windows_per_tick is None else (windows_per_tick if i % every == 0 else 0)
        while planner.wants_work() and (budget is None or budget > 0):
            planner.work(interrupt=None if pause is None else (lambda: pause.random() < 0.3))
            if budget is not None:
                budget -= 1
    return committed


def test_a_busy_machine_that_keeps_up_plays_the_same_notes() -> None:
    idle = perform(Planner(config()), None)
    busy = perform(Planner(config()), 1, every=3)
    assert len(idle) > 4 * BARS  # it played (more than a note a bar)
    assert idle == busy


def test_windows_paused_for_messages_draw_the_same_notes() -> None:
    """A model process pauses a window between two events when a message waits, and answers it (a
    commit of beats before the window, another part's note) before going on: nothing it answers
    meanwhile may change the window, or the commit, from what an idle machine plays."""
    idle = perform(Planner(config()), None)
    paused_planner = Planner(config())
    paused = perform(paused_planner, 1, every=2, pause=random.Random(4))
    assert paused_planner.behind_beats == 0
    assert idle == paused


def test_another_seed_plays_other_notes() -> None:
    assert perform(Planner(config()), None) != perform(Planner(config(seed=12)), None)


def test_a_machine_that_cannot_keep_up_keeps_the_downbeats() -> None:
    idle_planner = Planner(config())
    idle = perform(idle_planner, None)
    starved_planner = Planner(config())
    starved = perform(starved_planner, None, step=4.0)  # it reads the clock once a bar
    assert idle_planner.behind_beats == 0
    assert starved_planner.behind_beats >= 2  # it fell behind, more than once
    assert 0 < len(starved) < len(idle)
    # every strong beat the model had not drawn in time still sounds: the fallback plays it
    starts = {round(n.start_beat, 6) for n in starved}
    assert starved_planner.missed and all(float(b) in starts for b in starved_planner.missed)
    bass = [n.pitch for n in starved]
    assert all(36 <= p <= 55 for p in bass)


def test_the_bass_is_one_line_below_the_band() -> None:
    notes = perform(Planner(config()), None)
    ends = sorted((n.start_beat, n.end_beat) for n in notes)
    assert all(a_end <= b_start + 1e-9 for (_, a_end), (b_start, _) in pairwise(ends))
    for n in notes:
        sounding_piano = [pp for ps, pd, pp, _ in PIANO if ps <= n.start_beat < ps + pd]
        if sounding_piano:
            assert n.pitch < min(sounding_piano)


def test_a_drummers_kick_is_no_pitch_the_bass_must_stay_under() -> None:
    """Drum notes are note numbers, not pitches: a kick (36) on every beat must neither push the bass
    under it (no room: the note was dropped) nor make it avoid the hi-hat's 42."""
    tracks = {"melody": (1, 0), "bass": (2, 1), "piano": (3, 2), "drums": (4, 9)}
    planner = Planner(config(human="", tracks=tracks,
                             roles=((1, "melody"), (2, "bass"), (3, "comp"), (4, "drums"))))
    out: list[tuple] = []
    drum_beat = 0
    for i in range(int(4 * BARS / STEP)):
        now = i * STEP
        while drum_beat < now + 1.0:
            planner.hear("drums", drum_beat, 0.25, 36, 100, 9)
            planner.hear("drums", drum_beat, 0.25, 42, 70, 9)
            drum_beat += 1
        out += planner.commit(now, now + 1.0)
        while planner.wants_work():
            planner.work()
    on_beat = [n.start_beat for n in out if abs(n.start_beat - round(n.start_beat)) < 1e-9]
    assert len(on_beat) >= 2 * BARS  # the bass still plays on the beats the kick plays


def perform_as_the_agent(planner: Planner, seed: int, tune: list[tuple] = MELODY) -> list[tuple]:
    """Drive the Planner as a real agent does, with one run's timing: a clock tick every 10-15 ms
    (0.02-0.03 beat at 120 BPM) from a random phase, each clock message the window from the last
    commit point to now + the commit distance (agents/agent.py), the player's note-ons and note-offs
    read up to 10 ms before or 25 ms after the tick that crosses their beat (the conductor's tick,
    the bus and the agent's loop each add a few milliseconds), the piano's notes as it commits them."""
    rng = random.Random(seed)
    player = sorted([(s + rng.uniform(-0.02, 0.05), ("held", s, p, v)) for s, _, p, v in tune]
                    + [(s + d + rng.uniform(-0.02, 0.05), ("note", s, d, p, v)) for s, d, p, v in tune])
    committed: list[tuple] = []
    heard = heard_piano = 0
    now = -1.0 + rng.uniform(0.0, 0.02)  # the count-in's first tick
    last = 0.0
    while now < 4 * BARS:
        while heard < len(player) and player[heard][0] <= now:
            kind, *args = player[heard][1]
            if kind == "held":
                planner.hear_held("melody", *args, 0)
            else:
                planner.hear("melody", *args, 0)
            heard += 1
        target = now + 1.0
        while heard_piano < len(PIANO) and PIANO[heard_piano][0] < target - rng.uniform(0.0, 0.05):
            planner.hear("piano", *PIANO[heard_piano], 2)
            heard_piano += 1
        if target > last:  # the count-in: nothing before beat 0 is committed
            committed += planner.commit(last, target)
            last = target
        while planner.wants_work():
            planner.work()
        now += rng.uniform(0.02, 0.03)
    return committed


def test_the_clocks_ticks_and_the_messages_jitter_change_no_note() -> None:
    """Two real runs of one seed differ only in when each message was read; the notes must not."""
    runs = [perform_as_the_agent(Planner(config()), seed) for seed in (1, 2, 3)]
    assert len(runs[0]) > 4 * BARS
    assert runs[0] == runs[1] == runs[2]


def windows_drawn(planner: Planner) -> dict[float, str]:
    """Per window, a digest of the context the model drew its last drawing of it from."""
    seen: dict[float, str] = {}
    start = planner.generator.new_window

    def new_window() -> None:
        seen[planner.generated_until] = hashlib.sha1(planner.context.rows.tobytes()).hexdigest()
        start()

    planner.generator.new_window = new_window  # type: ignore[method-assign]
    return seen


def test_a_held_notes_length_reaches_the_same_windows_whatever_the_ticks() -> None:
    """The note-off of a note the part heard at its note-on corrects its length from a window fixed
    in beats. A machine whose ticks had let it draw that window before the note-off arrived put the
    correction in at once, and a re-plan for the player's next note then redrew the windows before
    it with the correction, where a machine whose ticks fell otherwise redrew them without: the same
    window drawn from two contexts (a part that commits after another, at its turn, hit it on most
    tick phases; as real processes the band played 44-70 % of its notes differently from beat 49)."""
    drawn = []
    for seed in (1, 2, 3, 4):
        planner = Planner(config(commit_offset=0.4))
        seen = windows_drawn(planner)
        perform_as_the_agent(planner, seed, DOTTED)
        drawn.append(seen)
    assert len(drawn[0]) > 4 * BARS
    for other in drawn[1:]:
        assert other == drawn[0]
