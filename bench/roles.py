"""How well the conductor hears which part the player plays (conductor/roles.py), and how soon the
band makes room.

Synthetic players, seeded, with a player's looseness (onsets up to 40 ms off the grid at 120 BPM,
lengths and velocities varied, rests): walking and two-feel bass lines, comping chords (close and
shell voicings, with rests), melodies (flute to trombone registers), drum grooves, a pianist's left
hand bass under right-hand chords, and chords with a melody on top. Each bar is judged alone
(`bar_roles`, exact set of roles) and then the whole stream through the follower, switching style
every 8 bars, for the bars it takes from a change to the agent's silence and to its return.

    python -m bench.roles [--seeds 50] [--json PATH] [--quick] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conductor.roles import PlayedNote, RoleRecognizer, bar_roles, first_free_bar_line

BPB = 4
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


def reactions(seeds: int, lead_beats: float = 2.6, segment: int = 8) -> dict[str, list[int]]:
    """Bars from a style's first note to the yield of a part it takes, and from its last note to
    the return of a part it leaves, streaming through the recognizer as the conductor does."""
    out: dict[str, list[int]] = {"take": [], "return": [], "settled": [], "spurious": []}
    for seed in range(seeds):
        rng = random.Random(1000 + seed)
        order = rng.sample(range(len(STYLES)), len(STYLES))
        raw: list[Raw] = []
        for i, k in enumerate(order):
            raw += STYLES[k].make(rng, segment, i * segment * BPB)
        notes = sorted(played(raw), key=lambda n: n.start)
        rec = RoleRecognizer(BPB, return_bars=2)
        fed = 0
        timeline: list[tuple[float, frozenset[str]]] = []
        for bar_line in range(BPB, (len(order) * segment + 4) * BPB, BPB):
            while fed < len(notes) and notes[fed].start < bar_line:
                n = notes[fed]
                assert n.end is not None
                rec.note(n.start, n.end - n.start, n.pitch, n.velocity, n.channel)
                fed += 1
            roles = rec.decide(float(bar_line))
            timeline.append((first_free_bar_line(bar_line, lead_beats, BPB), roles))
        for bar_line, (_, roles) in zip(range(BPB, 10**9, BPB), timeline, strict=False):
            i = (bar_line - 1) // (segment * BPB)
            settled = i < len(order) and bar_line - i * segment * BPB > 3 * BPB  # past the hand-over
            if settled:
                out["settled"].append(roles == STYLES[order[i]].roles)
                out["spurious"].append(bool(roles - STYLES[order[i]].roles))
        for i, k in enumerate(order):
            begin, end = i * segment * BPB, (i + 1) * segment * BPB
            before = STYLES[order[i - 1]].roles if i else frozenset()
            after = STYLES[order[i + 1]].roles if i + 1 < len(order) else frozenset()
            for role in STYLES[k].roles - before:
                line = next((t for t, r in timeline if role in r and t > begin), None)
                if line is not None:
                    out["take"].append(round((line - begin) / BPB))
            for role in STYLES[k].roles - after:
                line = next((t for t, r in timeline if role not in r and t > end), None)
                if line is not None:
                    out["return"].append(round((line - end) / BPB))
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
    r = reactions(seeds)
    for what in ("take", "return"):
        bars = r[what]
        hist = {b: bars.count(b) for b in sorted(set(bars))}
        result[f"{what}_bars"] = hist
        print(f"{what}: bars from the change to the bar line it takes effect at: {hist} (n={len(bars)})")
    n = len(r["settled"])
    right, spurious = sum(r["settled"]) / n, sum(r["spurious"]) / n
    result["settled"] = {"bars": n, "exactly_right": right, "spurious": spurious}
    print(f"with hysteresis, after bars 4 to 8 of each style: the player's parts exactly right {right:.3f}, "
          f"a part the player is not playing held {spurious:.3f} (n={n})")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
