"""Reaction: from the player's note-on to the first agent note it changes.

A real model part (the shipped model, the agent's own Planner, driven as the agent drives it: a
clock every 1/20 beat, committing one beat ahead) accompanies a replayed player twice: once as
written, and once with one extra note played at beat ``b`` (a note-on, heard at once, as the
conductor sends it). The Planner is deterministic for a seed, so everything the part committed
before it heard the extra note is the same in both runs; the first committed note that differs is
the part's reaction, and its start minus ``b`` is the reaction time in beats. The goal: within one
beat plus the commit window (the beat the part commits ahead, plus its turn in the ensemble's
stagger), at p90 over many notes. Notes the part would not change at all are counted apart. A
second line counts only what a listener hears change (another onset, pitch or length, or a velocity
step of 5 or more): the part follows the player's dynamics, and a louder note moves later
velocities by 1 or 2, which the first line counts as an answer.

    .venv/bin/python -m bench.reaction [--json PATH] [--smoke] [--notes 40] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from agents.engines.model_worker import Planner, WorkerConfig
from bench.percentiles import nearest_rank as percentile
from protocol.messages import Note

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "default"
STEP = 0.05  # beats between clock messages (the agent's 10 ms tick is ~0.02 beat at 120 BPM)
COMMIT_BEATS = 1.0  # timing.commit_beats: how far ahead the agent commits
BARS = 6
MELODY = [(b + 0.0, 1.0, 72 - (b % 5), 90) for b in range(0, 4 * BARS, 2)]  # a half-note line


def config(role: str, seed: int) -> WorkerConfig:
    """A bass (one line, under the band) or a comping piano, as the default ensemble has them."""
    common: dict[str, Any] = dict(
        model=str(SHIPPED), programs=((1, 0, 73), (2, 1, 33), (3, 2, 0)), tempo=120.0,
        beats_per_bar=4, key_sharps=0, key_minor=0, plan_text="C | G7 | Am | F", plan_loop=True,
        plan_key="C", horizon_beats=2.0, seed=seed, temperature=0.9, top_p=0.98, top_k=20, density=1.0,
        chord_bias=4.0, tracks={"melody": (1, 0), "bass": (2, 1), "piano": (3, 2)}, human="melody",
        roles=((1, "melody"), (2, "bass"), (3, "comp")))
    if role == "bass":
        return WorkerConfig(**common, track=2, channel=1, pitch_range=(36, 55), bass=True, onset_grid=8,
                            role="bass", polyphony=1)
    return WorkerConfig(**common, track=3, channel=2, pitch_range=(48, 84), bass=False, onset_grid=4,
                        role="comp", polyphony=4, chord_notes=3, commit_offset=0.4)


def perform(cfg: WorkerConfig, extra: tuple[float, int] | None, *,
            tune: list[tuple[float, float, int, int]] = MELODY, bars: int = BARS,
            planner: Planner | None = None) -> list[Note]:
    """Everything the part commits over ``bars`` bars of the player's ``tune`` ((start, length,
    pitch, velocity) in beats); ``extra`` (beat, pitch) is one more player note. ``planner``: one
    set up by the caller (made from ``cfg`` when not given)."""
    planner = Planner(cfg) if planner is None else planner
    melody = sorted(tune + ([(extra[0], 0.5, extra[1], 100)] if extra else []))
    ends = sorted(melody, key=lambda n: n[0] + n[1])
    committed: list[Note] = []
    on = off = 0
    for i in range(int(4 * bars / STEP)):
        now = i * STEP
        while on < len(melody) and melody[on][0] <= now:
            s, _, p, v = melody[on]
            planner.hear_held("melody", s, p, v, 0)
            on += 1
        while off < len(ends) and ends[off][0] + ends[off][1] <= now:
            s, d, p, v = ends[off]
            planner.hear("melody", s, d, p, v, 0)
            off += 1
        committed += planner.commit(now, now + COMMIT_BEATS)
        while planner.wants_work():
            planner.work()
    return sorted(committed, key=lambda n: (n.start_beat, n.pitch))


AUDIBLE_VELOCITY = 5  # the least velocity step a listener takes for a change (accents differ by 5-15)


def audible(a: Note, b: Note) -> bool:
    """Whether two notes at one place in two runs sound different: another onset, pitch or length,
    or a velocity step of AUDIBLE_VELOCITY or more (a part following the player's louder note by 1
    is a change no one hears)."""
    return ((a.start_beat, a.pitch, a.duration_beats) != (b.start_beat, b.pitch, b.duration_beats)
            or abs(a.velocity - b.velocity) >= AUDIBLE_VELOCITY)


def reaction(base: list[Note], changed: list[Note], at: float, *, heard: bool = False) -> float | None:
    """Beats from ``at`` to the first note that differs (``heard``: audibly), or None if the part
    played the same."""
    for a, b in zip(base, changed, strict=False):
        if (audible(a, b) if heard else a != b):
            return min(a.start_beat, b.start_beat) - at
    if len(base) != len(changed):
        longer = base if len(base) > len(changed) else changed
        return longer[min(len(base), len(changed))].start_beat - at
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--smoke", action="store_true", help="three notes per part, seconds")
    ap.add_argument("--notes", type=int, default=40, help="extra player notes per part")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    n = 3 if args.smoke else args.notes
    rng = random.Random(args.seed)
    rows: dict[str, Any] = {}
    for role in ("bass", "piano"):
        cfg = config("bass" if role == "bass" else "comp", seed=args.seed + 10)
        window = COMMIT_BEATS + cfg.commit_offset
        base = perform(cfg, None)
        times: list[float] = []
        heard: list[float] = []
        unchanged = 0
        for _ in range(n):
            at = rng.randrange(8 * 4, (4 * BARS - 4) * 4) / 4  # on a sixteenth, from bar 3 on
            pitch = rng.choice([61, 63, 66, 68, 70, 73, 75])  # outside C major: a note that asks an answer
            changed = perform(cfg, (at, pitch))
            r = reaction(base, changed, at)
            if r is None:
                unchanged += 1
            else:
                times.append(r)
            h = reaction(base, changed, at, heard=True)
            if h is not None:
                heard.append(h)
        rows[role] = {"notes": n, "changed": len(times), "unchanged": unchanged,
                      "p50_beats": percentile(times, 0.5), "p90_beats": percentile(times, 0.9),
                      "max_beats": max(times) if times else float("nan"), "goal_beats": 1.0 + window,
                      "commit_window_beats": window, "audible_p50_beats": percentile(heard, 0.5),
                      "audible_p90_beats": percentile(heard, 0.9), "audible_unchanged": n - len(heard)}
    print(f"reaction from the player's note-on to the first changed agent note ({n} notes per part, "
          "shipped model, 120 BPM)")
    for role, r in rows.items():
        print(f"  {role:6s} p50 {r['p50_beats']:.2f}  p90 {r['p90_beats']:.2f}  max {r['max_beats']:.2f}"
              f" beats   goal <= {r['goal_beats']:.2f}"
              f" (1 beat + commit window {r['commit_window_beats']:.2f})"
              f"   unchanged {r['unchanged']}/{r['notes']}")
        print(f"  {'':6s} audibly (onset, pitch, length or velocity by {AUDIBLE_VELOCITY}+): "
              f"p50 {r['audible_p50_beats']:.2f}  p90 {r['audible_p90_beats']:.2f}"
              f"   unchanged {r['audible_unchanged']}/{r['notes']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
