"""Chord and key following: what harmony is the player implying, decided at each beat onset.

Pure logic, no I/O and no clock: the caller feeds notes in beats as it hears them and asks for a
decision at each beat onset. Decisions are causal: a decision at beat `t` uses only the notes that
started at or before `t` (a note still sounding counts up to `t`, its end is not known yet).

Chords: template matching of a duration- and metre-weighted pitch-class vector (Pardo & Birmingham):
a template scores the weight of the notes it explains, minus the weight it does not explain, minus
what it names that nobody plays. The vector mixes the notes sounding at the onset (the strongest
evidence: what sounds now is the chord now) with the recent past, decayed, so a melody alone still
outlines a chord. Two notes (a melody and a bass) fit several chords, so priors pick among them
(conductor/chord_prior.py): the lowest sounding note votes by its place in the chord (the root most,
the third next: first inversions are common, six-fours rare), and the followed key's chords get a
prior by function (I and V most, iii least).

Hysteresis: a different chord replaces the current one only when it beats the current chord's own
score by a margin, or stays the best for two decisions in a row; so one passing note does not flip
the band's harmony, and a real change costs at most one beat.

Key: Krumhansl–Schmuckler profiles correlated with an exponentially decaying pitch-class histogram
(half-life of a few beats, so a modulation is followed within a bar), with its own margin against
flicker.

The templates and profiles, and the scores of one vector against them, are
conductor/harmony_match.py's; this module adds what a vector alone cannot: time, the priors and the
hysteresis. Its tuning is conductor/listener_params.py's `Params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from conductor.chord_prior import bass_prior, bass_weight, key_prior
from conductor.harmony_match import TEMPLATES, chord_name, key_correlations, key_name, template_scores
from conductor.listener_params import Params
from protocol.harmony import ChordPlan

_MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})
_MINOR_SCALE = frozenset({0, 2, 3, 5, 7, 8, 10, 11})  # natural minor with the raised leading tone


@dataclass(frozen=True, slots=True)
class Heard:
    """One decision: the chord (symbol protocol.harmony parses) and key (`Eb`, `Cm`) followed now."""

    chord: str
    root: int
    quality: str
    key: str


@dataclass(slots=True)
class _Note:
    start: float
    end: float | None  # None while it sounds and its end is unknown
    pitch: int
    velocity: int


def _relatives(a: tuple[int, bool], b: tuple[int, bool]) -> bool:
    """A major key and its relative minor: one scale, told apart by the profile alone."""
    (ta, ma), (tb, mb) = a, b
    return ma != mb and (ta + (3 if ma else 9)) % 12 == tb


@dataclass
class Listener:
    """Follows chord and key from a player's notes; see the module docstring for how."""

    beats_per_bar: int = 4
    key: str = "C"  # the key assumed until the player says otherwise
    params: Params = field(default_factory=Params)
    _notes: list[_Note] = field(default_factory=list)
    _chord: tuple[int, str] | None = None
    _challenger: tuple[int, str] | None = None
    _challenger_n: int = 0
    _key: tuple[int, bool] = (0, False)
    _key_challenger: tuple[int, bool] | None = None
    _key_challenger_n: int = 0
    _key_since: float = -math.inf
    _last_t: float = -math.inf

    def __post_init__(self) -> None:
        plan = ChordPlan.parse("C", key=self.key)  # validates the key's spelling
        self._key = (plan.key_tonic, plan.key_is_minor)

    # -- input ------------------------------------------------------------------------------------
    def note(self, start: float, duration: float, pitch: int, velocity: int = 80) -> None:
        """A whole note (its end known): from a file, or a live note reported at its note-off."""
        if duration <= 0 or not 0 <= pitch <= 127:
            return
        for n in self._notes:  # the same note reported first at its onset: close it
            if n.end is None and n.pitch == pitch and abs(n.start - start) < 1e-6:
                n.end = start + duration
                return
        self._notes.append(_Note(start, start + duration, pitch, velocity))

    def note_on(self, pitch: int, velocity: int, beat: float) -> None:
        """A note at its onset, its length unknown: it sounds until `note_off`."""
        if not 0 <= pitch <= 127:
            return
        if velocity <= 0:
            self.note_off(pitch, beat)
            return
        self._notes.append(_Note(beat, None, pitch, velocity))

    def note_off(self, pitch: int, beat: float) -> None:
        for n in reversed(self._notes):
            if n.end is None and n.pitch == pitch:
                n.end = max(beat, n.start)
                return

    # -- evidence ---------------------------------------------------------------------------------
    def _metre(self, start: float) -> float:
        return 1.0 if abs(start - round(start)) < 1e-3 else self.params.offbeat

    def chord_weights(self, t: float) -> tuple[list[float], int | None]:
        """The pitch-class vector at beat `t` (sounding now + decayed past) and the sounding bass (MIDI)."""
        p = self.params
        w = [0.0] * 12
        sounding = self._sounding(t)
        for n in sounding:
            w[n.pitch % 12] += p.sounding * self._metre(n.start) * _vel(n.velocity)
        lo = t - p.window
        for n in self._notes:
            if n.start > t + 1e-9:
                continue
            end = t if n.end is None or n.end > t else n.end
            a, b = max(n.start, lo), end
            if b <= a:
                continue
            # decay integrated over the part of the note inside the window (closed form)
            k = math.log(2) / p.half_life
            decayed = (math.exp(-k * (t - b)) - math.exp(-k * (t - a))) / k
            w[n.pitch % 12] += p.memory * decayed * self._metre(n.start) * _vel(n.velocity)
        bass = min(n.pitch for n in sounding) if sounding else None
        return w, bass

    def sounding_pitch_classes(self, t: float) -> set[int]:
        """What the player sounds at beat `t`, as pitch classes."""
        return {n.pitch % 12 for n in self._sounding(t)}

    def _sounding(self, t: float) -> list[_Note]:
        return [n for n in self._notes if n.start <= t + 1e-9 and (n.end is None or n.end > t + 1e-9)]

    def key_histogram(
        self, t: float, half_life: float | None = None, since: float = -math.inf
    ) -> list[float]:
        """Exponentially decaying, duration-weighted pitch-class histogram of what was heard since `since`."""
        k = math.log(2) / (half_life or self.params.key_half_life)
        h = [0.0] * 12
        for n in self._notes:
            if n.start > t + 1e-9 or (n.end is not None and n.end <= since):
                continue
            b = t if n.end is None or n.end > t else n.end
            a = n.start
            if b <= a:
                b = a + 1e-3
            h[n.pitch % 12] += (math.exp(-k * (t - b)) - math.exp(-k * (t - a))) / k * self._metre(a)
        return h

    # -- decisions --------------------------------------------------------------------------------
    def decide(self, t: float) -> Heard | None:
        """The chord and key at beat onset `t`; None until the player has played anything."""
        self._forget(t)
        self._decide_key(t)
        tonic, minor = self._key
        key = key_name(tonic, minor)
        weights, bass = self.chord_weights(t)
        p = self.params
        scores = template_scores(weights, None, p)
        if scores:
            # a line alone is its own bass: the listener cannot tell a melody's note from a bass's
            low = bass_weight(bass, p.bass_low, p.bass_high) if len(self._sounding(t)) > 1 else 1.0
            votes = (p.bass_root * low, p.bass_third * low, p.bass_fifth * low, p.bass_seventh * low)
            for (root, q), s in scores.items():
                scores[(root, q)] = (
                    s
                    + bass_prior(root, TEMPLATES[q], q, None if bass is None else bass % 12, votes)
                    + key_prior(root, q, tonic, minor, p.diatonic, p.function)
                )
            best = max(scores, key=lambda rq: (scores[rq], weights[rq[0]]))
            margin = self.params.margin if self._new_pitch_classes(t) > 1 else self.params.margin_one
            self._chord = self._hysteresis(self._chord, best, scores, margin, self.params.persist)
            self._last_t = t
        if self._chord is None:
            return None
        root, quality = self._chord
        return Heard(chord_name(root, quality, key), root, quality, key)

    def _new_pitch_classes(self, t: float) -> int:
        """Pitch classes outside the current chord among the notes that began since the last decision."""
        tones = (
            set() if self._chord is None else {(self._chord[0] + i) % 12 for i in TEMPLATES[self._chord[1]]}
        )
        return len(
            {
                n.pitch % 12
                for n in self._notes
                if self._last_t < n.start <= t + 1e-9 and n.pitch % 12 not in tones
            }
        )

    def _hysteresis(
        self,
        current: tuple[int, str] | None,
        best: tuple[int, str],
        scores: dict[tuple[int, str], float],
        margin: float,
        persist: int,
    ) -> tuple[int, str]:
        if current is None or best == current:
            self._challenger, self._challenger_n = None, 0
            return best
        if scores[best] - scores.get(current, -math.inf) > margin:
            self._challenger, self._challenger_n = None, 0
            return best
        if best == self._challenger:
            self._challenger_n += 1
        else:
            self._challenger, self._challenger_n = best, 1
        if self._challenger_n >= persist:
            self._challenger, self._challenger_n = None, 0
            return best
        return current

    def _decide_key(self, t: float) -> None:
        recent = self.key_histogram(t, self.params.key_scale_half_life)
        total = sum(recent)
        if total <= 0:
            return
        # The profile match remembers back to just before the last modulation only: the old key's
        # notes would otherwise hold the new key back (or pull it to the new key's relative minor).
        since = self.key_histogram(t, since=self._key_since - self.params.key_lookback)
        corr = key_correlations(since)
        heard = sum(since) or 1.0
        outside: dict[tuple[int, bool], float] = {}
        for (tonic, minor), c in corr.items():
            scale = _MINOR_SCALE if minor else _MAJOR_SCALE
            outside[(tonic, minor)] = (
                sum(recent[(tonic + i) % 12] for i in range(12) if i not in scale) / total
            )
            # a minor key is told from its relative major by its raised seventh: without one heard,
            # the major key wins what the profiles leave in doubt
            no_leading_tone = minor and since[(tonic + 11) % 12] / heard < 0.02
            corr[(tonic, minor)] = (
                c - self.params.key_outside * outside[(tonic, minor)] - minor * self.params.key_minor
                - no_leading_tone * self.params.key_no_leading_tone
            )
        best = max(corr, key=lambda k: corr[k])
        fits = outside[self._key] <= self.params.key_modulation and not _relatives(best, self._key)
        if best == self._key or (fits and corr[best] - corr[self._key] <= self.params.key_switch_margin):
            # A key whose scale still holds every recent note stays: a melody that dwells on a few
            # notes matches a neighbouring key's profile as well for a while, and a band that
            # followed each such match would wander (E major heard as B, A, F#m in turn).
            self._key_challenger, self._key_challenger_n = None, 0
            return
        if best == self._key_challenger:
            self._key_challenger_n += 1
        else:
            self._key_challenger, self._key_challenger_n = best, 1
        if (
            corr[best] - corr[self._key] > self.params.key_margin
            or self._key_challenger_n >= self.params.key_persist
        ):
            if outside[self._key] > self.params.key_modulation:  # the old key's scale no longer fits
                self._key_since = t
            self._key, self._key_challenger, self._key_challenger_n = best, None, 0

    def _forget(self, t: float) -> None:
        """Drop notes too old to matter (four key half-lives: 1/16 of their weight), to stay small."""
        horizon = t - max(self.params.window, 4 * self.params.key_half_life)
        stuck = t - 64.0  # a note-on whose note-off never came stops counting after 16 bars
        self._notes = [
            n
            for n in self._notes
            if (n.end is not None and n.end > horizon) or (n.end is None and n.start > stuck)
        ]


def _vel(velocity: int) -> float:
    """Louder notes count a little more; a ghost note counts half."""
    return 0.5 + 0.5 * min(127, max(1, velocity)) / 100.0
