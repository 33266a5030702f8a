"""What a bar of the player's notes reads as: the roles it plays, from register, polyphony and density.

Pure logic, no I/O and no clock, like the chord listener: the caller passes the player's notes in
beats as heard so far (a note still held has no end yet) and the beats of the bar to judge. A
reading uses only what sounded before the end it is given (a note still held counts up to there).

What a bar of the player's notes reads as (`bar_roles`), from register, polyphony and density, as
the Reflexive Looper tells bass, chords and melody apart:

- **drums**: notes on the GM drum channel (MIDI channel 10);
- **bass**: one line low down: a single line whose median pitch is at or below E3, or, under other
  notes, a lowest voice at or below B2 that stands apart from what sounds above it;
- **comp**: chords, three or more notes sounding at once, in the middle register;
- **melody**: one line above the bass register (or the top line over chords, above them).

A bar counts only if the part is really played there (two onsets, or notes sounding half the bar),
so a pickup note or a stray touch takes no part. Several roles at once are normal: a pianist's left
hand plays the bass while the right comps. Part-way through a bar, `early_roles` reads the bar so
far on more evidence than a whole bar needs, and `traces` finds any sign of a part at all; the
recognizer (conductor/role_recognizer.py) decides from these with hysteresis.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol.form import DRUM_CHANNEL
from protocol.instruments import Role

# Register limits (MIDI): a bass line lives in 28-50 on a four-string bass, at most G3; a piano's
# left hand comps from about C3 (48) up, so under other notes only a voice below that is a bass.
LINE_BASS_TOP = 52  # a single line with its median at or below E3 is a bass line
UNDER_BASS_TOP = 47  # a lowest voice under other notes must lie at or below B2 (its median) ...
LOW_VOICE_TOP = 50  # ... each of its notes at most D3 (a chord's root above is the chord's)
BASS_GAP = 5  # ... and a fourth or more below the next note up at its onset
TUNE_GAP = 7  # a tune's note struck with a chord stands a fifth or more above it
COMP_REGISTER = (43, 84)  # where comping chords sit (median of the chord tones)
MELODY_LOW = 53  # a line above the bass register
MELODY_TOP_LOW = 60  # a tune over chords: single notes above them, from middle C up
CHORD_NOTES = 3  # notes sounding at once that make a chord
EARLY = 0.05  # beats: a note struck this much before a bar line belongs to the bar after it
ONSET_TOL = 0.1  # beats: notes struck this close together are one chord (a player's spread)
LEGATO = 0.15  # beats: a note overlapping the next by less than this is one line, not two voices
LINE_SHARE = 0.75  # of onsets with one note sounding, for the bar to be one line
MIN_ONSETS = 2  # onsets in a bar for a part to be played there ...
MIN_COVER = 0.5  # ... or the share of the bar it sounds
MAX_HELD_BARS = 2  # a note-on whose note-off never came (a lost packet) stops counting after this
EARLY_ONSETS = 3  # onsets of a part that take it before its bar has ended (`early_roles`)


@dataclass(slots=True)
class PlayedNote:
    """One of the player's notes in beats; `end` is None while it is held."""

    start: float
    end: float | None
    pitch: int
    velocity: int
    channel: int


def heard_end(n: PlayedNote, now: float, held_max: float) -> float:
    """Where a note ends as heard at `now`: a note still held sounds up to now, and at most
    `held_max` beats from its start (its note-off may have been lost)."""
    return min(now, n.start + held_max) if n.end is None else n.end


def _cover(spans: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """How much of [start, end) the spans sound, overlaps counted once."""
    total, reach = 0.0, start
    for s, e in sorted((max(s, start), min(e, end)) for s, e in spans):
        if e > reach:
            total += e - max(s, reach)
            reach = e
    return total


def _active(spans: list[tuple[float, float]], onsets: int, start: float, end: float) -> bool:
    return onsets >= MIN_ONSETS or _cover(spans, start, end) >= MIN_COVER * (end - start)


Span = tuple[PlayedNote, float, float]  # a note with its start and (causal) end


@dataclass(frozen=True, slots=True)
class _Onset:
    """Notes struck together (within ONSET_TOL), and what still rings from before them."""

    time: float
    struck: list[Span]
    ringing: list[int]  # pitches
    bass: int = 0  # bass notes (taken out of `struck` and `ringing`) sounding with these

    @property
    def pitches(self) -> list[int]:
        return sorted(n.pitch for n, _, _ in self.struck)


def _onsets(pitched: list[Span]) -> list[_Onset]:
    groups: list[list[Span]] = []
    for item in sorted(pitched, key=lambda x: x[1]):
        if groups and item[1] - groups[-1][0][1] <= ONSET_TOL:
            groups[-1].append(item)
        else:
            groups.append([item])
    out = []
    for g in groups:
        t = g[0][1]
        ringing = [n.pitch for n, s, e in pitched if s < t - ONSET_TOL / 2 and e > t + LEGATO and
                   not any(n is m for m, _, _ in g)]
        out.append(_Onset(t, g, ringing))
    return out


def _is_line(onsets: list[_Onset]) -> bool:
    """One voice: nearly every onset strikes one note over at most one still ringing (legato), and
    no two notes struck together an octave or more apart (a left hand under a right)."""
    single = sum(1 for o in onsets if len(o.struck) == 1 and len(o.ringing) <= 1)
    apart = any(o.pitches[-1] - o.pitches[0] >= 12 for o in onsets)
    return single >= LINE_SHARE * len(onsets) and not apart


def bar_parts(notes: Sequence[PlayedNote], start: float, end: float) -> dict[Role, list[Span]]:
    """The roles the player's notes play in the beats [start, end), each with the notes that play
    it (a drum's hits, the bass's notes, the chords' tones, the tune's notes); causal at `end`."""
    held_max = MAX_HELD_BARS * (end - start)
    spans = [(n, n.start, heard_end(n, end, held_max)) for n in notes]
    # a note struck a moment before a bar line is the next bar's (a player ahead of the beat)
    spans = [(n, s, e) for n, s, e in spans if s < end - EARLY and e > start]
    parts: dict[Role, list[Span]] = {}

    def active(part: list[Span]) -> bool:
        onsets = sum(1 for _, s, _ in part if s >= start - EARLY)
        return _active([(s, e) for _, s, e in part], onsets, start, end)

    drums = [x for x in spans if x[0].channel == DRUM_CHANNEL]
    if active(drums):
        parts["drums"] = drums
    pitched = [x for x in spans if x[0].channel != DRUM_CHANNEL]
    if not pitched:
        return parts
    onsets = _onsets(pitched)
    if _is_line(onsets):
        if active(pitched):
            median = statistics.median(n.pitch for n, _, _ in pitched)
            parts["bass" if median <= LINE_BASS_TOP else "melody"] = pitched
        return parts
    # more than one voice: a bass under the rest, chords above it, a line on top
    low: list[Span] = []
    for o in onsets:
        lowest = min(o.struck, key=lambda x: x[0].pitch)
        p = lowest[0].pitch
        above = [q for q in o.pitches[1:] + o.ringing if q >= p]
        if p <= LOW_VOICE_TOP and (not above or min(above) - p >= BASS_GAP):
            low.append(lowest)
    if low and active(low) and statistics.median(n.pitch for n, _, _ in low) <= UNDER_BASS_TOP:
        parts["bass"] = low
        bass = {id(n) for n, _, _ in low}
        pitched = [x for x in pitched if id(x[0]) not in bass]
        # a bass note under two struck together makes a chord: a pianist's root and shell voicing
        rest = (_Onset(o.time, [x for x in o.struck if id(x[0]) not in bass],
                       [q for q in o.ringing if q > UNDER_BASS_TOP],
                       len(o.struck) - sum(1 for x in o.struck if id(x[0]) not in bass)
                       + sum(1 for q in o.ringing if q <= UNDER_BASS_TOP))
                for o in onsets)
        onsets = [o for o in rest if o.struck]
    chords = [o for o in onsets
              if len(o.struck) >= 2 and len(o.struck) + len(o.ringing) + min(1, o.bass) >= CHORD_NOTES]
    chord_pitches = [p for o in chords for p in o.pitches + o.ringing]
    if chords and COMP_REGISTER[0] <= statistics.median(chord_pitches) <= COMP_REGISTER[1]:
        parts["comp"] = [x for o in chords for x in o.struck]
        # a tune over the chords: notes struck alone above all that sounds, or a fourth and more
        # above the chord they are struck with (a right hand over a left)
        tops: list[Span] = []
        singles = 0
        for o in onsets:
            top = max(o.struck, key=lambda x: x[0].pitch)
            under = [q for q in o.pitches[:-1] + o.ringing]
            if top[0].pitch >= max(under, default=-1) + (TUNE_GAP if len(o.struck) > 1 else 1):
                tops.append(top)
                singles += len(o.struck) == 1
        median = statistics.median(chord_pitches)
        tune = [x for x in tops if x[1] >= start - EARLY and x[0].pitch > median]
        high = bool(tune) and statistics.median(x[0].pitch for x in tune) >= MELODY_TOP_LOW
        if singles and len(tune) >= MIN_ONSETS and high:
            parts["melody"] = tune
        return parts
    tops = [max(o.struck, key=lambda x: x[0].pitch) for o in onsets]
    if tops and active(tops) and statistics.median(n.pitch for n, _, _ in tops) >= MELODY_LOW:
        parts["melody"] = tops
    return parts


def bar_roles(notes: Sequence[PlayedNote], start: float, end: float) -> frozenset[Role]:
    """The roles the player's notes play in the beats [start, end) (a bar); causal at `end`."""
    return frozenset(bar_parts(notes, start, end))


def _strikes(part: list[Span], start: float) -> list[Span]:
    """The part's notes struck from `start` on (not those ringing from before it)."""
    return [x for x in part if x[1] >= start - EARLY]


def _onset_count(part: list[Span]) -> int:
    times = sorted(s for _, s, _ in part)
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > ONSET_TOL)


def early_roles(notes: Sequence[PlayedNote], start: float, now: float) -> frozenset[Role]:
    """The roles already beyond doubt part-way through a bar, in [start, now): the part read as
    `bar_parts` reads a bar, on more evidence than a whole bar needs, since a bar that has not ended
    may still turn out otherwise. Three onsets of the part; or a chord struck (a melody player
    strikes no chords); or two notes of a bass line with every note of it at or below B2 (47). A
    bass line's notes must all lie in the bass register (E3 and below): a melody that dips low for
    two notes is a melody with two low notes, not a bass line."""
    out: set[Role] = set()
    for role, part in bar_parts(notes, start, now).items():
        struck = _strikes(part, start)
        if not struck:
            continue
        onsets = _onset_count(struck)
        top = max(n.pitch for n, _, _ in struck)
        if role == "bass" and top > LINE_BASS_TOP:
            continue
        if (onsets >= EARLY_ONSETS or role == "comp"
                or (role == "bass" and onsets >= MIN_ONSETS and top <= UNDER_BASS_TOP)):
            out.add(role)
    return frozenset(out)


def traces(notes: Sequence[PlayedNote], start: float, now: float) -> set[str]:
    """The roles with any sign of them in [start, now), however little: the part read as a bar
    is, or for the bass a single note struck in its register; "any" for any note struck. A part
    with none of it in the bar so far can be handed back part-way through the bar."""
    out: set[str] = set(bar_parts(notes, start, now))
    struck = [n for n in notes if start - EARLY <= n.start < now - EARLY]
    if struck:
        out.add("any")
    if any(n.channel != DRUM_CHANNEL and n.pitch <= LINE_BASS_TOP for n in struck):
        out.add("bass")
    return out
