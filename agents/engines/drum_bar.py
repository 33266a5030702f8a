"""One bar as a drummer plays it: where it sits in its phrase, then the groove, its variation,
the fill and the crash, each stroke with a velocity and the density it needs to sound.

Everything is a pure function of (seed, bar, meter, form): randomness comes from a hash of the seed,
the bar and what the number is for, never from a generator consumed in call order, so a bar is the
same however the agent splits time into planning windows, and after a restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from agents.engines.drum_patterns import (
    CLOSED_HAT,
    CRASH,
    CRASH_2,
    FILL_LEAD,
    FILL_ONE,
    FILL_TWO,
    KICK,
    OPEN_HAT,
    PEDAL_HAT,
    RIDE,
    SIDE_STICK,
    SNARE,
    TOMS,
    Groove,
    steps,
)

TIMEKEEPING = frozenset({CLOSED_HAT, OPEN_HAT, RIDE})


def unit(seed: int, bar: int, purpose: str, *index: int) -> float:
    """A number in [0, 1) fixed by (seed, bar, purpose, index): Python's own hash() differs between
    processes, a stateful RNG between window splits; this differs between neither."""
    key = f"{seed}:{bar}:{purpose}:{':'.join(map(str, index))}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


def pick_distinct(seed: int, k: int, n: int, purpose: str) -> int:
    """Item k of a seeded shuffle of n items, re-dealt every n: the k-th choice never repeats the
    (k-1)-th, yet needs no memory of earlier choices (so any bar can be played first)."""
    if n <= 2:  # nothing to shuffle: alternate
        return (k + int(unit(seed, 0, purpose) * n)) % n
    block, i = divmod(k, n)

    def deal(b: int) -> list[int]:
        return sorted(range(n), key=lambda j: unit(seed, b, purpose, j))

    order = deal(block)
    if order[0] == deal(block - 1)[-1]:  # (a swap at the front never moves a deal's last item)
        order[0], order[1] = order[1], order[0]
    return order[i]


@dataclass(frozen=True, slots=True)
class BarRole:
    """Where a bar sits in the form: `phrase` counts phrases from the start of the performance."""

    phrase: int
    pos: int
    length: int
    form_end: bool
    b_section: bool

    @property
    def fill(self) -> bool:
        return self.pos == self.length - 1

    @property
    def crash(self) -> bool:
        return self.pos == 0


def phrase_starts(plan_bars: int, phrase_bars: int) -> list[int]:
    """Phrase starts within one pass of the form: every phrase_bars bars, except that a remainder
    shorter than half a phrase joins the last phrase (a 5-bar form is one 5-bar phrase, a 6-bar
    form 4 + 2)."""
    starts = list(range(0, plan_bars, phrase_bars))
    if len(starts) > 1 and (plan_bars - starts[-1]) * 2 < phrase_bars:
        starts.pop()
    return starts


def bar_role(bar: int, plan_bars: int, phrase_bars: int) -> BarRole:
    """Phrases follow the chord plan's form, so the last phrase ends where the plan loops; a plan
    shorter than a phrase is a vamp, over which the drummer counts phrase_bars-bar phrases. The B
    section (the ride instead of the hat) is the second half of the form's phrases, or every other
    pass through a one-phrase form, or every other phrase over a vamp."""
    if plan_bars < phrase_bars:
        phrase, pos = divmod(bar, phrase_bars)
        return BarRole(phrase, pos, phrase_bars, pos == phrase_bars - 1, phrase % 2 == 1)
    passes, at = divmod(bar, plan_bars)
    starts = phrase_starts(plan_bars, phrase_bars)
    j = max(i for i, s in enumerate(starts) if s <= at)
    end = starts[j + 1] if j + 1 < len(starts) else plan_bars
    b_section = passes % 2 == 1 if len(starts) == 1 else j * 2 >= len(starts)
    return BarRole(passes * len(starts) + j, at - starts[j], end - starts[j], at == plan_bars - 1, b_section)


@dataclass(frozen=True, slots=True, order=True)
class Stroke:
    """One hit at a grid step; it sounds while the live density is at least `keep` (0: always)."""

    step: int
    pitch: int
    velocity: int
    keep: float


# Velocity of each lane character, and how the lane leans with the metric position (3 the downbeat,
# 2 another group start, 1 another beat, 0 an off-beat, -1 a sixteenth or a triplet's middle).
_VELOCITY = {
    ("kick", "X"): 112, ("kick", "x"): 100, ("kick", "g"): 50,
    ("snare", "X"): 104, ("snare", "x"): 90, ("snare", "g"): 36,
    ("stick", "x"): 86, ("pedal", "x"): 62,
    ("hat", "x"): 78, ("hat", "X"): 90, ("hat", "o"): 86,
    ("ride", "x"): 80, ("ride", "X"): 92, ("ride", "o"): 92,
}  # fmt: skip
_LEAN = {
    "kick": {3: 8, 2: 4, 1: 0, 0: -6, -1: -10},
    "hat": {3: 8, 2: 4, 1: 2, 0: -12, -1: -22},
    "ride": {3: 6, 2: 3, 1: 2, 0: -8, -1: -16},
    "other": {3: 4, 2: 2, 1: 0, 0: -6, -1: -10},
}
_SPREAD = {"kick": 4, "snare": 4, "stick": 4, "hat": 6, "ride": 6, "pedal": 4}
_PITCH = {"kick": KICK, "snare": SNARE, "stick": SIDE_STICK, "pedal": PEDAL_HAT, "ride": RIDE}


def strength(groove: Groove, step: int) -> int:
    """The metric weight of a step: what accents and thinning go by."""
    spb = groove.steps_per_beat
    beat, sub = divmod(step, spb)
    compound = groove.pulse > 1
    if sub:
        half = sub * 2 == spb or (spb == 3 and sub == 2)  # the "and", or the swung "and"
        return 0 if half and not compound else -1
    starts = {sum(groove.groups[:i]) for i in range(len(groove.groups))}
    if beat == 0:
        return 3
    if beat in starts:
        return 2
    return 0 if compound else 1


def overlay(lanes: Mapping[str, str], over: Mapping[str, str]) -> dict[str, str]:
    out = dict(lanes)
    for lane, text in over.items():
        if text.startswith("="):
            out[lane] = text[1:]
            continue
        base = out.get(lane, "." * len(text))
        merged = (b if o == "." else ("." if o == "-" else o) for b, o in zip(base, text, strict=True))
        out[lane] = "".join(merged)
    return out


def _keep(groove: Groove, lane: str, ch: str, step: int, weight: int, u: float) -> float:
    """How much density a stroke needs: the backbone (downbeat kick, backbeat) always sounds, then
    on-beat time and kicks, then off-beat time, and ghost notes go first."""
    beat, sub = divmod(step, groove.steps_per_beat)
    on_backbeat = sub == 0 and beat in groove.backbeat
    if lane in ("snare", "stick", "pedal") and on_backbeat and ch != "g":
        return 0.0
    if lane == "kick" and step == 0:  # even a feathered one: the bar's floor
        return 0.0
    if ch == "g":
        return 0.7 + 0.3 * u
    if lane == "kick":
        return (0.1 + 0.2 * u if weight >= 1 else 0.35 + 0.3 * u)
    if lane in ("hat", "ride"):
        if step == 0:
            return 0.05
        return 0.15 + 0.3 * u if weight >= 1 else (0.55 + 0.45 * u if weight == 0 else 0.75 + 0.25 * u)
    if lane == "pedal":
        return 0.3 + 0.3 * u
    if lane == "stick":  # a side-stick figure is the bossa's clave: it outlasts the cymbals
        return 0.15 + 0.2 * u
    return 0.3 + 0.3 * u if weight >= 1 else 0.45 + 0.4 * u


def _variations(groove: Groove, seed: int, bar: int, role: BarRole) -> list[Mapping[str, str]]:
    """The phrase's first bar states the groove; later bars take none, one or two variations, the
    second bar of each pair more often (a groove varies a little every bar or two)."""
    if not groove.variations or role.pos == 0:
        return []
    u = unit(seed, bar, "how-many")
    lo, hi = (0.2, 0.75) if role.pos % 2 else (0.45, 0.9)
    k = 0 if u < lo else (1 if u < hi else 2)
    order = sorted(range(len(groove.variations)), key=lambda i: unit(seed, bar, "variation", i))
    return [groove.variations[i] for i in order[:k]]


def _groove_strokes(groove: Groove, seed: int, bar: int, role: BarRole) -> list[Stroke]:
    lanes: Mapping[str, str] = groove.lanes
    if role.b_section:
        lanes = overlay(lanes, groove.b_section)
    for var in _variations(groove, seed, bar, role):
        lanes = overlay(lanes, var)
    riding = role.b_section and groove.b_ride
    out: list[Stroke] = []
    for lane, text in lanes.items():
        kind = "ride" if lane == "hat" and riding else lane
        for step, ch in enumerate(text):
            if ch in ".-":
                continue
            weight = strength(groove, step)
            if kind == "hat":
                pitch = OPEN_HAT if ch == "o" else CLOSED_HAT
            else:
                pitch = _PITCH[kind]
            lean = 0 if ch == "g" else _LEAN.get(kind, _LEAN["other"])[weight]
            spread = 3 if ch == "g" else _SPREAD[kind]
            jitter = round((unit(seed, bar, "velocity", step, pitch) - 0.5) * 2 * spread)
            velocity = _VELOCITY[(kind, ch if (kind, ch) in _VELOCITY else "x")] + lean + jitter
            keep = _keep(groove, lane, ch, step, weight, unit(seed, bar, "keep", step, pitch))
            out.append(Stroke(step, pitch, velocity, keep))
    if riding:  # on the ride, the foot keeps the hat on the backbeats
        for beat in groove.backbeat:
            out.append(Stroke(beat * groove.steps_per_beat, PEDAL_HAT, 60, 0.3))
    out += _thicker(groove, lanes, seed, bar, riding)
    return out


def _thicker(groove: Groove, lanes: Mapping[str, str], seed: int, bar: int, riding: bool) -> list[Stroke]:
    """What a density above 1 adds: the cymbal's empty sixteenths (or triplets), then ghost notes."""
    out: list[Stroke] = []
    spb = groove.steps_per_beat
    keeper = lanes.get(groove.timekeeper, "")
    pitch = RIDE if riding or groove.timekeeper == "ride" else CLOSED_HAT
    for step, ch in enumerate(keeper):
        if ch == ".":
            weight = strength(groove, step)
            u = unit(seed, bar, "thick-time", step)
            keep = 1.0 + 0.5 * u if weight >= 0 else 1.3 + 0.7 * u
            out.append(Stroke(step, pitch, 54 + (8 if weight >= 0 else 0) + round(6 * u), keep))
    snare = lanes.get("snare", "")
    if snare or groove.timekeeper == "ride":
        snare = snare or "." * groove.n_steps
        for step, ch in enumerate(snare):
            # where ghost notes go: the "and", or the last sixteenth (triplet) before a beat
            if ch == "." and step % spb in {spb // 2, spb - 1} - {0}:
                u = unit(seed, bar, "thick-ghost", step)
                out.append(Stroke(step, SNARE, 32 + round(8 * u), 1.25 + 2.0 * u))
    return out


def _fill(groove: Groove, seed: int, bar: int, role: BarRole, beats: int) -> list[Stroke]:
    """A fill over the bar's last `beats` beats: a two-beat (or one-beat) figure chosen so no fill
    repeats the one before it, led into by a repeated cell when the fill is longer, swelling."""
    spb = groove.steps_per_beat
    if beats == 1:
        pieces = FILL_ONE[spb]
        text = pieces[pick_distinct(seed, role.phrase, len(pieces), "fill-one")]
    else:
        pieces = FILL_TWO[spb]
        lead = FILL_LEAD[spb]
        cell = lead[int(unit(seed, bar, "fill-lead") * len(lead))]
        text = cell * (beats - 2) + steps(pieces[pick_distinct(seed, role.phrase, len(pieces), "fill-two")])
    start = groove.n_steps - beats * spb
    out = []
    for i, ch in enumerate(text):
        if ch == ".":
            continue
        pitch = SNARE if ch in "sS" else (KICK if ch == "K" else TOMS[ch])
        u = unit(seed, bar, "fill", i)
        velocity = 74 + round(34 * i / max(1, len(text) - 1)) + (10 if ch == "S" else 0) + round(8 * u - 4)
        keep = 0.0 if i % spb == 0 else 0.25 + 0.5 * u
        out.append(Stroke(start + i, pitch, velocity, keep))
    return out


def fill_beats(groove: Groove, seed: int, bar: int, role: BarRole, phrase_bars: int) -> int:
    """How long a fill is, in whole pulses: the end of the form gets the longer one (a whole bar in
    8-bar phrases), a mid-form phrase end mostly the short one."""
    pulse = groove.pulse
    if phrase_bars >= 8:
        beats = groove.beats if role.form_end else 2 * pulse
    else:
        beats = 2 * pulse if role.form_end or unit(seed, bar, "fill-length") < 0.35 else pulse
    return min(beats, groove.beats)


def compose_bar(
    groove: Groove, seed: int, bar: int, role: BarRole, *, fills: bool, phrase_bars: int
) -> list[Stroke]:
    """Every stroke the bar can hold at any density, sorted by step."""
    strokes = _groove_strokes(groove, seed, bar, role)
    if fills and role.fill:
        beats = fill_beats(groove, seed, bar, role, phrase_bars)
        start = groove.n_steps - beats * groove.steps_per_beat
        # a whole-bar fill still starts on the downbeat's kick
        kept = [s for s in strokes if s.step < start or (s.step == 0 and s.pitch == KICK)]
        strokes = kept + _fill(groove, seed, bar, role, beats)
    if role.crash:  # the crash and a kick mark the phrase's downbeat, in place of the time there
        strokes = [s for s in strokes if s.step != 0 or (s.pitch not in TIMEKEEPING and s.pitch != KICK)]
        crash = CRASH_2 if unit(seed, bar, "crash") < 0.3 else CRASH
        strokes += [Stroke(0, crash, 110 + round(8 * unit(seed, bar, "crash-velocity")), 0.0),
                    Stroke(0, KICK, 114, 0.0)]
    swell = round(6 * role.pos / max(1, role.length - 1)) + (3 if role.b_section else 0)
    best: dict[tuple[int, int], Stroke] = {}
    for s in strokes:  # one stroke per (step, pitch): the one that sounds at the lowest density
        v = max(1, min(127, s.velocity + (swell if s.velocity > 45 else swell // 2)))
        s = Stroke(s.step, s.pitch, v, s.keep)
        have = best.get((s.step, s.pitch))
        if have is None or (s.keep, -s.velocity) < (have.keep, -have.velocity):
            best[(s.step, s.pitch)] = s
    return sorted(best.values())
