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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from conductor.chord_prior import bass_prior, bass_weight, key_prior
from protocol.harmony import ChordPlan

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

_MAJOR_SCALE = frozenset({0, 2, 4, 5, 7, 9, 11})
_MINOR_SCALE = frozenset({0, 2, 3, 5, 7, 8, 10, 11})  # natural minor with the raised leading tone


@dataclass(frozen=True, slots=True)
class Params:
    """The listener's tuning; defaults were chosen on bench/listening.py (Bach chorales)."""

    sounding: float = 1.0  # weight of a note sounding at the onset
    memory: float = 0.1  # weight of the recent past, per beat of sounding, before decay
    half_life: float = 1.0  # beats: how fast the past fades for chords
    window: float = 4.0  # beats of past considered for chords
    offbeat: float = 0.6  # metre: a note starting off the beat counts this much
    missing: float = 0.8  # penalty per template tone nobody plays
    bass_root: float = 0.3  # bonus when the lowest sounding note is the root
    bass_tone: float = 0.1  # the plain matcher's smaller bonus when it is another chord tone
    # the listener's bonus by the lowest note's place in the chord (chord_prior.bass_prior)
    bass_third: float = 0.2  # a first inversion is common
    bass_fifth: float = 0.0  # a six-four is rare
    bass_seventh: float = 0.1
    diatonic: float = 0.25  # prior for the commonest chords of the followed key
    bass_low: int = 55  # MIDI: a lowest note at or below G3 votes in full as a bass...
    bass_high: int = 67  # ...fading to no vote at G4: an alto or a melody alone is no bass
    function: float = 0.5  # how much rarer functions (iii, vii°) get less of it (chord_prior.key_prior)
    margin: float = 0.15  # a new chord must beat the current one by this much to win at once
    margin_one: float = 0.8  # ...and by this much when a single new pitch class is all that calls for it
    persist: int = 2  # ...or stay best this many decisions in a row
    key_half_life: float = 16.0  # beats: the profile match's memory
    key_scale_half_life: float = 2.0  # beats: the memory of notes outside a key's scale
    key_outside: float = 2.0  # penalty for the share of recent weight outside a key's scale
    key_margin: float = 0.04  # score a new key must gain over the current one
    key_persist: int = 2
    key_minor: float = 0.05  # K-S favours minor keys on short melodies: a major key wins a near tie
    key_modulation: float = 0.1  # share of recent notes outside the old key's scale that means a new one
    key_lookback: float = 2.0  # beats before a modulation the new key's memory starts
    key_switch_margin: float = 0.3  # score a key must gain over one whose scale still fits
    key_no_leading_tone: float = 0.1  # penalty for a minor key whose raised seventh is not heard


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


def key_name(tonic: int, minor: bool) -> str:
    """A key as ChordPlan.key spells it: `Eb`, `F#m`; flats except where a sharp key is usual."""
    sharp = (tonic if not minor else (tonic + 3) % 12) in _SHARP_KEYS
    return (SHARP_NAMES if sharp else FLAT_NAMES)[tonic] + ("m" if minor else "")


def chord_name(root: int, quality: str, key: str = "C") -> str:
    """A chord symbol spelled for the key it sounds in (`D#` in E major, `Eb` in B-flat)."""
    names = SHARP_NAMES if "#" in key or key.rstrip("m") in ("G", "D", "A", "E", "B") else FLAT_NAMES
    return names[root] + quality


def template_scores(
    weights: Sequence[float], bass: int | None, params: Params = Params()
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
    weights: Sequence[float], bass: int | None = None, params: Params = Params()
) -> tuple[int, str] | None:
    """The plain matcher: best template for one vector, no memory, no key, no hysteresis."""
    scores = template_scores(weights, bass, params)
    if not scores:
        return None
    return max(scores, key=lambda rq: (scores[rq], weights[rq[0]]))


def _relatives(a: tuple[int, bool], b: tuple[int, bool]) -> bool:
    """A major key and its relative minor: one scale, told apart by the profile alone."""
    (ta, ma), (tb, mb) = a, b
    return ma != mb and (ta + (3 if ma else 9)) % 12 == tb


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


def pitch_classes(pitches: Iterable[int]) -> list[float]:
    """A plain count vector, for callers (the bench's baseline) that weigh notes themselves."""
    w = [0.0] * 12
    for p in pitches:
        w[p % 12] += 1.0
    return w
