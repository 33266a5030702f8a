"""How a performance starts and ends, decided the same way in every process.

A band counts in (a click on each beat before the first bar) and ends together: the last chord on a
downbeat, held, every part letting go at once. The timeline's `stop_beat` is that downbeat; the
transport keeps running `ending_beats` past it so the held chord can be timed and released, then
stops. Everything here is derived from the ensemble file and the chord plan, which every process
holds, so the conductor and each agent agree on the final chord and its length without a message.
"""

from __future__ import annotations

import itertools
import math

from protocol.ensemble import Ensemble
from protocol.harmony import Chord, ChordPlan, parse_chord
from protocol.instruments import Role

#: General MIDI percussion on channel 10 (9 on the wire).
DRUM_CHANNEL = 9
SIDE_STICK = 37
CLOSED_HAT = 42
KICK = 36
CRASH = 49

CLICK_ACCENT = 112  # beat 1 of a bar: side stick, loud
CLICK_BEAT = 84  # the other beats: closed hi-hat, softer
CLICK_BEATS = 0.25


def ending_beats(ens: Ensemble) -> float:
    """How long the final chord is held: `timing.ending_beats`, else one bar."""
    given = ens.timing.ending_beats
    return float(ens.meter) if given is None else float(given)


def count_in_player(ens: Ensemble) -> str | None:
    """The agent that plays an audible count-in: the drummer if there is one, else the first agent."""
    if ens.timing.count_in != "click" or not ens.agents:
        return None
    drums = [a.name for a in ens.agents if a.role == "drums"]
    return drums[0] if drums else ens.agents[0].name


Click = tuple[float, int, int]  # beat, pitch, velocity


def count_in_clicks(start: float, end: float, count_in_beats: float, meter: int) -> list[Click]:
    """The count-in's clicks that start in [start, end): one on each whole beat from -count_in_beats
    up to beat 0, beat 1 of each bar a loud side stick, the others a softer closed hi-hat."""
    out = []
    for beat in range(max(-math.floor(count_in_beats), math.ceil(start)), min(0, math.ceil(end))):
        accent = beat % meter == 0
        out.append((float(beat), *((SIDE_STICK, CLICK_ACCENT) if accent else (CLOSED_HAT, CLICK_BEAT))))
    return out


def tonic_chord(plan: ChordPlan) -> Chord:
    """The key's tonic triad: `Am` gives A minor, `Bb` B-flat major."""
    return parse_chord(plan.key)


def final_chord(plan: ChordPlan, stop_beat: float, beats_per_bar: int) -> Chord:
    """The chord every part holds at `stop_beat`.

    Where the form ends at the stop, the form decides: a plan that does not loop and is played out
    ends on its own last chord; a looping plan stopped where it comes round again ends on the chord
    it comes round to (its first, usually the tonic). Stopped mid-form, the band goes home to the
    key's tonic, since the chord the plan happens to reach (a dominant, say) would not sound final.
    """
    bar = round(stop_beat / beats_per_bar)
    n = len(plan.bars)
    if not plan.loop and bar >= n:
        chord = plan.chords[-1][-1]
    elif plan.loop and bar > 0 and bar % n == 0:
        chord = plan.chords[0][0]
    else:
        chord = tonic_chord(plan)
    return tonic_chord(plan) if chord.is_no_chord else chord


# -- the final chord, part by part ---------------------------------------------------------------
def ending_voicing(
    role: Role, pitch_range: tuple[int, int], polyphony: int, chord: Chord, last_pitch: int | None = None,
    avoid: frozenset[int] = frozenset(),
) -> list[int]:
    """The pitches a part holds at the end, ascending, all inside `pitch_range`: the bass the chord's
    bass note low; a comping part a close voicing in the middle of its range, no more notes than it
    can hold; a melody part one chord tone, the one nearest where its line was (`last_pitch`); the
    drums a kick with a crash. A comping or melody part keeps off the pitches in `avoid` (the other
    parts' share of the chord: a unison there is two players on one key) where its range allows."""
    low, high = pitch_range
    if role == "drums":
        return [KICK, CRASH]
    if chord.is_no_chord:
        return []
    if role == "bass":
        return _nearest(chord.bass, low, low, high)
    if role == "melody":
        ref = last_pitch if last_pitch is not None and low <= last_pitch <= high else (low + 2 * high) // 3
        pitches = [p for p in range(low, high + 1) if p % 12 in chord.tones]
        if not pitches:
            return []
        # The nearest free chord tone; on a tie the root, then the lower one (a line settles down).
        return [min(pitches, key=lambda p: (p in avoid, abs(p - ref), p % 12 != chord.root, p))]
    return close_voicing(chord, low, high, polyphony, avoid)


def _nearest(pc: int, ref: int, low: int, high: int) -> list[int]:
    """The pitch of class `pc` in low..high nearest `ref`, as a one-note list (empty if none fits)."""
    pitches = [p for p in range(low, high + 1) if p % 12 == pc]
    return [min(pitches, key=lambda p: abs(p - ref))] if pitches else []


def chosen_tones(chord: Chord, voices: int) -> list[int]:
    """The pitch classes to hold when `voices` cannot take them all: the fifth goes first (it adds
    the least colour), then a slash bass (the bass part sounds it), then the highest extensions."""
    tones = list(dict.fromkeys(chord.tones))
    drop_order = []
    if len(chord.tones) >= 3 and chord.tones[2] != chord.root:
        drop_order.append(chord.tones[2])
    if chord.bass != chord.root:
        drop_order.append(chord.bass)
    while len(tones) > voices:
        victim = next((t for t in drop_order if t in tones and t != chord.root), tones[-1])
        tones.remove(victim)
    return tones


def close_voicing(chord: Chord, low: int, high: int, voices: int,
                  avoid: frozenset[int] = frozenset()) -> list[int]:
    """At most `voices` chord tones stacked within an octave, the voicing whose middle lies nearest
    the middle of low..high; fewer tones where the range is too narrow to hold them all. With
    `avoid` (the pitches other parts hold), the nearest voicing that sounds none of them, with fewer
    tones (down to one, the fifth going first) if no full one can: a thinner chord, not a unison."""
    centre = (low + high) / 2
    if avoid:
        everything = list(dict.fromkeys(chord.tones))
        for n in range(min(max(1, voices), len(everything)), 0, -1):
            first = chosen_tones(chord, n)  # the usual choice, then any n of the tones
            others = [list(c) for c in itertools.combinations(everything, n) if set(c) != set(first)]
            for tones in [first, *others]:
                free = [s for s in _stacks(tones, low, high) if not avoid.intersection(s)]
                if free:
                    return min(free, key=lambda s: _off_centre(s, centre))
    tones = chosen_tones(chord, max(1, voices))
    while tones:
        stacks = _stacks(tones, low, high)
        if stacks:
            return min(stacks, key=lambda s: _off_centre(s, centre))
        tones = tones[:-1]
    # A range narrower than an octave may miss the root: hold the chord tone nearest its middle.
    fits = [p for p in range(low, high + 1) if p % 12 in chord.tones]
    return [min(fits, key=lambda p: abs(p - centre))] if fits else []


def _stacks(tones: list[int], low: int, high: int) -> list[list[int]]:
    """Every close voicing of `tones` in low..high: each inversion, its tones in the octave above its
    bottom, at each octave, lowest first."""
    out = []
    for bottom_pc in tones:
        order = sorted(tones, key=lambda pc: (pc - bottom_pc) % 12)
        for bottom in range(low, high + 1):
            if bottom % 12 != order[0]:
                continue
            stack = [bottom]
            for pc in order[1:]:
                stack.append(stack[-1] + ((pc - stack[-1]) % 12 or 12))
            if stack[-1] > high:
                break
            out.append(stack)
    return out


def _off_centre(stack: list[int], centre: float) -> float:
    return abs(sum(stack) / len(stack) - centre)
