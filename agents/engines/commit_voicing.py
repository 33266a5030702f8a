"""A part's notes as it plays them at the commit: voiced within its polyphony and dynamics, then moved
off the pitches the other parts sound (the Planner's commit, agents/engines/model_worker.py).

Plain functions of what the Planner holds at that moment, so what a commit sends is a function of
the plan, the context and the notes heard, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

from agents.articulation import sounding_length
from agents.engines.comp_chords import fill_chords
from agents.engines.worker_config import WorkerConfig
from agents.model.live_context import LiveContext
from agents.model.voicing import Voicing
from protocol.messages import Note


def voice(out: list[Any], limit: float, cfg: WorkerConfig, *, planned: list[Any], held_ends: list[float],
          level_at: Callable[[float], int]) -> list[Note]:
    """The committed notes as the part plays them: never more sounding at once than its
    polyphony (when a new note or chord would overflow it, the held notes that would end soonest
    end there, as a player lifts a finger or a horn takes a breath; a note reaching past
    ``limit``, the end of the plan drawn so far, ends there, since a later note there is not
    known yet), and at the velocity the part gives that beat (agents/dynamics.py). They leave
    here as the part's `Note`s, the value the agent schedules and the band hears.

    ``planned`` is what stays uncommitted, ``held_ends`` the ends of the notes committed before,
    ``level_at`` the part's level at a beat (it follows the player's)."""
    from agents.dynamics import velocity

    if not out:
        return []
    ends = [n.start_beat + n.duration_beats for n in out]
    held = [(end, -1) for end in held_ends if end > out[0].start_beat]  # committed before
    onsets = sorted({n.start_beat for n in out} | {n.start_beat for n in planned})
    mine = sorted(range(len(out)), key=lambda i: out[i].start_beat)
    poly = cfg.polyphony
    k = 0
    for t in onsets:
        chord = sum(1 for n in out if abs(n.start_beat - t) < 1e-9) + sum(
            1 for n in planned if abs(n.start_beat - t) < 1e-9)
        while k < len(mine) and out[mine[k]].start_beat < t - 1e-9:
            held.append((ends[mine[k]], mine[k]))
            k += 1
        held = [(e, i) for e, i in held if e > t + 1e-9]
        overflow = len(held) + chord - poly
        for _end, i in sorted(held, key=lambda h: (h[1] < 0, h[0])):  # this batch's first, soonest end
            if overflow <= 0:
                break
            if i >= 0:
                ends[i] = t
                overflow -= 1
        held = [(ends[i] if i >= 0 else e, i) for e, i in held if (ends[i] if i >= 0 else e) > t + 1e-9]
    # A key is struck again only once it is up: a note ends where the part strikes its pitch again
    # (this commit's next note on it, or one planned), or the synth would hear the second note-on
    # on a key still held (the default piano's line did so on 29 of its 182 notes in 16 bars).
    again = sorted((n.start_beat, n.pitch) for n in [*out, *planned])
    for i, n in enumerate(out):
        nxt = next((s for s, p in again if p == n.pitch and s > n.start_beat + 1e-9), None)
        if nxt is not None and nxt < ends[i]:
            ends[i] = nxt
    # and a note that runs into the part's next onset ends a little before it (agents/articulation.py)
    bpb = cfg.beats_per_bar
    starts = sorted({n.start_beat for n in [*out, *planned]})
    for i, n in enumerate(out):
        nxt = next((s for s in starts if s > n.start_beat + 1e-9), None)
        if nxt is not None and ends[i] >= nxt - 1e-9:
            together = sum(1 for m in out if abs(m.start_beat - n.start_beat) < 1e-9)
            ends[i] = n.start_beat + sounding_length(cfg.role, n.start_beat, nxt - n.start_beat,
                                                     beats_per_bar=bpb, seed=cfg.seed, pitch=n.pitch,
                                                     together=together)
    notes = []
    for n, end in zip(out, ends, strict=True):
        end = min(end, max(limit, n.start_beat + 1 / 16))
        level = level_at(n.start_beat)
        v = velocity(n.start_beat, n.pitch, beats_per_bar=bpb, level=level,
                     role=cfg.role, seed=cfg.seed)
        notes.append(Note(n.start_beat, max(1 / 16, end - n.start_beat), n.pitch, max(1, v),
                          cfg.channel, cfg.source))
    return notes


def as_played(out: list[Any], limit: float, cfg: WorkerConfig, voicing: Voicing, plan: Any, *,
              planned: list[Any], held: list[Note], level_at: Callable[[float], int],
              sounding: Callable[[float], list[tuple[int, int]]],
              during: Callable[[float, float], list[tuple[int, int]]],
              recent: Callable[[float], list[int]]) -> list[Note]:
    """A commit's drawn notes as the part plays them: voiced within its polyphony and dynamics
    (`voice`), moved off the other parts' pitches (`make_room`), and for a comping part given its
    chords under the line (agents/engines/comp_chords.py). ``held`` are the part's notes committed
    before that may still sound, ``planned`` what stays uncommitted."""
    voiced = voice(out, limit, cfg, planned=planned, held_ends=[n.end_beat for n in held], level_at=level_at)
    # a key the part still holds from an earlier commit is not struck again (that note's length was
    # set before this one was drawn, by a re-plan since): the key stays down, as in a tie
    voiced = [n for n in voiced if not any(h.pitch == n.pitch and h.start_beat < n.start_beat - 1e-9
                                           and h.end_beat > n.start_beat + 1e-9 for h in held)]
    notes = make_room(voiced, voicing, cfg, plan, during, recent)
    return fill_chords(notes, size=cfg.chord_notes, polyphony=cfg.polyphony, pitch_range=cfg.pitch_range,
                       span=cfg.span, voicing=voicing, plan=plan, beats_per_bar=cfg.beats_per_bar,
                       later=planned, held=held, sounding=sounding)


def make_room(notes: list[Note], voicing: Voicing, cfg: WorkerConfig, plan: Any,
              sounding: Callable[[float, float], list[tuple[int, int]]],
              recent_tune: Callable[[float], list[int]] = lambda beat: []) -> list[Note]:
    """Move a committed note off a pitch another part sounds while it sounds (unless the part may
    double), and off the wrong side of the bass: to the same pitch class an octave away if the
    range allows, else to the nearest chord tone that is free; a note with no room is dropped.
    ``sounding`` gives (track, pitch) of the other parts' notes from a beat to another, as far as
    this commit knows them (`others_sounding`), ``recent_tune`` the pitches of the tune's last bar
    before a beat (`recent_tune`). A horn's held note used to meet the piano's next chord on its own
    pitch: the piano, which commits first, could not know it, and the horn looked only at its start."""
    from agents.model.voicing import room

    out: list[Note] = []
    for note in notes:
        start = note.start_beat
        others = sounding(start, note.end_beat)
        own = [n.pitch for n in out if abs(n.start_beat - start) < 1e-9]
        chord = plan.chord_at(start, cfg.beats_per_bar)
        moved = room(voicing, note.pitch, cfg.pitch_range, others, own,
                     () if chord is None else chord.tones, recent_tune(start))
        if moved is not None:
            out.append(note if moved == note.pitch else replace(note, pitch=moved))
    return out


class _Struck(NamedTuple):
    """A note of the context as `heard_by` asks about it: whose it is and when it starts."""

    track: int
    start_beat: float


def others_sounding(beat: float, context: LiveContext, skip: frozenset[int] | set[int],
                    heard: list[tuple[float, Any]], player: list[tuple[float, Any]],
                    heard_by: Callable[[Any, float], bool],
                    until: float | None = None) -> list[tuple[int, int]]:
    """(track, pitch) of the other parts' notes sounding at ``beat``, in the context or heard and not
    yet in it (``heard``: another agent's, counted only if ``heard_by`` says this commit may take
    them; ``player``: the player's); tracks in ``skip`` (drums, this part) left out. With ``until``,
    also another agent's notes that start after ``beat`` and before ``until`` and that this commit
    of ``beat`` may take: a part that commits after the others knows the notes they will strike
    while its own note still sounds."""
    slot = context.slot_of(beat)
    tracks, pitches, _ = context.sounding(slot)
    out = [(int(t), int(p)) for t, p in zip(tracks, pitches, strict=True) if int(t) not in skip]
    for _, note in heard:
        start = note.start_beat
        at_beat = start <= beat + 1e-9 < start + note.duration_beats
        later = until is not None and beat + 1e-9 < start < until - 1e-9
        if note.track not in skip and (at_beat or later) and heard_by(note, beat):
            out.append((note.track, note.pitch))
    if until is not None:  # in the context too, where the model may have taken them in already
        tracks, pitches, starts = context.starting_between(slot, context.slot_of(until))
        for t, p, start_slot in zip(tracks, pitches, starts, strict=True):
            struck = _Struck(int(t), context.origin_beat + int(start_slot) / 16)
            if struck.track not in skip and heard_by(struck, beat):
                out.append((struck.track, int(p)))
    for _, note in player:
        start = note.start_beat
        if note.track not in skip and start <= beat + 1e-9 < start + note.duration_beats:
            out.append((note.track, note.pitch))
    return out


def recent_tune(beat: float, voicing: Voicing, context: LiveContext,
                player: list[tuple[float, Any]]) -> list[int]:
    """The pitches of the player's tune heard in the bar before ``beat`` (a comping part keeps under
    them: agents/model/voicing.py), from the context and from the player's notes not yet in it."""
    from agents.model.voicing import TUNE_MEMORY_BEATS, TUNE_MEMORY_SLOTS, UNDER_TUNE, track_table

    if voicing.role not in UNDER_TUNE or not voicing.tune_tracks:
        return []

    slot = context.slot_of(beat)
    out = [int(p) for p in context.pitches_between(
        slot - TUNE_MEMORY_SLOTS, slot, track_table(voicing.tune_tracks))]
    lo = beat - TUNE_MEMORY_BEATS
    out += [n.pitch for _, n in player if n.track in voicing.tune_tracks
            and n.start_beat <= beat + 1e-9 and n.start_beat + n.duration_beats > lo]
    return out
