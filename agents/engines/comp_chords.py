"""A comping part's chords under the line the model draws.

The shipped model learnt every part as one chorale voice, so a comping part draws a single line: an
inner voice in quarters and eighths, which a listener hears as a second tune in the middle of the
band, not as a pianist or a guitarist comping. A comping player voices the harmony under the top
note of the hand. So where the model's note falls on a beat and is a tone of the plan's chord, the
part plays that chord in close position under it, the model's note on top: `chord_notes` notes in
all (at most the part's polyphony), within the instrument's span, above the bass's sounding note and
off the pitches the other parts sound. The notes between the beats (passing tones, an inner voice's
eighths) stay single, as a pianist's moving line between two chords; a note that is no chord tone
(a suspension, an appoggiatura) stays single too, since a chord under it would be a cluster.

The chord's lower notes end where the top note does, or at the part's next note if that comes first,
so the chords never pile up past the part's polyphony. A function of the plan and of what the part
hears at the commit, as the rest of the commit is (agents/engines/commit_voicing.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from agents.model.voicing import Voicing
from protocol.form import chosen_tones
from protocol.harmony import ChordPlan
from protocol.messages import Note

INNER_SOFTER = 6  # velocity units the chord's lower notes sit under its top: the top voice sings
HAND_SPAN = 12  # a close voicing's widest interval where the instrument names no span
ON_BEAT = 1e-6


def fill_chords(notes: list[Note], *, size: int, polyphony: int, pitch_range: tuple[int, int], span: int,
                voicing: Voicing, plan: ChordPlan | None, beats_per_bar: int, later: Sequence[float],
                held_ends: Sequence[float], sounding: Callable[[float], list[tuple[int, int]]]) -> list[Note]:
    """``notes`` (one commit's, sorted by start) with a chord of ``size`` notes under each of the
    model's notes on a beat. ``later`` are the starts of the part's notes still to come (the plan
    drawn past this commit), ``held_ends`` the ends of its notes committed before; ``sounding``
    gives (track, pitch) of the other parts' notes at a beat."""
    if size < 2 or plan is None or not notes:
        return notes
    starts = sorted({n.start_beat for n in notes} | set(later))
    mine = [(n.start_beat, n.start_beat + n.duration_beats) for n in notes]
    out: list[Note] = []
    i = 0
    while i < len(notes):
        j = i
        while j < len(notes) and abs(notes[j].start_beat - notes[i].start_beat) < ON_BEAT:
            j += 1
        group = notes[i:j]
        start = group[0].start_beat
        # the part's notes that started before and still sound (a note the model holds on, a chord)
        held = sum(1 for e in held_ends if e > start + ON_BEAT) + sum(
            1 for s, e in mine if s < start - ON_BEAT and e > start + ON_BEAT)
        added = _under(group, min(size, polyphony - held), pitch_range, span or HAND_SPAN, voicing, plan,
                       beats_per_bar, starts, sounding)
        mine += [(n.start_beat, n.start_beat + n.duration_beats) for n in added]
        out += group + added
        i = j
    return sorted(out, key=lambda n: (n.start_beat, n.pitch))


def _under(group: list[Note], size: int, pitch_range: tuple[int, int], span: int, voicing: Voicing,
           plan: ChordPlan, beats_per_bar: int, starts: list[float],
           sounding: Callable[[float], list[tuple[int, int]]]) -> list[Note]:
    """The notes a chord adds under ``group`` (the part's notes at one moment), or none."""
    start = group[0].start_beat
    if len(group) >= size or abs(start - round(start)) > ON_BEAT:
        return []
    chord = plan.chord_at(start, beats_per_bar)
    top = max(group, key=lambda n: n.pitch)
    if chord is None or chord.is_no_chord or any(n.pitch % 12 not in chord.tones for n in group):
        return []
    others = sounding(start)
    taken = {n.pitch for n in group} | (set() if voicing.doubling else {p for _, p in others})
    bass = [p for t, p in others if t in voicing.bass_tracks]
    floor = max(pitch_range[0], top.pitch - span, max(bass) + 1 if bass else 0)
    wanted = [pc for pc in chosen_tones(chord, size) if pc not in {n.pitch % 12 for n in group}]
    nxt = next((s for s in starts if s > start + ON_BEAT), None)
    end = top.start_beat + top.duration_beats
    if nxt is not None:
        end = min(end, nxt)
    added: list[Note] = []
    for pitch in range(top.pitch - 1, floor - 1, -1):
        if len(group) + len(added) >= size or not wanted:
            break
        if pitch % 12 in wanted and pitch not in taken:
            wanted.remove(pitch % 12)
            added.append(replace(top, pitch=pitch, duration_beats=end - start,
                                 velocity=max(1, top.velocity - INNER_SOFTER)))
    return added
