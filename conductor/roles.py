"""Which part the player is playing, heard bar by bar, and which agents make room for it.

Pure logic, no I/O and no clock, like the chord listener: the caller feeds the player's notes in
beats as it hears them (at note-on, then whole at note-off) and asks for a decision at each bar
line. A decision uses only what sounded before it (a note still held counts up to the bar line).

What a bar of the player's notes reads as (`bar_roles`), from register, polyphony and density, as
the Reflexive Looper tells bass, chords and melody apart:

- **drums**: notes on the GM drum channel (MIDI channel 10);
- **bass**: one line low down: a single line whose median pitch is at or below E3, or, under other
  notes, a lowest voice at or below B2 that stands apart from what sounds above it;
- **comp**: chords, three or more notes sounding at once, in the middle register;
- **melody**: one line above the bass register (or the top line over chords, above them).

A bar counts only if the part is really played there (two onsets, or notes sounding half the bar),
so a pickup note or a stray touch takes no part. Several roles at once are normal: a pianist's left
hand plays the bass while the right comps.

Hysteresis (`RoleRecognizer`): a role is the player's once it is heard for `take_bars` bars running,
and stays the player's until `return_bars` bars pass without it, so a rest or a fill does not bring
the agent back mid-phrase. Judged only at bar lines, a part would be taken a bar late: the agents
have committed past the bar line by then. So the bar is also judged part-way through, at the last
moment a change still reaches the agents before the next bar line: a part beyond doubt by then
(`early_roles`, on more evidence than a whole bar needs) is taken for that bar line, and dropped
at it if the whole bar does not bear it out; a part about to be handed back with no trace of it so
far is handed back there. `RoleFollower` turns the roles into the agents that yield: each yields
from a bar line its notes are not yet committed for, and comes back at such a bar line.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.ensemble import AUTO_ROLE, NO_ROLE, Ensemble
from protocol.form import DRUM_CHANNEL
from protocol.instruments import ROLES, Role
from protocol.messages import HeldNote, Note, RoleState

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
MAX_NOTES = 1024  # the most recent notes kept: a flood of notes cannot slow the conductor's loop
EARLY_ONSETS = 3  # onsets of a part that take it before its bar has ended (`early_roles`)
EARLY_SHARE = 0.5  # ... heard over at least this share of the bar
TRANSIT_S = 0.1  # for a message to reach every agent, their clocks' disagreement included
TURN_BEATS = 0.4  # agents/arrangement.py's COMMIT_STEP_BEATS (the conductor does not import agents/)
# how long after the moment to judge a bar part-way a tick may come and still judge it (well under the
# message's transit time, which the lead allows for)
LATE_OK_S = 0.03


@dataclass(slots=True)
class PlayedNote:
    """One of the player's notes in beats; `end` is None while it is held."""

    start: float
    end: float | None
    pitch: int
    velocity: int
    channel: int


def _end(n: PlayedNote, now: float, held_max: float) -> float:
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
    spans = [(n, n.start, _end(n, end, held_max)) for n in notes]
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


@dataclass
class RoleRecognizer:
    """The player's roles with hysteresis, decided at each bar line from the bar before it (and
    part-way through a bar where the evidence is already beyond doubt: `decide_early`)."""

    beats_per_bar: int
    return_bars: int = 2
    take_bars: int = 1
    roles: frozenset[Role] = frozenset()
    playing: bool = False  # anything heard, with the same hysteresis (for a fixed `human.role`)
    last_bar: frozenset[Role] = frozenset()
    _seen: dict[str, int] = field(default_factory=dict)  # role -> bars heard in a row
    _missed: dict[str, int] = field(default_factory=dict)  # role -> bars not heard in a row
    _notes: list[PlayedNote] = field(default_factory=list)
    _provisional: set[str] = field(default_factory=set)  # taken part-way through the bar now playing
    unconfirmed: int = 0  # parts taken part-way through a bar that the whole bar did not play

    # -- input ------------------------------------------------------------------------------------
    def note_on(self, pitch: int, velocity: int, beat: float, channel: int) -> None:
        """A note at its onset; it sounds until its whole `note` (or `note_off`) comes."""
        if velocity <= 0:
            self.note_off(pitch, beat)
        elif 0 <= pitch <= 127:
            self._keep(PlayedNote(beat, None, pitch, velocity, channel))

    def _keep(self, note: PlayedNote) -> None:
        self._notes.append(note)
        if len(self._notes) > MAX_NOTES:
            del self._notes[: len(self._notes) - MAX_NOTES]

    def note(self, start: float, duration: float, pitch: int, velocity: int, channel: int) -> None:
        """A whole note: from a file, or a live note at its note-off (closing its note-on)."""
        if duration <= 0 or not 0 <= pitch <= 127:
            return
        for n in self._notes:
            if n.end is None and n.pitch == pitch and abs(n.start - start) < 1e-6:
                n.end = start + duration
                return
        self._keep(PlayedNote(start, start + duration, pitch, velocity, channel))

    def note_off(self, pitch: int, beat: float) -> None:
        for n in reversed(self._notes):
            if n.end is None and n.pitch == pitch:
                n.end = max(beat, n.start)
                return

    # -- decisions --------------------------------------------------------------------------------
    def decide(self, bar_line: float) -> frozenset[Role]:
        """The player's roles after the bar that ends at `bar_line` (call once per bar line). A part
        taken part-way through this bar (`decide_early`) stays only if the whole bar plays it."""
        bpb = self.beats_per_bar
        heard = bar_roles(self._notes, bar_line - bpb, bar_line)
        self.last_bar = heard
        held = set(self.roles)
        for key in (*ROLES, "any"):
            seen = bool(heard) if key == "any" else key in heard
            if seen:
                self._seen[key] = self._seen.get(key, 0) + 1
                self._missed[key] = 0
            else:
                self._missed[key] = self._missed.get(key, 0) + 1
                self._seen[key] = 0
            on = self.playing if key == "any" else key in held
            if not on and self._seen[key] >= self.take_bars:
                on = True
            elif on and (self._missed[key] >= self.return_bars or (key in self._provisional and not seen)):
                on = False
                self.unconfirmed += key in self._provisional and key != "any"
            if key == "any":
                self.playing = on
            elif on:
                held.add(key)  # type: ignore[arg-type]
            else:
                held.discard(key)
        self.roles = frozenset(held)
        self._provisional = set()
        horizon = bar_line - (MAX_HELD_BARS + 1) * bpb
        self._notes = [n for n in self._notes if _end(n, bar_line, MAX_HELD_BARS * bpb) > horizon]
        return self.roles

    def decide_early(self, bar_start: float, now: float) -> frozenset[Role]:
        """Part-way through the bar that began at `bar_start`: a part already beyond doubt
        (`early_roles`) is taken now, for the bar line that ends this bar, and confirmed or dropped
        there; a part about to be given back (missing for `return_bars` - 1 bars) with no trace of
        it so far in this bar is given back now. Less than half a bar heard (`EARLY_SHARE`) is too
        little to judge: nothing changes."""
        if now - bar_start < EARLY_SHARE * self.beats_per_bar:
            return self.roles
        held = set(self.roles)
        if self.take_bars <= 1:  # a part taken on more than a bar's hearing waits for its bar lines
            heard = early_roles(self._notes, bar_start, now)
            for role in heard - held:
                held.add(role)
                self._provisional.add(role)
            if heard and not self.playing:
                self.playing = True
                self._provisional.add("any")
        trace = traces(self._notes, bar_start, now)
        for key in (*ROLES, "any"):
            on = self.playing if key == "any" else key in held
            if (on and key not in trace and key not in self._provisional
                    and self._missed.get(key, 0) >= self.return_bars - 1):
                if key == "any":
                    self.playing = False
                else:
                    held.discard(key)
        self.roles = frozenset(held)
        return self.roles


def commit_lead(ens: Ensemble, tempo_bpm: float) -> float:
    """How far ahead of now the agents may have committed their notes, in beats: their commit
    distance (`timing.commit_beats`, or the output latency where that is longer), a step for each
    model part that commits a turn ahead of another (agents/arrangement.py), and the time for the
    message to reach them. A yield announced this far ahead of its bar line cuts no note sent."""
    timing = ens.timing
    beats_per_s = tempo_bpm / 60.0
    models = sum(1 for a in ens.agents if a.engine.type == "onnx" and a.role != "drums")
    return (max(timing.commit_beats, timing.latency_ms / 1000.0 * beats_per_s)
            + TURN_BEATS * max(0, models - 1) + TRANSIT_S * beats_per_s)


def first_free_bar_line(beat: float, lead_beats: float, beats_per_bar: int) -> float:
    """The first bar line at least `lead_beats` after `beat`: agents have committed their notes
    up to about then, so a yield or a return there cuts no note already sent."""
    return float(max(1, math.ceil((beat + lead_beats - 1e-9) / beats_per_bar)) * beats_per_bar)


class RoleFollower:
    """`human.role` applied: from the roles heard (or the part named) to the agents that yield.

    `yields` maps an agent to (from, until or None), bar lines in beats; an item stays a bar past
    its `until` so every agent has heard the return, then goes (no item: the agent plays)."""

    def __init__(self, ens: Ensemble) -> None:
        h = ens.human
        self.mode = NO_ROLE if h is None or h.source.type == "none" else h.role
        self.bpb = ens.meter
        self.recognizer = RoleRecognizer(ens.meter, return_bars=h.return_bars if h else 2)
        self.agent_roles: dict[str, str] = {a.name: a.role or "" for a in ens.agents}
        self.channel = h.channel if h else 0
        self.yields: dict[str, tuple[float, float | None]] = {}
        self.epoch = 0
        self.changes: list[dict[str, Any]] = []  # for the report: what changed at which bar
        self.yielded_bars: dict[str, int] = {}
        self._decided = 0.0  # the last bar line the bar before it was judged at
        self._early = -1.0  # the bar (its first beat) last judged part-way through

    def note_on(self, held: HeldNote) -> None:
        self.recognizer.note_on(held.pitch, held.velocity, held.start_beat, held.channel)

    def note(self, note: Note) -> None:
        self.recognizer.note(note.start_beat, note.duration_beats, note.pitch, note.velocity, note.channel)

    def taken(self) -> set[str]:
        """The agents whose part the player holds now."""
        r = self.recognizer
        if self.mode == NO_ROLE:
            return set()
        if self.mode == AUTO_ROLE:
            return {a for a, role in self.agent_roles.items() if role in r.roles}
        if not r.playing:
            return set()
        if self.mode in self.agent_roles:
            return {self.mode}
        return {a for a, role in self.agent_roles.items() if role == self.mode}

    def at_beat(self, beat: float, lead_beats: float, late_ok_beats: float = 0.06) -> list[RoleState]:
        """At each tick of the clock (`beat` need not be whole): at a bar line, judge the bar just
        played; at the last moment a change still reaches every agent before the next bar line
        (`lead_beats` before it), judge the bar so far. Both judge at their musical moment, not the
        tick's, so the same playing gives the same roles whatever the tick's phase; a tick more
        than `late_ok_beats` past the part-way moment leaves that bar to its bar line. Returns the
        message if anything changed."""
        if beat <= 0:
            return []
        bpb = self.bpb
        bar_line = math.floor(beat / bpb + 1e-9) * bpb
        if bar_line < self._decided:  # the beat went back (a new start): judge from here on
            self._decided, self._early = bar_line, bar_line - bpb
        next_line = bar_line + bpb
        judge_bar = bar_line > self._decided
        judge_early = self._early < bar_line and beat >= next_line - lead_beats
        if not (judge_bar or judge_early):
            return []
        before = (self.recognizer.roles, self.recognizer.playing, dict(self.yields))
        if judge_bar:
            self._decided = bar_line
            self.recognizer.decide(float(bar_line))
            for a, (start, until) in self.yields.items():
                if start <= bar_line - bpb and (until is None or until >= bar_line):
                    self.yielded_bars[a] = self.yielded_bars.get(a, 0) + 1
            self._follow(float(bar_line), first_free_bar_line(float(bar_line), lead_beats, bpb))
        if judge_early:
            self._early = bar_line
            moment = next_line - lead_beats
            if beat <= moment + late_ok_beats:  # else too late for this bar: its bar line judges it
                self.recognizer.decide_early(float(bar_line), moment)
                self._follow(moment, float(next_line))
        if (self.recognizer.roles, self.recognizer.playing, self.yields) == before:
            return []
        self.epoch += 1
        self.changes.append({"bar": int(beat // bpb) + 1, "player": sorted(self.recognizer.roles),
                             "yields": self._bars()})
        del self.changes[:-200]
        return [self.message()]

    def _follow(self, beat: float, line: float) -> None:
        """The yields after the roles changed at `beat`: a change takes effect at bar line `line`."""
        taken = self.taken()
        for a in sorted(set(self.agent_roles)):
            item = self.yields.get(a)
            pending = item is not None and (item[1] is None or item[1] > beat)
            if a in taken and not pending:
                self.yields[a] = (line, None)
            elif a in taken and item is not None and item[1] is not None:
                self.yields[a] = (item[0], None)  # back before its return came: it stays out
            elif a not in taken and item is not None and item[1] is None:
                if item[0] >= line:
                    del self.yields[a]  # left before the yield began: it never stops
                else:
                    self.yields[a] = (item[0], line)
            elif item is not None and item[1] is not None and item[1] + self.bpb <= beat:
                del self.yields[a]

    def ending_role(self) -> Role:
        """How a replayed player ends the piece: on the chord's bass when it has the bass (its agent
        rests, so nobody else plays the root), else on the chord tone nearest its last note."""
        return "bass" if "bass" in self.recognizer.roles else "melody"

    def message(self) -> RoleState:
        return RoleState(self.epoch, ",".join(sorted(self.recognizer.roles)), RoleState.pack(self.yields))

    def _bars(self) -> dict[str, dict[str, int | None]]:
        """The yields in bars as every display counts them (from 1)."""
        def bar(beat: float | None) -> int | None:
            return None if beat is None else int(beat // self.bpb) + 1

        return {a: {"from_bar": bar(f), "until_bar": bar(u)} for a, (f, u) in sorted(self.yields.items())}

    def yielded_at(self, beat: float) -> list[str]:
        """The agents silent at `beat` (between their yield and their return)."""
        return sorted(a for a, (f, u) in self.yields.items() if f <= beat and (u is None or beat < u))

    def stats(self, beat: float) -> dict[str, Any]:
        """For the status (display, JSON) and the report."""
        return {
            "mode": self.mode,
            "parts": dict(self.agent_roles),
            "player": sorted(self.recognizer.roles),
            "last_bar": sorted(self.recognizer.last_bar),
            "yielded": self.yielded_at(beat),
            "yields": self._bars(),
            "yielded_bars": dict(sorted(self.yielded_bars.items())),
            "changes": self.changes[-32:],
        }
