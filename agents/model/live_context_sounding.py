"""What sounds in the live context, a mixin of `agents.model.live_context.LiveContext`: the questions
the decoder and the voicing rules (agents/model/voicing.py) ask while a part draws its next note:
which notes sound at a slot, what a comping part has just heard, how many notes a part starts at a
slot, and whether a drawn pitch would strike again a note the part already plays there.

They read the context's sorted rows and never change them; each bounds its work with a search on the
slots, as the decoder asks them once per drawn token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from agents.model.vocab import Vocab


class LiveContextSounding:
    """The reading side of `LiveContext`: the state named below is the context's."""

    vocab: Vocab
    _n_prefix: int
    _n: int
    _rows: np.ndarray
    _slot: np.ndarray
    _owner: np.ndarray
    _note_key: np.ndarray
    _note_id: int
    _track_base: int
    _cols: dict[str, int]

    if TYPE_CHECKING:
        def slot_of_next(self, row: np.ndarray) -> int: ...
        def _note_key_of(self, row: np.ndarray) -> int: ...

    def is_restrike(self, row: np.ndarray) -> bool:
        """Whether a generated note row would land on a note of its own (track, channel, pitch) at its
        own slot, which add_row would replace in place: the part striking again a note it already
        plays there. Only the tokens up to the pitch are read, so a decoder can ask before drawing
        the velocity and duration."""
        note_key = self._note_key_of(row)
        p, n = self._n_prefix, self._n
        if note_key < 0 or n == p:
            return False
        slot = self.slot_of_next(row)
        if slot > self._slot[n - 1]:
            return False  # after every row: the usual case for a part that keeps its own order
        slots = self._slot[p:n]  # sorted: the rows at one slot are one run
        lo = p + int(np.searchsorted(slots, slot, side="left"))
        hi = p + int(np.searchsorted(slots, slot, side="right"))
        return bool((self._note_key[lo:hi] == note_key).any())

    def sounding(self, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(track, pitch, start slot) of every note that sounds at ``slot``: started at or before it
        and not yet ended. The voicing rules read it: what the other parts sound where a new note
        would start, and what this part already holds there."""
        p, n = self._n_prefix, self._n
        rows = self._rows[p:n]
        starts = self._slot[p:n]
        dur = rows[:, self._cols["duration"]] - self.vocab.param_base["duration"]
        on = (rows[:, 0] == self._note_id) & (starts <= slot) & (starts + np.maximum(dur, 1) > slot)
        hit = rows[on]
        return (hit[:, 3] - self._track_base, hit[:, self._cols["pitch"]] - self.vocab.param_base["pitch"],
                starts[on].copy())

    def starting_between(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(track, pitch, start slot) of every note that starts after slot ``lo`` and before ``hi``:
        what the other parts will strike while a note of this part that starts at ``lo`` sounds."""
        p, n = self._n_prefix, self._n
        slots = self._slot[p:n]
        a = p + int(np.searchsorted(slots, lo, side="right"))
        b = p + int(np.searchsorted(slots, hi, side="left"))
        rows = self._rows[a:b]
        on = rows[:, 0] == self._note_id
        pitches = rows[on, self._cols["pitch"]] - self.vocab.param_base["pitch"]
        return rows[on, 3] - self._track_base, pitches, self._slot[a:b][on].copy()

    def pitches_between(self, lo: int, hi: int, tracks: np.ndarray) -> np.ndarray:
        """Pitches of the notes of the tracks marked in ``tracks`` (a 128-entry table,
        agents/model/voicing.py's track_table) that sound at some slot in [``lo``, ``hi``]: the tune a
        comping part has just heard."""
        p, n = self._n_prefix, self._n
        slots = self._slot[p:n]
        # rows are in time order: only those that start by ``hi`` can sound in the stretch
        rows = self._rows[p:p + int(np.searchsorted(slots, hi, side="right"))]
        starts = slots[: len(rows)]
        dur = rows[:, self._cols["duration"]] - self.vocab.param_base["duration"]
        on = (rows[:, 0] == self._note_id) & (starts + np.maximum(dur, 1) > lo)
        on &= tracks[np.clip(rows[:, 3] - self._track_base, 0, 127)]
        return rows[on, self._cols["pitch"]] - self.vocab.param_base["pitch"]

    def notes_owned_at(self, slot: int, owner: int) -> int:
        """How many notes ``owner`` starts at ``slot`` (a chord's size so far)."""
        p, n = self._n_prefix, self._n
        slots = self._slot[p:n]
        lo = p + int(np.searchsorted(slots, slot, side="left"))
        hi = p + int(np.searchsorted(slots, slot, side="right"))
        return int(((self._owner[lo:hi] == owner) & (self._rows[lo:hi, 0] == self._note_id)).sum())
