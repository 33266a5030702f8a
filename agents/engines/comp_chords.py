"""A comping part's chords under the line the model draws.

The shipped model learnt every part as one chorale voice, so a comping part draws a single line: an
inner voice in quarters and eighths, which a listener hears as a second tune in the middle of the
band, not as a pianist or a guitarist comping. A comping player voices the harmony under the top
note of the hand. So where the model's note falls on a strong beat (beat 1, the middle of an even
bar) or where the plan's chord changes, and is a tone of that chord, the part plays the chord in
close position under it, the model's note on top: `chord_notes` notes in all (one voice of the part's
polyphony always left free, for a note the player's next note may have the line redraw inside the
chord), within the instrument's span, above the bass's sounding note and off the pitches the
other parts and the part itself sound. The chord's slash bass is left to the bass (a doubled leading
tone, E7/G#'s G#, is the classic fault). The other beats and the notes between them (passing tones,
an inner voice's eighths) stay single: the line moves between the chords, which a chord on every
beat would plod over. A note that is no chord tone (a suspension) stays single too, since a chord
under it would be a cluster.

The chord's lower notes sound with the top note: they end where it does, at the part's next note if
that comes first (block chords under a moving line), and never in the next chord of the plan.
Holding them on under the line's passing notes sounded more like a pianist, but it held them into
beats the player's next note may still redraw, where the part's new notes, drawn without them, went
past its polyphony. A function of the plan and of what the part hears at the commit, as the rest of
the commit is (agents/engines/commit_voicing.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from agents.engines.strong_beats import is_strong_beat
from agents.model.voicing import Voicing
from protocol.form import chosen_tones
from protocol.harmony import Chord, ChordPlan
from protocol.messages import Note

INNER_SOFTER = 6  # velocity units the chord's lower notes sit under its top: the top voice sings
# below E3 a third sounds muddy (the arranger's low interval limit): a chord note there keeps at
# least a fourth from the note above it
LOW_INTERVAL_PITCH = 52
LOW_INTERVAL_MIN = 5
HAND_SPAN = 12  # a close voicing's widest interval where the instrument names no span
ON_BEAT = 1e-6


def fill_chords(notes: list[Note], *, size: int, polyphony: int, pitch_range: tuple[int, int], span: int,
                voicing: Voicing, plan: ChordPlan | None, beats_per_bar: int, later: Sequence[Any],
                held: Sequence[Note], sounding: Callable[[float], list[tuple[int, int]]]) -> list[Note]:
    """``notes`` (one commit's, sorted by start) with a chord of ``size`` notes under each of the
    model's notes on a strong beat or a chord change. ``later`` are the part's notes still to come
    (the plan drawn past this commit: anything with a ``start_beat``), ``held`` its notes committed
    before that may still sound; ``sounding`` gives (track, pitch) of the other parts' notes at a beat."""
    if size < 2 or plan is None or not notes:
        return notes
    starts = sorted({n.start_beat for n in [*notes, *later]})
    mine = [*held, *notes]  # a chord's notes end by the part's next onset: they never ring into it
    out: list[Note] = []
    i = 0
    while i < len(notes):
        j = i
        while j < len(notes) and abs(notes[j].start_beat - notes[i].start_beat) < ON_BEAT:
            j += 1
        group = notes[i:j]
        start = group[0].start_beat
        # the part's notes that started before and still sound (a note the model holds on)
        ringing = [n.pitch for n in mine
                   if n.start_beat < start - ON_BEAT and n.start_beat + n.duration_beats > start + ON_BEAT]
        # one voice stays free: the player's next note may redraw the line inside the chord
        room = polyphony - 1 - len(ringing)
        added = _under(group, min(size, room), pitch_range, span or HAND_SPAN, voicing,
                       plan, beats_per_bar, starts, set(ringing), sounding)
        out += group + added
        i = j
    return sorted(out, key=lambda n: (n.start_beat, n.pitch))


def _under(group: list[Note], size: int, pitch_range: tuple[int, int], span: int, voicing: Voicing,
           plan: ChordPlan, beats_per_bar: int, starts: list[float], ringing: set[int],
           sounding: Callable[[float], list[tuple[int, int]]]) -> list[Note]:
    """The notes a chord adds under ``group`` (the part's notes at one moment), or none. ``starts``:
    the onsets of the part's notes, this commit's and the ones drawn after it; ``ringing``: the
    pitches of its notes still sounding from before."""
    start = group[0].start_beat
    if len(group) >= size or abs(start - round(start)) > ON_BEAT:
        return []
    harmony = plan.chord_span_at(float(round(start)), beats_per_bar)  # a hair before a beat is on it
    before = plan.chord_at(round(start) - 1 / 16, beats_per_bar)
    change = (harmony is not None and abs(harmony.start_beat - round(start)) < ON_BEAT
              and (before is None or _sound(before) != _sound(harmony.chord)))
    if harmony is None or not (change or is_strong_beat(start, beats_per_bar)):
        return []
    chord = harmony.chord
    top = max(group, key=lambda n: n.pitch)
    if chord.is_no_chord or any(n.pitch % 12 not in chord.tones for n in group):
        return []
    others = sounding(start)
    taken = {n.pitch for n in group} | ringing | (set() if voicing.doubling else {p for _, p in others})
    bass = [p for t, p in others if t in voicing.bass_tracks]
    floor = max(pitch_range[0], top.pitch - span, max(bass) + 1 if bass else 0)
    have = {n.pitch % 12 for n in group}
    slash = chord.bass if chord.bass != chord.root else None
    wanted = [pc for pc in chosen_tones(chord, size + (slash is not None)) if pc not in have and pc != slash]
    end = min(top.start_beat + top.duration_beats, harmony.end_beat,
              *(s for s in starts if s > start + ON_BEAT))
    added: list[Note] = []
    above = top.pitch
    for pitch in range(top.pitch - 1, floor - 1, -1):
        if len(group) + len(added) >= size or not wanted:
            break
        if pitch < LOW_INTERVAL_PITCH and above - pitch < LOW_INTERVAL_MIN:
            continue
        if pitch % 12 in wanted and pitch not in taken:
            above = pitch
            wanted.remove(pitch % 12)
            added.append(replace(top, pitch=pitch, duration_beats=end - start,
                                 velocity=max(1, top.velocity - INNER_SOFTER)))
    return added


def _sound(chord: Chord) -> tuple[int, int, tuple[int, ...]]:
    """What a chord sounds, whatever its symbol: `C` written again as `CM` is no change."""
    return chord.root, chord.bass, chord.tones
