"""A pitch-class vector matched against chord templates (Pardo & Birmingham) and key profiles
(Krumhansl–Schmuckler), and chords and keys spelled as ChordPlan reads them.

Pure functions of one vector, with no memory: the listener (conductor/listener.py) adds time, the
priors and hysteresis; the substitution hearing (conductor/substitution.py) and the bench's plain
baseline (bench/listening.py) score with the same templates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from conductor.listener_params import Params

# Templates: symbol suffix (as protocol.harmony parses it) -> intervals above the root.
# fmt: off
TEMPLATES: dict[str, tuple[int, ...]] = {
    "": (0, 4, 7), "m": (0, 3, 7), "7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11), "m7": (0, 3, 7, 10),
    "dim": (0, 3, 6), "m7b5": (0, 3, 6, 10), "dim7": (0, 3, 6, 9), "sus4": (0, 5, 7), "aug": (0, 4, 8),
}
# A small prior per quality: where two templates explain the notes equally, the commoner one wins
# (a bare third and fifth are a triad, not a seventh chord missing its seventh).
PRIOR: dict[str, float] = {
    "": 0.06, "m": 0.05, "7": 0.03, "maj7": 0.0, "m7": 0.0, "dim": 0.02, "m7b5": 0.0, "dim7": 0.0,
    "sus4": -0.03, "aug": -0.05,
}
# Krumhansl–Kessler probe-tone profiles (Krumhansl 1990), tonic first.
KS_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
KS_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
# fmt: on
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
SHARP_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_SHARP_KEYS = {7, 2, 9, 4, 11, 6}  # G D A E B F# major tonics: their chords are spelled with sharps
DEFAULT_PARAMS = Params()


def key_name(tonic: int, minor: bool) -> str:
    """A key as ChordPlan.key spells it: `Eb`, `F#m`; flats except where a sharp key is usual."""
    sharp = (tonic if not minor else (tonic + 3) % 12) in _SHARP_KEYS
    return (SHARP_NAMES if sharp else FLAT_NAMES)[tonic] + ("m" if minor else "")


def chord_name(root: int, quality: str, key: str = "C") -> str:
    """A chord symbol spelled for the key it sounds in (`D#` in E major, `Eb` in B-flat)."""
    names = SHARP_NAMES if "#" in key or key.rstrip("m") in ("G", "D", "A", "E", "B") else FLAT_NAMES
    return names[root] + quality


def template_scores(
    weights: Sequence[float], bass: int | None, params: Params = DEFAULT_PARAMS
) -> dict[tuple[int, str], float]:
    """Pardo–Birmingham scores of every (root, quality) for a pitch-class weight vector.

    Weights are normalised to sum 1, so the margin and priors mean the same with one note or ten.
    """
    total = sum(weights)
    if total <= 0:
        return {}
    w = [x / total for x in weights]
    peak = max(w)
    out: dict[tuple[int, str], float] = {}
    for quality, intervals in TEMPLATES.items():
        for root in range(12):
            pcs = [(root + i) % 12 for i in intervals]
            explained = sum(w[pc] for pc in pcs)
            # a tone counts as missing in proportion to how far it is below the loudest pitch class
            missing = sum(max(0.0, 1.0 - w[pc] / (0.25 * peak)) for pc in pcs) / len(pcs)
            score = explained - (1.0 - explained) - params.missing * missing + PRIOR[quality]
            if bass is not None:
                score += params.bass_root if bass == root else params.bass_tone if bass in pcs else 0.0
            out[(root, quality)] = score
    return out


def best_chord(
    weights: Sequence[float], bass: int | None = None, params: Params = DEFAULT_PARAMS
) -> tuple[int, str] | None:
    """The plain matcher: best template for one vector, no memory, no key, no hysteresis."""
    scores = template_scores(weights, bass, params)
    if not scores:
        return None
    return max(scores, key=lambda rq: (scores[rq], weights[rq[0]]))


def key_correlations(hist: Sequence[float]) -> dict[tuple[int, bool], float]:
    """Pearson correlation of a pitch-class histogram with all 24 rotated K–S profiles."""
    n = 12
    mh = sum(hist) / n
    dh = [h - mh for h in hist]
    sh = math.sqrt(sum(d * d for d in dh))
    out: dict[tuple[int, bool], float] = {}
    for minor, prof in ((False, KS_MAJOR), (True, KS_MINOR)):
        mp = sum(prof) / n
        dp = [p - mp for p in prof]
        sp = math.sqrt(sum(d * d for d in dp))
        for tonic in range(12):
            num = sum(dh[(tonic + i) % 12] * dp[i] for i in range(n))
            out[(tonic, minor)] = num / (sh * sp) if sh > 0 else 0.0
    return out


def pitch_classes(pitches: Iterable[int]) -> list[float]:
    """A plain count vector, for callers (the bench's baseline) that weigh notes themselves."""
    w = [0.0] * 12
    for p in pitches:
        w[p % 12] += 1.0
    return w
