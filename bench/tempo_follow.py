"""Tempo following against a replayed player who speeds up and slows down.

The player plays a melody's rhythm (eighths, quarters, dotted figures, rests; seeded) on a pulse of
their own: 100 BPM, an accelerando to 120 over 16 bars, 4 bars at 120, a ritardando back to 100 over
16 bars, with a human's timing scatter (10 ms RMS by default). The conductor starts at 100 with the
player and, at each of its beats, feeds the player's onsets so far to `conductor.tempo_follow` and
announces its answer for the next beat, as the running conductor does. Measured: at each beat, the
conductor's beat time minus the player's (ms), p50/p90/max after the first two bars, per section.
The error is against the beat the player means (the curve their onsets scatter around), not their
onsets: against the onsets even a band on the player's exact beat would read their scatter (p90 16 ms
at 10 ms RMS). The same run with following off shows what following buys, and a steady player shows
what a human's scatter alone does to the band's tempo (its beat-to-beat change) and to the error: the
floor that the scatter leaves the pulse fit, with no tempo to follow.

    .venv/bin/python -m bench.tempo_follow [--json PATH] [--smoke] [--jitter-ms 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.percentiles import nearest_rank as percentile
from conductor.tempo_follow import TempoFollower
from protocol.timeline import Timeline

BEATS_PER_BAR = 4
# Rhythm cells of one beat each, as onsets within the beat (a rest is an empty cell).
CELLS: tuple[tuple[float, ...], ...] = ((0.0,), (0.0, 0.5), (0.0, 0.5), (0.5,), (0.0,), (), (0.0, 0.75))


@dataclass(frozen=True, slots=True)
class Curve:
    """The player's tempo over their own beats: piecewise linear between (beat, bpm) points."""

    points: tuple[tuple[float, float], ...]

    def tempo(self, beat: float) -> float:
        pts = self.points
        if beat <= pts[0][0]:
            return pts[0][1]
        for (b0, t0), (b1, t1) in itertools.pairwise(pts):
            if beat <= b1:
                return t0 + (t1 - t0) * (beat - b0) / (b1 - b0)
        return pts[-1][1]

    def times(self, beats: int, step: float = 1 / 64) -> list[float]:
        """Seconds at every 1/64 beat from beat 0 (integrated numerically)."""
        out, t = [0.0], 0.0
        for i in range(int(beats / step)):
            t += 60.0 / self.tempo((i + 0.5) * step) * step
            out.append(t)
        return out


def accel_rit(bars_per_ramp: int = 16, hold_bars: int = 4) -> Curve:
    b = BEATS_PER_BAR
    return Curve(((0.0, 100.0), (2.0 * b, 100.0), ((2 + bars_per_ramp) * b, 120.0),
                  ((2 + bars_per_ramp + hold_bars) * b, 120.0),
                  ((2 + 2 * bars_per_ramp + hold_bars) * b, 100.0),
                  ((4 + 2 * bars_per_ramp + hold_bars) * b, 100.0)))


def simulate(curve: Curve, bars: int, *, follow: bool, jitter_s: float = 0.010, seed: int = 1,
             follower: TempoFollower | None = None, with_band_s: float | None = None,
             cells: tuple[tuple[float, ...], ...] = CELLS) -> dict[str, Any]:
    """Play ``bars`` bars; returns per-beat errors (conductor minus player, seconds) and tempos.

    ``with_band_s``: instead of keeping ``curve``'s tempo, the player plays with the band's beat as
    they hear it, that many seconds late (early if negative), as a player with a synth's buffer or
    a habit of sitting behind the beat does; the errors are then against the band's own beat."""
    rng = random.Random(seed)
    beats = bars * BEATS_PER_BAR
    step = 1 / 64
    grid_times = curve.times(beats + 1, step)

    def player_time(beat: float) -> float:
        i = min(round(beat / step), len(grid_times) - 1)
        return grid_times[i]

    rhythm = [(beat, rng.choice(cells), [rng.gauss(0.0, jitter_s) for _ in range(4)])
              for beat in range(beats)]
    onsets: list[float] = []
    if with_band_s is None:
        onsets = sorted(player_time(beat + off) + noise[i] for beat, offs, noise in rhythm
                        for i, off in enumerate(offs))
    f = follower or TempoFollower()
    tl = Timeline(tempo_bpm=curve.tempo(0.0), beats_per_bar=BEATS_PER_BAR).started(0.0, at_beat=0.0)
    errors: list[float] = []
    tempos: list[float] = []
    fed = 0
    for k in range(beats):
        now = tl.time_at(float(k))
        tl = tl.settled(now)
        if with_band_s is None:
            errors.append(now - player_time(float(k)))
        else:
            # the player hears beat k - 1 and plays beat k's notes on the pulse they hear
            _, offs, noise = rhythm[k]
            onsets += sorted(tl.time_at(k + off) + with_band_s + noise[i] for i, off in enumerate(offs))
            errors.append(0.0)
        tempos.append(tl.tempo_at_beat(float(k)))
        while fed < len(onsets) and onsets[fed] <= now:
            f.onset(onsets[fed], tl)
            fed += 1
        if follow:
            tempo = f.decide(k, tl)
            if tempo is not None:
                tl = tl.with_tempo(tempo, float(k + 1), now)
    return {"errors": errors, "tempos": tempos, "ignored": f.ignored}


def summary(errors: list[float], skip_beats: int) -> dict[str, float]:
    tail = [abs(e) * 1000.0 for e in errors[skip_beats:]]
    return {"p50_ms": percentile(tail, 0.5), "p90_ms": percentile(tail, 0.9), "max_ms": max(tail)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--smoke", action="store_true", help="one seed, 8-bar ramps")
    ap.add_argument("--jitter-ms", type=float, default=10.0, help="the player's timing scatter, RMS")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    ramp = 8 if args.smoke else 16
    curve = accel_rit(ramp)
    bars = 4 + 2 * ramp + 4
    seeds = [args.seed] if args.smoke else [args.seed + i for i in range(5)]
    skip = 2 * BEATS_PER_BAR
    steady = Curve(((0.0, 100.0), (1e6, 100.0)))
    rows: dict[str, Any] = {}
    scenarios: list[tuple[str, Curve, bool, dict[str, Any]]] = [
        ("accel_rit_follow", curve, True, {}), ("accel_rit_fixed", curve, False, {}),
        ("steady_follow", steady, True, {}),
        ("swing_2to1_follow", steady, True, {"cells": ((0.0, 2 / 3),), "jitter_s": args.jitter_ms / 2000.0}),
    ]
    for name, path, follow, extra in scenarios:
        errs: list[float] = []
        wobble: list[float] = []
        for seed in seeds:
            kwargs = {"jitter_s": args.jitter_ms / 1000.0, **extra}
            run = simulate(path, bars, follow=follow, seed=seed, **kwargs)
            errs += run["errors"][skip:]
            tempos = run["tempos"][skip:]
            wobble += [abs(b - a) for a, b in itertools.pairwise(tempos)]
        rows[name] = {**summary(errs, 0), "tempo_step_p90_bpm": percentile(wobble, 0.9)}
    # a player who plays with the band as they hear it, a steady few ms late or early: the band must
    # not chase them into a ritardando (or an accelerando) of its own. The worst of the seeds: one
    # seed's stray is mostly the beat-to-beat wobble, and a band that runs off does so on a few seeds
    drift: dict[str, float] = {}
    for late_ms in (-20, -10, 10, 30):
        strays = []
        for seed in seeds:
            tempos = simulate(steady, 4 * bars, follow=True, jitter_s=args.jitter_ms / 2000.0, seed=seed,
                              with_band_s=late_ms / 1000.0)["tempos"]
            strays.append(max(abs(t - 100.0) for t in tempos))
        drift[f"{late_ms:+d}ms"] = max(strays)
    rows["with_band_max_drift_bpm"] = drift
    print(f"tempo following: 100 -> 120 -> 100 BPM over {ramp}-bar ramps, a steady 100, and a 2:1 swing "
          "(at half the scatter); "
          f"{len(seeds)} seeds, player scatter {args.jitter_ms:.0f} ms RMS; |conductor beat - player beat| "
          "after 2 bars, and the band's tempo change from beat to beat")
    for name, row in rows.items():
        if name == "with_band_max_drift_bpm":
            continue
        print(f"  {name:18s} p50 {row['p50_ms']:7.1f} ms   p90 {row['p90_ms']:7.1f} ms   "
              f"max {row['max_ms']:7.1f} ms   tempo step p90 {row['tempo_step_p90_bpm']:.2f} BPM")
    print(f"  a player with the band, {4 * bars} bars, steady late/early: the band's tempo strays at most "
          f"(worst of {len(seeds)} seeds) "
          + ", ".join(f"{k} {v:.1f} BPM" for k, v in drift.items()))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
