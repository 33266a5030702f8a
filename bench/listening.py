"""How well the conductor's listener follows chords and key: Bach chorales against expert analyses.

Ground truth: music21's Roman-numeral analyses (`bach/choraleAnalyses/riemenschneider*.rntxt`),
each paired with the chorale of the same BWV number from music21's corpus. A pair is used only where
the analysis lines up with the score (same number of bars, and the analysed chord's tones cover most
of what sounds at its beats); the others are listed as skipped with the reason.

Per quarter-note beat, the player is simulated causally: at each beat onset the listener knows every
note that started by then (a note still sounding has no known end) and decides. Four conditions: the
player plays all four voices; soprano + bass (a melody over a bass line, the goal's two-voice case);
soprano + alto (two upper voices and no bass, where the lowest note is no bass); the soprano alone (a
melody player). Beside the listener, from the same notes:

* ``onset``: a plain template matcher on the notes sounding at the beat onset only (no memory, no key,
  no hysteresis), the listener's own template scores with the plain lowest-note vote (root, or any
  other chord tone a little), none of the listener's priors on inversion or function;
* ``offline``: the same matcher seeing the whole beat (duration-weighted), which no live system can.

Accuracy: root, and root + quality where quality is the triad family (major: maj, 7, maj7; minor: m,
m7; diminished: dim, m7b5, dim7; augmented; sus), since analyses and players disagree on whether a
passing seventh makes the chord a seventh chord. The exact ten-template quality is reported too.
``changes``: how often the chord followed changes, per 100 beats, beside the analysis's own count; a
listener that flickers (changes far more often than the harmony) would be no use to a band.

The listener's weights were chosen on the even-numbered chorales of the list (``tuned``); the
odd-numbered ones are held out (``held_out``), and both halves are reported beside the whole.

Key following: a synthetic melody (I-IV-V-I outlines, two bars each) in C then in E-flat, and a few
more modulations; how many bars after the modulation the followed key becomes the new one and stays.

Goals: causal root >= 0.90 and root+quality >= 0.80 with all voices, root >= 0.78 with soprano+bass;
key followed within a bar of a modulation.

    .venv/bin/python -m bench.listening [--json PATH] [--smoke]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.chorale_truth import Chorale, load_chorales
from bench.key_following import MODULATIONS, key_follow
from conductor.harmony_match import best_chord
from conductor.listener import Listener
from conductor.listener_params import Params

GOALS = {"all.root": 0.90, "all.root_quality": 0.80, "sb.root": 0.78, "key_bars": 1.0}
FAMILY = {
    "": "maj",
    "7": "maj",
    "maj7": "maj",
    "m": "min",
    "m7": "min",
    "dim": "dim",
    "m7b5": "dim",
    "dim7": "dim",
    "aug": "aug",
    "sus4": "sus",
}
SMOKE_CHORALES = 2
# title: (key in the results, voices played: 0 soprano, 1 alto, 2 tenor, 3 bass)
CONDITIONS = {
    "all voices": ("all", [0, 1, 2, 3]),
    "sop + bass": ("sb", [0, 3]),
    "sop + alto": ("sa", [0, 1]),
    "soprano": ("s", [0]),
}


def _events(notes: list[tuple[float, float, int]]) -> list[tuple[float, int, int]]:
    """(beat, 0=off/1=on, pitch), note-offs first at the same beat so a repeated pitch re-sounds."""
    ev = [(s, 1, p) for s, _, p in notes] + [(s + d, 0, p) for s, d, p in notes]
    return sorted(ev)


def run_condition(chorale: Chorale, voices: list[int], params: Params) -> dict[str, list[tuple[int, str]]]:
    """Per truth beat: (root, quality) from the listener, the onset matcher and the offline matcher."""
    notes = sorted(n for v in voices for n in chorale.voices[v])
    events = _events(notes)
    listener = Listener(beats_per_bar=chorale.beats_per_bar, params=params)
    out: dict[str, list[tuple[int, str]]] = {"listener": [], "onset": [], "offline": []}
    i = 0
    for t, _, _ in chorale.truth:
        while i < len(events) and events[i][0] <= t + 1e-6:
            beat, on, pitch = events[i]
            if on:
                listener.note_on(pitch, 80, beat)
            else:
                listener.note_off(pitch, beat)
            i += 1
        heard = listener.decide(t)
        out["listener"].append((heard.root, heard.quality) if heard else (-1, ""))
        sounding = [p for s, d, p in notes if s <= t + 1e-6 < s + d]
        w = [0.0] * 12
        for p in sounding:
            w[p % 12] += 1.0
        got = best_chord(w, min(sounding) % 12 if sounding else None, params)
        out["onset"].append(got if got else (-1, ""))
        w = [0.0] * 12
        inside = [(s, d, p) for s, d, p in notes if s < t + 1 - 1e-6 and s + d > t + 1e-6]
        for s, d, p in inside:
            w[p % 12] += min(s + d, t + 1) - max(s, t)
        bass = min(p for _, _, p in inside) % 12 if inside else None
        got = best_chord(w, bass, params)
        out["offline"].append(got if got else (-1, ""))
    return out


def score_chorales(chorales: list[Chorale], voices: list[int], params: Params) -> dict[str, dict[str, float]]:
    """Accuracy per system over the chorales, and how often each changes chord from beat to beat."""
    return _totals([_count(c, voices, params) for c in chorales])


def _count(chorale: Chorale, voices: list[int], params: Params) -> dict[str, list[int]]:
    """Per system: [beats, root hits, root+family hits, exact hits, chord changes]; and the truth's."""
    got = run_condition(chorale, voices, params)
    truth = [(root, quality) for _, root, quality in chorale.truth]
    out: dict[str, list[int]] = {"truth": [len(truth), 0, 0, 0, _changes(truth)]}
    for system, decisions in got.items():
        h = out[system] = [len(truth), 0, 0, 0, _changes(decisions)]
        for (root, quality), (r, q) in zip(truth, decisions, strict=True):
            h[1] += r == root
            h[2] += r == root and FAMILY.get(q) == FAMILY.get(quality, quality)
            h[3] += r == root and q == quality
    return out


def _changes(chords: list[tuple[int, str]]) -> int:
    return sum(a != b for a, b in itertools.pairwise(chords))


def _totals(counts: list[dict[str, list[int]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for system in counts[0]:
        n, root, family, exact, changes = (sum(c[system][i] for c in counts) for i in range(5))
        out[system] = {
            "root": root / n,
            "root_quality": family / n,
            "root_quality_exact": exact / n,
            "changes_per_100": 100.0 * changes / n,
            "beats": n,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--smoke", action="store_true", help=f"{SMOKE_CHORALES} chorales, seconds")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    chorales, notes = load_chorales(SMOKE_CHORALES if args.smoke else None)
    params = Params()
    results: dict[str, Any] = {
        "chorales": [c.name for c in chorales],
        "skipped": [n for n in notes if ": used" not in n],
        "alignment": notes,
        "params": vars_of(params),
    }
    for label, voices in CONDITIONS.values():
        counts = [_count(c, voices, params) for c in chorales]
        results[label] = _totals(counts)
        # the listener's weights were chosen on the even-numbered chorales: the odd ones are held out
        for half, start in (("tuned", 0), ("held_out", 1)):
            if counts[start::2]:
                results[label][half] = _totals(counts[start::2])["listener"]
    results["key"] = {name: key_follow(a, b, ma, mb) for name, a, b, ma, mb in MODULATIONS}
    print(f"{len(chorales)} chorales, {results['all']['listener']['beats']} beats")
    for s in results["skipped"]:
        print(f"  skipped {s}")
    for s in notes:
        if ": used" in s and ", analysis" in s:
            print(f"  aligned {s}")
    print(f"{'condition':<16}{'system':<10}{'root':>7}{'root+q':>8}{'exact q':>9}{'changes':>9}")
    for title, (label, _) in CONDITIONS.items():
        for system in ("listener", "tuned", "held_out", "onset", "offline", "truth"):
            r = results[label].get(system)
            if r is None:
                continue
            if system == "truth":
                print(f"{title:<16}{system:<10}{'':>24}{r['changes_per_100']:>9.1f}")
                continue
            print(
                f"{title:<16}{system:<10}{r['root']:>7.3f}{r['root_quality']:>8.3f}"
                f"{r['root_quality_exact']:>9.3f}{r['changes_per_100']:>9.1f}"
            )
    for name, k in results["key"].items():
        print(
            f"key {name}: first followed after {k['first']:.2f} bars, for good after {k['settled']:.2f};"
            f" new key held {k['held']:.2f} of later beats, old key {k['steady']:.2f} before"
        )
    results["goals"] = {
        "all.root": results["all"]["listener"]["root"] >= GOALS["all.root"],
        "all.root_quality": results["all"]["listener"]["root_quality"] >= GOALS["all.root_quality"],
        "sb.root": results["sb"]["listener"]["root"] >= GOALS["sb.root"],
        "key_bars": results["key"]["C -> Eb"]["settled"] <= GOALS["key_bars"],
    }
    print("goals:", ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in results["goals"].items()))
    results["seconds"] = time.perf_counter() - t0
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


def vars_of(params: Params) -> dict[str, float]:
    return {k: getattr(params, k) for k in params.__dataclass_fields__}


if __name__ == "__main__":
    sys.exit(main())
