"""The listening bench's ground truth: Bach chorales with music21's analyses of their chords.

Ground truth: music21's Roman-numeral analyses (`bach/choraleAnalyses/riemenschneider*.rntxt`),
each paired with the chorale of the same BWV number from music21's corpus. A pair is used only where
the analysis lines up with the score (same number of bars, and the analysed chord's tones cover most
of what sounds at its beats); the others are listed as skipped with the reason.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Chorale:
    name: str
    voices: list[list[tuple[float, float, int]]]  # per part (S A T B): (start, duration, pitch)
    truth: list[tuple[float, int, str]]  # per beat onset: (beat, root pc, template quality or "other")
    beats_per_bar: int


def _quality(rn: Any) -> str:
    if rn.isDominantSeventh():
        return "7"
    if rn.isDiminishedSeventh():
        return "dim7"
    if rn.isHalfDiminishedSeventh():
        return "m7b5"
    if rn.isSeventh():
        return "maj7" if rn.isMajorTriad() or rn.semitonesFromChordStep(3) == 4 else "m7"
    for test, q in (
        ("isMajorTriad", ""),
        ("isMinorTriad", "m"),
        ("isDiminishedTriad", "dim"),
        ("isAugmentedTriad", "aug"),
    ):
        if getattr(rn, test)():
            return q
    # a triad with an added seventh in inversion spelling etc: fall back on its third and fifth
    third, fifth = rn.semitonesFromChordStep(3), rn.semitonesFromChordStep(5)
    return {(4, 7): "", (3, 7): "m", (3, 6): "dim", (4, 8): "aug"}.get((third, fifth), "other")


def _load_one(index: int) -> tuple[Chorale | None, str]:
    from music21 import converter, corpus

    path = corpus.getWork(f"bach/choraleAnalyses/riemenschneider{index:03d}.rntxt")
    header = Path(str(path)).read_text(encoding="utf-8", errors="replace")
    bwv = next(line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("BWV:"))
    work = bwv.replace("(2).12", ".12-2").rstrip("s")
    name = f"riemenschneider{index:03d} (BWV {bwv})"
    try:
        found = corpus.getWork(f"bach/bwv{work}")
        found = next(p for p in found if str(p).endswith(".mxl")) if isinstance(found, list) else found
        score = corpus.parse(found)
    except Exception as exc:
        return None, f"{name}: no score bwv{work} in the corpus ({exc})"
    analysis = converter.parse(str(path), format="romanText")
    parts = list(score.parts)
    if len(parts) != 4:
        return None, f"{name}: score has {len(parts)} parts, not SATB"
    s_measures = {m.number: m for m in parts[0].getElementsByClass("Measure")}
    a_measures = {m.number: m for m in analysis.parts[0].getElementsByClass("Measure")}
    if max(s_measures) != max(a_measures):
        return None, f"{name}: analysis has {max(a_measures)} bars, score {max(s_measures)}"
    ts = score.recurse().getElementsByClass("TimeSignature").first()
    bpb = round(ts.barDuration.quarterLength) if ts is not None else 4
    voices = []
    for part in parts:
        notes = []
        for n in part.stripTies().flatten().notes:
            for p in n.pitches:
                notes.append((float(n.offset), float(n.quarterLength), int(p.midi)))
        voices.append(sorted(notes))
    rns = list(analysis.flatten().getElementsByClass("RomanNumeral"))
    # Map analysis offsets onto the score's through bar 1 (pickup bars are padded differently); where
    # that does not line up, try a few beats either way and a transposition (some corpus scores are
    # not in the key the analysis was written in), keeping the best fit and saying so.
    bar1 = float(s_measures[1].offset) - float(a_measures[1].offset)
    best = max(
        (
            (*_align(rns, voices, bar1 + dt, dp), dt, dp)
            for dt in (0, -1, 1, -2, 2, -3, 3)
            for dp in range(12)
        ),
        key=lambda x: (round(x[1], 3), -abs(x[2]), -min(x[3], 12 - x[3])),
    )
    truth, agreement, dt, dp = best
    how = ""
    if dt:
        how += f", analysis moved {dt:+d} beats"
    if dp:
        how += f", analysis transposed {dp:+d} semitones"
    if agreement < 0.8:
        return (
            None,
            f"{name}: analysis does not line up with the score "
            f"({agreement:.2f} of sounding notes are chord tones at best)",
        )
    return Chorale(
        name, voices, truth, bpb
    ), f"{name}: used ({agreement:.2f} of sounding notes are chord tones{how})"


def _align(
    rns: list[Any], voices: list[list[tuple[float, float, int]]], shift: float, transpose: int
) -> tuple[list[tuple[float, int, str]], float]:
    """Per-beat truth under one alignment, and the share of sounding notes that are its chord tones."""
    spans = [(float(r.offset) + shift, float(r.quarterLength), r) for r in rns]
    end = max(s + d for v in voices for s, d, _ in v)
    truth: list[tuple[float, int, str]] = []
    covered = total = 0
    t = 0.0
    while t < end:
        here = [r for s, d, r in spans if s <= t + 1e-6 < s + d]
        sounding = [p for v in voices for s, d, p in v if s <= t + 1e-6 < s + d]
        if here and sounding:
            rn = here[-1]
            tones = {(p.pitchClass + transpose) % 12 for p in rn.pitches}
            covered += sum(p % 12 in tones for p in sounding)
            total += len(sounding)
            truth.append((t, (rn.root().pitchClass + transpose) % 12, _quality(rn)))
        t += 1.0
    return truth, covered / total if total else 0.0


def load_chorales(limit: int | None = None) -> tuple[list[Chorale], list[str]]:
    """Parse (or read the cached parse of) the analysed chorales; music21 parsing takes a while."""
    import music21

    cache = Path(tempfile.gettempdir()) / f"barcelona-listening-{music21.__version__}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        chorales = [
            Chorale(
                c["name"],
                [[tuple(n) for n in v] for v in c["voices"]],
                [tuple(x) for x in c["truth"]],
                c["beats_per_bar"],
            )
            for c in data["chorales"]
        ]
        notes = data["notes"]
    else:
        chorales, notes = [], []
        for i in range(1, 21):
            c, note = _load_one(i)
            notes.append(note)
            if c is not None:
                chorales.append(c)
            if limit and len(chorales) >= limit:  # a smoke run parses only what it uses, caches nothing
                return chorales, notes
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"chorales": [asdict(c) for c in chorales], "notes": notes}))
        tmp.replace(cache)
    return (chorales[:limit] if limit else chorales), notes
