"""A written plan played as the player plays it: the substitutions a band hears and goes along with.

A chart says C; the player leans on an E-flat, or holds a C-sharp against it. A band does not keep
playing the E natural of the chart under them: it hears the new chord and plays it until the chart
moves on. This module decides, at each beat onset, whether the player's notes replace the written
chord, from the same evidence the chord follower uses (conductor/listener.py: what sounds at the
onset, plus the decayed recent past):

- something the player sounds now clashes with the written chord (an avoid note of it, as
  protocol/harmony.py classes pitch classes: a chromatic note, or the eleventh over a major third);
- a chord of the listener's templates holds every such note, and explains what the player plays
  better than the written chord does, by ``margin``; fewer than three notes keep the written root
  (a held B-flat over C makes it C7, an E-flat Cm, an F Csus4), a full chord may move it;
- the same chord wins at ``persist`` beat onsets in a row, so a passing or neighbour note on one beat
  (the fourth over a tonic on beat 3 of a tune) never moves the band.

The substitute lasts to the end of the written chord's span, or until the player sounds a note that
clashes with the substitute and fits the chart (a suspension resolving: F over C heard as Csus4 gives
way to the chart's C when the F falls to E); the written chord after it is played as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conductor.harmony_match import TEMPLATES, chord_name, template_scores
from conductor.listener import Listener
from conductor.listener_params import Params
from protocol.harmony import ChordPlan, ChordSpan, PitchRole, pitch_class_roles

__all__ = ["Substitution", "SubstitutionHearing"]

MARGIN = 0.3  # how much better the heard chord must explain the player than the written one
PERSIST = 2  # beat onsets in a row that must hear the same substitute
FULL_CHORD = 3  # sounding pitch classes that may name a chord on another root


@dataclass(frozen=True, slots=True)
class Substitution:
    """The chord heard in place of the written one over ``span`` (the written chord's own beats)."""

    span: ChordSpan
    symbol: str


@dataclass(slots=True)
class SubstitutionHearing:
    """Decides substitutions on a written plan, beat onset by beat onset; see the module docstring."""

    beats_per_bar: int = 4
    margin: float = MARGIN
    persist: int = PERSIST
    params: Params = field(default_factory=Params)
    _challenger: tuple[int, str] | None = None
    _count: int = 0

    def decide(self, listener: Listener, written: ChordPlan, t: float) -> Substitution | None:
        """The substitute for the written chord at beat onset ``t``, or None to play it as written."""
        span = written.chord_span_at(t, self.beats_per_bar)
        heard = None if span is None or span.chord.is_no_chord else self._heard(listener, span, t)
        if heard is None:
            self._challenger, self._count = None, 0
            return None
        if heard == self._challenger:
            self._count += 1
        else:
            self._challenger, self._count = heard, 1
        if self._count < self.persist or span is None:
            return None
        return Substitution(span, chord_name(heard[0], heard[1], written.key))

    def contradicted(self, listener: Listener, played: ChordPlan, chart: ChordPlan, t: float) -> bool:
        """Whether the player now sounds a note that clashes with the substitute being played at ``t``
        and fits the chart's chord there: the substitution is over."""
        now, written = played.chord_at(t, self.beats_per_bar), chart.chord_at(t, self.beats_per_bar)
        if now is None or written is None or now == written:
            return False
        against, fits = pitch_class_roles(now), pitch_class_roles(written)
        return any(against[pc] is PitchRole.AVOID and fits[pc] is not PitchRole.AVOID
                   for pc in listener.sounding_pitch_classes(t))

    def _heard(self, listener: Listener, span: ChordSpan, t: float) -> tuple[int, str] | None:
        roles = pitch_class_roles(span.chord)
        clash = {pc for pc in listener.sounding_pitch_classes(t) if roles[pc] is PitchRole.AVOID}
        if not clash:
            return None
        weights, bass = listener.chord_weights(t)
        scores = template_scores(weights, None if bass is None else bass % 12, self.params)
        if not scores:
            return None
        # a note or two say what they add to the chord, not which chord it is: a held B-flat over C
        # is C7, not B-flat major, and E-flat with G is C minor; a full chord may name a new root
        same_root = len(listener.sounding_pitch_classes(t)) < FULL_CHORD
        candidates = [rq for rq in scores if clash <= {(rq[0] + i) % 12 for i in TEMPLATES[rq[1]]}
                      and (rq[0] == span.chord.root or not same_root)]
        if not candidates:
            return None
        best = max(candidates, key=lambda rq: (scores[rq], rq[0] == span.chord.root))
        if scores[best] - self._written_score(span, weights, bass) < self.margin:
            return None
        return best

    def _written_score(self, span: ChordSpan, weights: list[float], bass: int | None) -> float:
        """How well the written chord explains the notes, on the templates' own scale: its template
        when one has its tones (a ninth or a sixth is scored as the chord under it), else the best
        template that its tones contain."""
        chord = span.chord
        tones = set(chord.tones)
        scores = template_scores(weights, None if bass is None else bass % 12, self.params)
        fits = [rq for rq in scores if rq[0] == chord.root
                and {(rq[0] + i) % 12 for i in TEMPLATES[rq[1]]} <= tones]
        if not fits:
            return -float("inf")
        return max(scores[rq] for rq in fits)
