"""MIDI file <-> SkyTNT "score" (MIDI.py's format), read and written with mido.

The tokenizer's event order depends on how MIDI.py turns messages into notes (a note is appended
at its note-off, the oldest open note of a key closes first), so this module reproduces that rather
than mido's own note pairing. Only the event types the tokenizer reads, plus pitch wheel and
aftertouch, are converted; text and other meta events are left out.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

import mido

_META_KEYS = {
    "set_tempo": lambda m: [m.tempo],
    "time_signature": lambda m: [m.numerator, m.denominator.bit_length() - 1, m.clocks_per_click,
                                 m.notated_32nd_notes_per_beat],
}


def _key_signature(msg: mido.MetaMessage) -> list[int]:
    """MIDI.py keeps the raw (sf, mi) bytes; mido gives a key name, so invert mido's table."""
    from mido.midifiles.meta import _key_signature_encode  # the table mido decoded with

    sf, mi = _key_signature_encode[msg.key]
    return [sf, mi]


def track_to_score(messages: Iterable[mido.Message | mido.MetaMessage]) -> list[list]:
    """One MIDI track (delta times in ticks) as a MIDI.py score track with absolute ticks."""
    out: list[list] = []
    open_notes: dict[tuple[int, int], list[list]] = {}
    now = 0
    for msg in messages:
        now += msg.time
        kind = msg.type
        if kind == "note_off" or (kind == "note_on" and msg.velocity == 0):
            pending = open_notes.get((msg.channel, msg.note))
            if pending:
                note = pending.pop(0)
                note[2] = now - note[1]
                out.append(note)
        elif kind == "note_on":
            open_notes.setdefault((msg.channel, msg.note), []).append(
                ["note", now, 0, msg.channel, msg.note, msg.velocity])
        elif kind == "program_change":
            out.append(["patch_change", now, msg.channel, msg.program])
        elif kind == "control_change":
            out.append(["control_change", now, msg.channel, msg.control, msg.value])
        elif kind == "pitchwheel":
            out.append(["pitch_wheel_change", now, msg.channel, msg.pitch])
        elif kind == "aftertouch":
            out.append(["channel_after_touch", now, msg.channel, msg.value])
        elif kind == "polytouch":
            out.append(["key_after_touch", now, msg.channel, msg.note, msg.value])
        elif kind in _META_KEYS:
            out.append([kind, now, *_META_KEYS[kind](msg)])
        elif kind == "key_signature":
            out.append(["key_signature", now, *_key_signature(msg)])
    for pending in open_notes.values():  # unterminated notes end at the track's last message
        for note in pending:
            note[2] = now - note[1]
            out.append(note)
    return out


def midi_to_score(source: str | os.PathLike | bytes | mido.MidiFile) -> list:
    """``[ticks_per_beat, track, ...]`` for a MIDI file path, its bytes, or a parsed ``MidiFile``."""
    if isinstance(source, mido.MidiFile):
        mid = source
    elif isinstance(source, (bytes, bytearray)):
        mid = mido.MidiFile(file=io.BytesIO(bytes(source)))
    elif isinstance(source, (str, os.PathLike)):
        mid = mido.MidiFile(os.fspath(source))
    else:
        raise TypeError(f"source must be a path, bytes or mido.MidiFile, got {type(source).__name__}")
    return [mid.ticks_per_beat, *(track_to_score(track) for track in mid.tracks)]


def score_to_midi(score: list) -> mido.MidiFile:
    """A type-1 MIDI file for a score (e.g. a detokenized one) so generated music can be saved."""
    tpb = score[0]
    if isinstance(tpb, bool) or not isinstance(tpb, int) or tpb <= 0:
        raise ValueError(f"score[0] (ticks_per_beat) must be a positive int, got {tpb!r}")
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    for events in score[1:]:
        timed: list[tuple[int, int, mido.Message | mido.MetaMessage]] = []
        for seq, ev in enumerate(events):
            for tick, order, msg in _to_messages(ev):
                timed.append((tick, order * 1_000_000 + seq, msg))
        timed.sort(key=lambda x: (x[0], x[1]))
        track = mido.MidiTrack()
        now = 0
        for tick, _, msg in timed:
            track.append(msg.copy(time=tick - now))
            now = tick
        mid.tracks.append(track)
    return mid


def _to_messages(ev: list) -> list[tuple[int, int, mido.Message | mido.MetaMessage]]:
    """Messages for one score event; note-offs sort before note-ons at the same tick."""
    name, t = ev[0], ev[1]
    if name == "note":
        _, _, d, c, p, v = ev
        return [(t, 1, mido.Message("note_on", channel=c, note=p, velocity=v)),
                (t + d, 0, mido.Message("note_off", channel=c, note=p, velocity=0))]
    if name == "patch_change":
        return [(t, 1, mido.Message("program_change", channel=ev[2], program=ev[3]))]
    if name == "control_change":
        return [(t, 1, mido.Message("control_change", channel=ev[2], control=ev[3], value=ev[4]))]
    if name == "set_tempo":
        return [(t, 1, mido.MetaMessage("set_tempo", tempo=ev[2]))]
    if name == "time_signature":
        return [(t, 1, mido.MetaMessage("time_signature", numerator=ev[2], denominator=2 ** ev[3],
                                        clocks_per_click=ev[4], notated_32nd_notes_per_beat=ev[5]))]
    if name == "key_signature":
        from mido.midifiles.meta import _key_signature_decode

        return [(t, 1, mido.MetaMessage("key_signature", key=_key_signature_decode[(ev[2], ev[3])]))]
    return []
