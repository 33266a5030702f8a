"""Live, incremental SkyTNT context: one time-ordered (N, 8) int64 stream of every part, in beats.

While playing, notes arrive late and out of order (a human note is only known at its note-off;
another agent's committed notes come over the network), but the model must see one stream sorted
the way the batch tokenizer sorts it: by 1/16-beat slot, then track, then event type, then arrival.
Each mutation reports the first row whose tokens changed, so the caller rolls its KV cache back to
that row and re-feeds from there instead of re-running the whole context.

Time: one beat is a quarter note, the batch tokenizer's ``ticks_per_beat``; a time in beats becomes
slot ``round(16 * (beat - origin_beat))`` (half-to-even, as SkyTNT rounds ticks), i.e. the stream
behaves as a MIDI file with ``ticks_per_beat = 16``. See docs/tokenizer.md for where this differs from
the batch tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agents.model.checks import int_in
from agents.model.live_context_sounding import LiveContextSounding
from agents.model.vocab import BOS_ID, ROW_WIDTH, Vocab, vocab_for

_RANKS = {"time_signature": 0, "key_signature": 1, "set_tempo": 2, "patch_change": 3,
          "control_change": 4, "note": 5}
_MAX_DELTA = 127  # time1 block size - 1
_MAX_DUR = 2047  # duration block size - 1
_KEY_SLOT = 128 * 8  # sort key = slot * _KEY_SLOT + track * 8 + rank
_SHORT = 4  # rows up to which a per-row Python loop is cheaper than numpy calls


def _check_beat(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


@dataclass(frozen=True, slots=True)
class LiveNote:
    """A complete note in beats, as the bus carries it; ``track`` is the part's track token."""

    start_beat: float
    duration_beats: float
    pitch: int
    velocity: int
    channel: int
    track: int

    def __post_init__(self) -> None:
        _check_beat("start_beat", self.start_beat)
        if _check_beat("duration_beats", self.duration_beats) <= 0:
            raise ValueError(f"duration_beats must be positive, got {self.duration_beats}")
        int_in("pitch", self.pitch, 0, 127)
        int_in("velocity", self.velocity, 0, 127)
        int_in("channel", self.channel, 0, 15)
        int_in("track", self.track, 0, 127)


@dataclass(frozen=True, slots=True)
class Change:
    """What a mutation did to the rows, in post-mutation indices.

    ``first_row``: first row whose tokens differ from before (None: the stream is unchanged); the
    caller keeps its KV cache for rows ``[:first_row]`` and re-feeds ``rows[first_row:]``.
    ``row``: where the added event now sits (None when nothing was added).
    ``trimmed``: rows dropped from the front to respect the window; when > 0 every position moved,
    so the caller must rebuild its cache from row 0.
    """

    first_row: int | None
    row: int | None = None
    trimmed: int = 0

    @property
    def rebuild(self) -> bool:
        return self.trimmed > 0


class LiveContext(LiveContextSounding):
    """Rolling multi-part context; rows live in one preallocated contiguous int64 buffer. What sounds
    in it (for the decoder and the voicing rules) is agents/model/live_context_sounding.py's."""

    def __init__(self, version: str = "v2", *, max_events: int = 4096, trim_to: int | None = None,
                 prefix: np.ndarray | None = None, origin_beat: float = 0.0, bar_beats: int = 4) -> None:
        self.vocab: Vocab = vocab_for(version)
        pre = np.asarray(prefix if prefix is not None else [self.vocab.bos_row()], dtype=np.int64)
        if pre.ndim != 2 or pre.shape[1] != ROW_WIDTH or len(pre) == 0 or pre[0, 0] != BOS_ID:
            raise ValueError("prefix must be an (k, 8) array of rows starting with the BOS row")
        int_in("max_events", max_events, len(pre) + 1, 1 << 20)
        trim_to = max(len(pre) + 1, (max_events * 3) // 4) if trim_to is None else trim_to
        int_in("trim_to", trim_to, len(pre), max_events)
        int_in("bar_beats", bar_beats, 1, 64)
        self.origin_beat = _check_beat("origin_beat", origin_beat)
        self.max_events, self.trim_to, self.bar_beats = max_events, trim_to, bar_beats
        cap = max_events + 1
        self._rows = np.zeros((cap, ROW_WIDTH), dtype=np.int64)
        self._slot = np.zeros(cap, dtype=np.int64)
        self._key = np.full(cap, -1, dtype=np.int64)
        self._owner = np.full(cap, -1, dtype=np.int64)
        self._seq = np.zeros(cap, dtype=np.int64)
        # (track, channel, pitch) tokens of a note row packed in one int, -1 for other rows: the
        # overlap rule's same-key search is then one comparison instead of seven array operations
        self._note_key = np.full(cap, -1, dtype=np.int64)
        self._n_prefix = self._n = len(pre)
        self._rows[: self._n] = pre
        self._anchor_beat = 0  # the beat the first event row's time1 counts from
        self._floor_slot = 0  # events before this slot fell out of the window
        self._next_seq = 0
        v = self.vocab
        self._time1_base, self._time2_base = v.param_base["time1"], v.param_base["time2"]
        self._track_base = v.param_base["track"]
        self._note_id = v.event_ids["note"]
        self._cols = {p: v.column("note", p) for p in ("channel", "pitch", "velocity", "duration")}
        self._arrays = (self._rows, self._slot, self._key, self._owner, self._seq, self._note_key)
        self._rank_of_id = {v.event_ids[name]: r for name, r in _RANKS.items() if name in v.event_ids}

    # ---- read access --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    @property
    def rows(self) -> np.ndarray:
        """Read-only contiguous view of all rows (no copy); valid until the next mutation."""
        view = self._rows[: self._n]
        view.flags.writeable = False
        return view

    def rows_from(self, start: int) -> np.ndarray:
        """Rows to re-feed after a change: a read-only contiguous view, no copy."""
        view = self._rows[start : self._n]
        view.flags.writeable = False
        return view

    @property
    def owners(self) -> np.ndarray:
        """Owner tag per row (-1 for prefix rows), as a read-only view."""
        view = self._owner[: self._n]
        view.flags.writeable = False
        return view

    @property
    def n_prefix(self) -> int:
        return self._n_prefix

    def slot_of(self, beat: float) -> int:
        """The 1/16-beat slot a time in beats quantises to (half-to-even, like the batch form)."""
        return round(16 * (_check_beat("beat", beat) - self.origin_beat))

    def beat_of_row(self, index: int) -> float:
        """Start of an event row in beats (exact, even where a long gap clamped time1)."""
        if not self._n_prefix <= index < self._n:
            raise ValueError(f"index must be an event row in {self._n_prefix}..{self._n - 1}, got {index}")
        return self.origin_beat + int(self._slot[index]) / 16

    def note_at(self, index: int) -> LiveNote | None:
        """The note in row ``index`` in beats, or None for a non-note row."""
        start = self.beat_of_row(index)
        return self._row_to_note(self._rows[index], start)

    def last_event(self) -> tuple[int, int] | None:
        """(slot, track) of the stream's last event row, or None before the first."""
        if self._n == self._n_prefix:
            return None
        return int(self._slot[self._n - 1]), int(self._rows[self._n - 1][3]) - self._track_base

    # ---- decoding generated rows --------------------------------------------------------------
    def _end_beat(self) -> int:
        return int(self._slot[self._n - 1]) // 16 if self._n > self._n_prefix else self._anchor_beat

    def slot_of_next(self, row: np.ndarray) -> int:
        """Slot of a row generated to follow the current stream (time1 is a delta from the end)."""
        t1 = int(row[1]) - self._time1_base
        t2 = int(row[2]) - self._time2_base
        if not (0 <= t1 <= _MAX_DELTA and 0 <= t2 < 16):
            raise ValueError(f"row has no valid time1/time2 tokens: {list(map(int, row))}")
        return 16 * (self._end_beat() + t1) + t2

    def decode_note(self, row: np.ndarray) -> LiveNote | None:
        """A generated note row in beats, read as following the current stream; None if not a note."""
        if int(row[0]) != self._note_id or self.vocab.decode(row) is None:
            return None
        return self._row_to_note(row, self.origin_beat + self.slot_of_next(row) / 16)

    def _row_to_note(self, row: np.ndarray, start: float) -> LiveNote | None:
        ev = self.vocab.decode(row)
        if ev is None or ev[0] != "note":
            return None
        c = self._cols
        return LiveNote(start, max(1, ev[c["duration"]]) / 16, ev[c["pitch"]], ev[c["velocity"]],
                        ev[c["channel"]], ev[3])

    # ---- mutation -----------------------------------------------------------------------------
    def add_note(self, note: LiveNote, owner: int = 0) -> Change:
        """Place a complete note at its time; earlier notes of the same key may be shortened."""
        if not isinstance(note, LiveNote):
            raise TypeError(f"note must be a LiveNote, got {type(note).__name__}")
        int_in("owner", owner, 0, 1 << 62)
        slot = self.slot_of(note.start_beat)
        if slot < 0:
            raise ValueError(f"start_beat must not precede origin_beat {self.origin_beat}, "
                             f"got {note.start_beat}")
        dur = min(_MAX_DUR, max(1, round(16 * note.duration_beats)))
        params = {"channel": note.channel, "pitch": note.pitch, "velocity": note.velocity, "duration": dur}
        row = np.zeros(ROW_WIDTH, dtype=np.int64)
        row[0] = self._note_id
        row[3] = self._track_base + note.track
        for p, col in self._cols.items():
            row[col] = self.vocab.param_base[p] + params[p]
        return self._place(row, slot, owner)

    def add_row(self, row: np.ndarray, owner: int = 0) -> Change:
        """Add a generated row (any event type) read as following the current stream."""
        row = np.asarray(row, dtype=np.int64)
        if row.shape != (ROW_WIDTH,):
            raise ValueError(f"row must have shape (8,), got {row.shape}")
        if self.vocab.decode(row) is None:
            raise ValueError(f"row is not a decodable event: {row.tolist()}")
        int_in("owner", owner, 0, 1 << 62)
        return self._place(row.copy(), self.slot_of_next(row), owner)

    def truncate_after(self, beat: float, owner: int | None = None) -> Change:
        """Drop event rows starting at or after ``beat`` (only ``owner``'s when given).

        "At or after": a planned event exactly at the commit horizon is not committed yet.
        """
        if owner is not None:
            int_in("owner", owner, 0, 1 << 62)
        p, n = self._n_prefix, self._n
        drop = self._slot[p:n] >= self.slot_of(beat)
        if owner is not None:
            drop &= self._owner[p:n] == owner
        hits = np.flatnonzero(drop)
        if len(hits) == 0:
            return Change(None)
        self._compact(np.concatenate([np.ones(p, dtype=bool), ~drop]))
        first = p + int(hits[0])
        self._retime(first)
        return Change(first)

    def _place(self, row: np.ndarray, slot: int, owner: int) -> Change:
        """Insert ``row`` at ``slot`` in sort order, applying the batch tokenizer's overlap rule for
        notes of one (track, channel, pitch): the previously *arrived* note of the key is cut to end
        where this one starts (removed if that leaves nothing), and a note of the key already at this
        very slot is replaced in place (same dedup key).

        Called once per generated event, after an ONNX run has evicted the caches, where every numpy
        call costs ~20 µs: so the rows that can change are bounded by searches and the few rows of
        this sort key are scanned as scalars."""
        if slot < self._floor_slot:
            return Change(None)  # older than the window: the model can no longer see it
        key = slot * _KEY_SLOT + (int(row[3]) - self._track_base) * 8 + self._rank_of_id[int(row[0])]
        p, n = self._n_prefix, self._n
        keys, note_keys = self._key, self._note_key
        left = p + int(np.searchsorted(keys[p:n], key, side="left"))  # first row of this sort key
        note_key = self._note_key_of(row)
        lo, j, new = left, -1, 0  # lo: first row that can change; j: the key's latest note
        if note_key >= 0 and n > p:
            latest = np.where(note_keys[p:n] == note_key, self._seq[p:n], -1)
            k = int(latest.argmax())
            if latest[k] >= 0:
                j = p + k
                old, new = self._cut(j, slot)
                if new != old or new == 0:
                    lo = min(lo, j)
        old_tail = self._rows[lo:n].copy()  # only rows that can change; usually one or two
        if j >= 0:
            if new == 0:
                for arr in self._arrays:  # drop row j: it is usually near the end, so this moves little
                    arr[j : n - 1] = arr[j + 1 : n]
                n = self._n = n - 1
                left -= j < left
            else:
                self._rows[j, self._cols["duration"]] = self.vocab.param_base["duration"] + new
        at = left
        while at < n and keys[at] == key:  # rows of this sort key: usually none or one
            if note_key >= 0 and note_keys[at] == note_key:
                break  # the same note at this slot: replaced in place
            at += 1
        else:
            for arr in self._arrays:
                arr[at + 1 : n + 1] = arr[at:n]
            self._n += 1
        self._rows[at], self._slot[at], self._key[at] = row, slot, key
        self._owner[at], self._seq[at], self._note_key[at] = owner, self._next_seq, note_key
        self._next_seq += 1
        self._retime(min(lo, at))
        trimmed = self._enforce_window()
        if trimmed:
            kept_at = at - trimmed if at - trimmed >= self._n_prefix else None  # None: it was cut
            return Change(self._n_prefix, kept_at, trimmed)
        return Change(self._first_diff(lo, old_tail), at)

    def _first_diff(self, lo: int, old_tail: np.ndarray) -> int | None:
        """First row from ``lo`` on whose tokens differ from ``old_tail`` (the rows there before)."""
        new_tail = self._rows[lo : self._n]
        m = min(len(old_tail), len(new_tail))
        if m <= _SHORT:  # the usual one or two rows: lists compare faster than four array calls
            old, new = old_tail[:m].tolist(), new_tail[:m].tolist()
            differ: list[int] | np.ndarray = [i for i in range(m) if old[i] != new[i]][:1]
        else:
            differ = np.flatnonzero((old_tail[:m] != new_tail[:m]).any(axis=1))
        if len(differ):
            return lo + int(differ[0])
        return None if len(old_tail) == len(new_tail) else lo + m

    def _note_key_of(self, row: np.ndarray) -> int:
        """(track, channel, pitch) tokens of a note row in one int (ids < 4096); -1 if not a note."""
        if int(row[0]) != self._note_id:
            return -1
        return (int(row[3]) << 24) | (int(row[self._cols["channel"]]) << 12) | int(row[self._cols["pitch"]])

    def _cut(self, j: int, slot: int) -> tuple[int, int]:
        """(old, new) duration steps of note row ``j`` when a note of its key starts at ``slot``."""
        old = int(self._rows[j, self._cols["duration"]]) - self.vocab.param_base["duration"]
        return old, max(0, min(old, slot - int(self._slot[j])))

    def _compact(self, keep: np.ndarray) -> None:
        """Remove rows where ``keep`` (length n) is False, preserving order."""
        n = self._n
        m = int(keep.sum())
        for arr in self._arrays:
            arr[:m] = arr[:n][keep]
        self._n = m

    def _retime(self, start: int) -> None:
        """Rewrite time1 (beat delta, clamped to 127) and time2 for rows from ``start`` on."""
        p, n = self._n_prefix, self._n
        start = max(start, p)
        if start >= n:
            return
        if n - start <= _SHORT:  # the usual one or two rows: plain ints beat a dozen array calls
            rows, slots = self._rows, self._slot
            prev = int(slots[start - 1]) // 16 if start > p else self._anchor_beat
            for i in range(start, n):
                slot = int(slots[i])
                rows[i, 1] = self._time1_base + min(slot // 16 - prev, _MAX_DELTA)
                rows[i, 2] = self._time2_base + slot % 16
                prev = slot // 16
            return
        beats = self._slot[start:n] // 16
        prev_beats = np.empty_like(beats)
        prev_beats[0] = self._slot[start - 1] // 16 if start > p else self._anchor_beat
        prev_beats[1:] = beats[:-1]
        self._rows[start:n, 1] = self._time1_base + np.minimum(beats - prev_beats, _MAX_DELTA)
        self._rows[start:n, 2] = self._time2_base + self._slot[start:n] % 16

    def _enforce_window(self) -> int:
        """Drop the oldest events down to ``trim_to`` rows once ``max_events`` is exceeded.

        The first kept event's time1 is re-based on a bar line (a multiple of ``bar_beats`` beats),
        so the model's running beat count stays in phase with the bar after the cut.
        """
        if self._n <= self.max_events:
            return 0
        p = self._n_prefix
        drop = self._n - self.trim_to
        keep = np.ones(self._n, dtype=bool)
        keep[p : p + drop] = False
        self._compact(keep)
        if self._n > p:
            self._floor_slot = int(self._slot[p])
            first_beat = self._floor_slot // 16
            self._anchor_beat = first_beat - first_beat % self.bar_beats
            self._retime(p)
        return drop
