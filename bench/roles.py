"""How well the conductor hears which part the player plays (conductor/roles.py), and how soon the
band makes room.

Synthetic players, seeded, with a player's looseness (onsets up to 40 ms off the grid at 120 BPM,
lengths and velocities varied, rests): walking and two-feel bass lines, comping chords (close and
shell voicings, with rests), melodies (flute to trombone registers), drum grooves, a pianist's left
hand bass under right-hand chords, and chords with a melody on top. Each bar is judged alone
(`bar_roles`, exact set of roles), and part-way through (`early_roles`, at the default ensemble's
lead before its bar line); then the whole stream goes through the follower (the default ensemble's
parts and a melody part), switching style every 8 bars, note-on then note-off as the conductor hears
them, for the bars it takes from a change to the agent's silence and to its return: asked at every
tick (the conductor) and, side by side, only at bar lines (no part-way judgment).

    python -m bench.roles [--seeds 50] [--json PATH] [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conductor.bar_parts import PlayedNote, bar_roles, early_roles
from conductor.roles import RoleFollower, commit_lead
from protocol.ensemble import Ensemble, parse_ensemble
from protocol.messages import HeldNote, Note

BPB = 4
ENSEMBLES = Path(__file__).resolve().parents[1] / "ensembles"
JITTER = 0.08  # beats: 40 ms at 120 BPM
Raw = tuple[float, float, int, int, int]  # start, duration, pitch, velocity, channel

CHORDS = [(0, 4, 7), (9, 0, 4), (2, 5, 9), (7, 11, 2, 5), (4, 7, 11), (5, 9, 0)]  # C Am Dm G7 Em F


def _j(rng: random.Random) -> float:
    return rng.uniform(-JITTER / 2, JITTER / 2)


def _near(pc: int, low: int, high: int, rng: random.Random) -> int:
    options = [p for p in range(low, high + 1) if p % 12 == pc]
    return rng.choice(options)


def bass_line(rng: random.Random, bars: int, start: float = 0.0) -> list[Raw]:
    out: list[Raw] = []
    walking = rng.random() < 0.5
    for b in range(bars):
        root = CHORDS[b % len(CHORDS)][0]
        beats = [0, 1, 2, 3] if walking else ([0, 2] if rng.random() < 0.7 else [0, 1.5, 2, 3])
        for i, beat in enumerate(beats):
            pc = root if i == 0 else rng.choice(CHORDS[b % len(CHORDS)])
            dur = (0.9 if walking else 1.6) * rng.uniform(0.6, 1.1)
            pitch = _near(pc, 31, 50, rng)
            out.append((start + b * BPB + beat + _j(rng), dur, pitch, rng.randint(70, 110), 1))
    return out


def comping(rng: random.Random, bars: int, start: float = 0.0) -> list[Raw]:
    out: list[Raw] = []
    shell = rng.random() < 0.4
    for b in range(bars):
        chord = CHORDS[b % len(CHORDS)]
        rhythm = rng.choice([[(0, 2.0), (2, 2.0)], [(0, 1.5), (1.5, 0.5)], [(0, 4.0)],
                             [(0.5, 1.0), (2.5, 1.0)]])
        base = 48 if shell else 55
        voicing = sorted(_near(pc, base, base + 14, rng) for pc in chord[:4])
        if shell:
            voicing = [voicing[0], voicing[0] + 7, voicing[0] + 10 if len(chord) > 3 else voicing[0] + 16]
        for beat, dur in rhythm:
            t = start + b * BPB + beat + _j(rng)
            for p in voicing:
                out.append((t + rng.uniform(0, 0.04), dur * rng.uniform(0.8, 1.0), p, rng.randint(55, 90), 2))
    return out


def melody(rng: random.Random, bars: int, start: float = 0.0) -> list[Raw]:
    out: list[Raw] = []
    low = rng.choice([55, 60, 65, 72])  # trombone-ish to flute
    pitch = low + 7
    for b in range(bars):
        beat = 0.0
        while beat < BPB:
            dur = rng.choice([0.5, 0.5, 1.0, 1.0, 1.5, 2.0])
            if rng.random() < 0.15:  # a breath
                beat += dur
                continue
            pitch = max(low, min(low + 14, pitch + rng.choice([-2, -1, 1, 2, 3, -3])))
            out.append((start + b * BPB + beat + _j(rng), min(dur, BPB - beat) * 0.9, pitch,
                        rng.randint(60, 100), 0))
            beat += dur
    return out


def drums(rng: random.Random, bars: int, start: float = 0.0) -> list[Raw]:
    out: list[Raw] = []
    for b in range(bars):
        for beat in range(BPB):
            t = start + b * BPB + beat
            out.append((t + _j(rng), 0.25, 36 if beat % 2 == 0 else 38, rng.randint(80, 115), 9))
            for half in (0.0, 0.5):
                out.append((t + half + _j(rng), 0.2, 42, rng.randint(50, 80), 9))
    return out


def piano_bass_and_chords(rng: random.Random, bars: int, start: float = 0.0) -> list[Raw]:
    """A pianist alone: left-hand bass notes (root and fifth, or walking), right-hand chords."""
    out: list[Raw] = []
    walking = rng.random() < 0.3
    for b in range(bars):
        chord = CHORDS[b % len(CHORDS)]
        for i, beat in enumerate([0, 1, 2, 3] if walking else [0, 2]):
            pc = chord[0] if i % 2 == 0 else rng.choice(chord)
            out.append((start + b * BPB + beat + _j(rng), rng.uniform(0.7, 1.8 if not walking else 1.0),
                        _near(pc, 31, 47, rng), rng.randint(70, 100), 0))
    return out + [(s, d, p, v, 0) for s, d, p, v, _ in comping(rng, bars, start) if p >= 52] + [
        (s, d, p + 12, v, 0) for s, d, p, v, _ in comping(rng, bars, start) if p < 52]


def chords_and_melody(rng: random.Random, bars: int, start: float = 0.0) -> list[Raw]:
    """Left-hand chords (close, held) under a right-hand tune."""
    out: list[Raw] = []
    for b in range(bars):
        chord = CHORDS[b % len(CHORDS)]
        root = _near(chord[0], 48, 59, rng)
        voicing = sorted(root + (pc - chord[0]) % 12 for pc in chord[:3])
        for beat in rng.choice([(0, 2), (0,), (0, 1, 2, 3)]):
            for p in voicing:
                out.append((start + b * BPB + beat + _j(rng), 1.8, p, 60, 0))
    tune = melody(rng, bars, start)
    return out + [(s, d, p + 12 if p < 67 else p, v, 0) for s, d, p, v, _ in tune]


@dataclass(frozen=True)
class Style:
    name: str
    make: Callable[[random.Random, int, float], list[Raw]]
    roles: frozenset[str]


STYLES = (
    Style("bass line", bass_line, frozenset({"bass"})),
    Style("comping", comping, frozenset({"comp"})),
    Style("melody", melody, frozenset({"melody"})),
    Style("drums", drums, frozenset({"drums"})),
    Style("piano: bass + chords", piano_bass_and_chords, frozenset({"bass", "comp"})),
    Style("chords + melody", chords_and_melody, frozenset({"comp", "melody"})),
)


def played(raw: list[Raw]) -> list[PlayedNote]:
    return [PlayedNote(max(0.0, s), max(0.0, s) + d, p, v, c) for s, d, p, v, c in raw]


def per_bar(style: Style, seeds: int, bars: int = 8) -> tuple[int, int]:
    """(bars judged exactly right, bars judged) for one style."""
    right = total = 0
    for seed in range(seeds):
        notes = played(style.make(random.Random(seed), bars, 0.0))
        for b in range(bars):
            right += bar_roles(notes, b * BPB, (b + 1) * BPB) == style.roles
            total += 1
    return right, total


def causal(notes: list[PlayedNote], now: float) -> list[PlayedNote]:
    """The notes as heard at `now`: those struck by then, a note not yet released still held."""
    return [n if n.end is not None and n.end <= now
            else PlayedNote(n.start, None, n.pitch, n.velocity, n.channel) for n in notes if n.start <= now]


def per_bar_early(style: Style, seeds: int, at: float, bars: int = 8) -> tuple[int, int, int]:
    """(bars whose parts are all taken part-way through, at `at` beats into the bar; bars where a
    part the player does not play is taken; bars) for one style, each bar judged alone."""
    taken = false = total = 0
    for seed in range(seeds):
        notes = played(style.make(random.Random(seed), bars, 0.0))
        for b in range(bars):
            heard = early_roles(causal(notes, b * BPB + at), b * BPB, b * BPB + at)
            taken += heard == style.roles
            false += bool(heard - style.roles)
            total += 1
    return taken, false, total


def bench_ensemble() -> Ensemble:
    """ensembles/default.yaml (its model bass and piano, its drums) with a melody part beside them,
    so every role the player may take has an agent that yields it."""
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    data["agents"].append({"name": "lead", "channel": 3, "role": "melody", "range": [60, 84],
                           "engine": {"type": "pattern"}, "output": {"type": "null"}})
    return parse_ensemble(data)


def stream(notes: list[PlayedNote], follower: RoleFollower, end: float, step: float) -> Iterator[float]:
    """The player's notes into the follower as the conductor hears them: each at its note-on,
    whole at its note-off; yields each tick (`step` beats apart) for the caller to ask the follower."""
    ons = sorted(notes, key=lambda n: n.start)
    offs = sorted(notes, key=lambda n: n.end or 0.0)
    i = j = 0
    k = 1
    while k * step <= end:
        now = k * step
        while i < len(ons) and ons[i].start <= now:
            n = ons[i]
            follower.note_on(HeldNote(n.start, n.pitch, n.velocity, n.channel, "player"))
            i += 1
        while j < len(offs) and (offs[j].end or 0.0) <= now:
            n = offs[j]
            assert n.end is not None
            follower.note(Note(n.start, n.end - n.start, n.pitch, n.velocity, n.channel, "player"))
            j += 1
        yield now
        k += 1


def reactions(seeds: int, early: bool = True, segment: int = 8) -> dict[str, Any]:
    """Bars from a style's first bar line to the yield of a part it takes (1: the agent plays the
    player's first bar with them and rests from the next), and from its last bar to the return of
    a part it leaves, streaming through the follower as the conductor does (`early`: asked at every
    tick, 10 ms at 120 BPM; else only at bar lines, as the follower was before it judged a bar
    part-way through); the parts held after each bar line; parts taken part-way through a bar that
    the whole bar did not confirm."""
    ens = bench_ensemble()
    lead = commit_lead(ens, ens.tempo)
    agent_of: dict[str, str] = {a.role or "": a.name for a in ens.agents}
    out: dict[str, Any] = {"lead_beats": lead, "take": [], "return": [], "settled": [], "spurious": [],
                           "unconfirmed": 0}
    for seed in range(seeds):
        rng = random.Random(1000 + seed)
        order = rng.sample(range(len(STYLES)), len(STYLES))
        raw: list[Raw] = []
        for i, k in enumerate(order):
            raw += STYLES[k].make(rng, segment, i * segment * BPB)
        follower = RoleFollower(ens)
        total = (len(order) * segment + 4) * BPB
        held: list[tuple[float, frozenset[str]]] = []  # at each bar line: the parts the player holds
        silent: list[tuple[float, list[str]]] = []  # ... and the agents that rest in the bar it begins
        for now in stream(played(raw), follower, total, 0.02 if early else float(BPB)):
            follower.at_beat(now, lead)
            if abs(now / BPB - round(now / BPB)) < 1e-9:
                held.append((now, follower.recognizer.roles))
                silent.append((now, follower.yielded_at(now)))
        out["unconfirmed"] += follower.recognizer.unconfirmed
        for bar_line, roles in held:
            i = int((bar_line - 1) // (segment * BPB))
            if i < len(order) and bar_line - i * segment * BPB > 3 * BPB:  # past the hand-over
                out["settled"].append(roles == STYLES[order[i]].roles)
                out["spurious"].append(bool(roles - STYLES[order[i]].roles))
        for i, k in enumerate(order):
            begin, end = i * segment * BPB, (i + 1) * segment * BPB
            before = STYLES[order[i - 1]].roles if i else frozenset()
            after = STYLES[order[i + 1]].roles if i + 1 < len(order) else frozenset()
            for role in STYLES[k].roles - before:
                line = next((t for t, rest in silent if agent_of[role] in rest and t >= begin), None)
                if line is not None:
                    out["take"].append(round((line - begin) / BPB))
                    out.setdefault(f"take {role}", []).append(round((line - begin) / BPB))
            for role in STYLES[k].roles - after:
                line = next((t for t, rest in silent if agent_of[role] not in rest and t >= end), None)
                if line is not None:
                    out["return"].append(round((line - end) / BPB))
                    out.setdefault(f"return {role}", []).append(round((line - end) / BPB))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50, help="synthetic players per style")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--quick", action="store_true", help="10 seeds")
    ap.add_argument("--smoke", action="store_true", help="2 seeds: proves the script runs")
    args = ap.parse_args(argv)
    seeds = 2 if args.smoke else 10 if args.quick else args.seeds
    result: dict[str, Any] = {"seeds": seeds, "per_bar": {}}
    print("| player plays | bars judged | exactly right |")
    print("|---|---|---|")
    all_right = all_total = 0
    for style in STYLES:
        right, total = per_bar(style, seeds)
        all_right += right
        all_total += total
        result["per_bar"][style.name] = {"bars": total, "right": right / total}
        print(f"| {style.name} ({', '.join(sorted(style.roles))}) | {total} | {right / total:.2f} |")
    print(f"| all | {all_total} | {all_right / all_total:.2f} |")
    result["per_bar"]["all"] = {"bars": all_total, "right": all_right / all_total}
    lead = commit_lead(bench_ensemble(), 120.0)
    print(f"\nPart-way through a bar, at {BPB - lead:.1f} beats of {BPB} (the default ensemble's lead, "
          f"{lead:.1f} beats at 120 BPM):")
    print("| player plays | bars | taken part-way | a part not played taken |")
    print("|---|---|---|---|")
    result["early"] = {}
    for style in STYLES:
        taken, false, total = per_bar_early(style, seeds, BPB - lead)
        result["early"][style.name] = {"bars": total, "taken": taken / total, "false": false / total}
        print(f"| {style.name} | {total} | {taken / total:.2f} | {false / total:.3f} |")
    print("\nStreaming, each style for 8 bars in a random order (bars from the change to the bar line it "
          "takes effect at):")
    print("| judged | take | return | parts exactly right | a part not played held | unconfirmed |")
    print("|---|---|---|---|---|---|")
    result["streaming"] = {}
    for name, early in (("at bar lines", False), ("part-way too", True)):
        r = reactions(seeds, early=early)
        row: dict[str, Any] = {"lead_beats": r["lead_beats"], "unconfirmed": r["unconfirmed"]}
        for what in ("take", "return"):
            bars = r[what]
            row[f"{what}_bars"] = {b: bars.count(b) for b in sorted(set(bars))}
        n = len(r["settled"])
        right, spurious = sum(r["settled"]) / n, sum(r["spurious"]) / n
        row["settled"] = {"bars": n, "exactly_right": right, "spurious": spurious}
        result["streaming"][name] = row
        print(f"| {name} | {row['take_bars']} | {row['return_bars']} | {right:.3f} | {spurious:.3f} | "
              f"{r['unconfirmed']} |")
        for role in ("bass", "comp", "melody", "drums"):
            for what in ("take", "return"):
                bars = r.get(f"{what} {role}", [])
                row[f"{what}_bars {role}"] = {b: bars.count(b) for b in sorted(set(bars))}
            print(f"|   {role} | {row[f'take_bars {role}']} | {row[f'return_bars {role}']} | | | |")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
