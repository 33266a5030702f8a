"""SkyTNT-exact batch tokenizer: MIDI score -> (N, 8) int64 token rows, and back.

A user's pretrained export was trained on exactly this token stream, so every quirk of SkyTNT's
``MIDITokenizerV1/V2.tokenize`` is reproduced (checked token-for-token against reference arrays made
by SkyTNT's own code). The live, incremental form used while playing is ``live_context.LiveContext``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from agents.model import optimise as opt
from agents.model.vocab import ROW_WIDTH, Vocab, vocab_for

DETOKENIZE_TPB = 480
_RANKS_V2 = {opt.TIME_SIG: 0, opt.KEY_SIG: 1, opt.TEMPO: 2, opt.PATCH: 3, opt.CC: 4, opt.NOTE: 5}
_RANKS_V1 = {opt.TEMPO: 0, opt.PATCH: 1, opt.CC: 2, opt.NOTE: 3}


class MidiTokenizer:
    """Tokenizer for one model family: the version and ``optimise_midi`` flag of its config."""

    __slots__ = ("optimise_midi", "ranks", "vocab")

    def __init__(self, version: str = "v2", optimise_midi: bool = True) -> None:
        if not isinstance(optimise_midi, bool):
            raise TypeError(f"optimise_midi must be a bool, got {type(optimise_midi).__name__}")
        self.vocab: Vocab = vocab_for(version)
        self.optimise_midi = optimise_midi
        self.ranks = _RANKS_V2 if version == "v2" else _RANKS_V1

    @property
    def version(self) -> str:
        return self.vocab.version

    @property
    def vocab_size(self) -> int:
        return self.vocab.vocab_size

    def __repr__(self) -> str:
        return f"MidiTokenizer({self.version!r}, optimise_midi={self.optimise_midi})"

    def sort_key(self, rec: Sequence) -> tuple[int, int, int, int]:
        """SkyTNT's event order: time, then track, then event type (meta before notes)."""
        return (rec[1], rec[2], rec[3], self.ranks[rec[0]])

    def tokenize(self, score: list, add_bos_eos: bool = True, cc_eps: int = 4, tempo_eps: int = 4,
                 remap_track_channel: bool | None = None, add_default_instr: bool | None = None,
                 remove_empty_channels: bool | None = None) -> np.ndarray:
        """Token rows for a MIDI.py-style score; the three flags default to ``optimise_midi``.

        The app's MIDI-prompt settings are ``remap_track_channel=True, add_default_instr=True,
        remove_empty_channels=False`` with eps 4.
        """
        _check_score(score)
        remap = self.optimise_midi if remap_track_channel is None else remap_track_channel
        default_instr = self.optimise_midi if add_default_instr is None else add_default_instr
        remove_empty = self.optimise_midi if remove_empty_channels is None else remove_empty_channels
        vocab = self.vocab
        st = opt.collect(vocab, score, cc_eps, tempo_eps)
        events = list(st.events.values())
        empty = [c for c in st.channels if not st.has_notes[c]]
        first_note_track = st.first_note_track
        if remap:
            events, empty, first_note_track = opt.remap(vocab, st, events, empty, remove_empty)
        if default_instr:
            for c in st.channels:
                if c not in st.patch_channels and c in first_note_track:
                    events.append([opt.PATCH, 0, 0, first_note_track[c], c, 0])
        if vocab.version == "v2":
            opt.fix_key_signatures(st, events, remap)
        events = self._optimise_setup(sorted(events, key=self.sort_key))
        rows = self._emit(events, empty if remove_empty else None)
        if add_bos_eos:
            rows = [vocab.bos_row(), *rows, vocab.eos_row()]
        return np.asarray(rows, dtype=np.int64).reshape(-1, ROW_WIDTH)

    def _optimise_setup(self, events: list[list]) -> list[list]:
        """Collapse leading setup events (patches, CCs, tempo, key) to time 0 with last-wins dedup.

        The "same time" test is SkyTNT's plain ``time1 + time2`` sum, not the slot; kept on purpose.
        """
        keep_time = (opt.NOTE, opt.TIME_SIG) if self.vocab.version == "v2" else (opt.NOTE,)
        setup: dict[tuple, list] = {}
        notes_in_setup = False
        for i, ev in enumerate(events):
            copy = [*ev]
            if ev[0] not in keep_time:
                copy[1] = 0
                copy[2] = 0
            same_next = i < len(events) - 1 and ev[1] + ev[2] == events[i + 1][1] + events[i + 1][2]
            same_prev = notes_in_setup and i > 0 and ev[1] + ev[2] == events[i - 1][1] + events[i - 1][2]
            if (ev[0] == opt.NOTE and not same_next) or (notes_in_setup and not same_prev):
                return sorted(setup.values(), key=self.sort_key) + events[i:]
            if ev[0] == opt.NOTE:
                notes_in_setup = True
            if ev[0] in (opt.NOTE, opt.TIME_SIG, opt.KEY_SIG):
                key = (ev[0], *ev[3:-2])
            else:
                key = (ev[0], *ev[3:-1])
            setup[key] = copy
        return events

    def _emit(self, events: Iterable[list], empty: list[int] | None) -> list[list[int]]:
        """Rows with time1 as a beat delta; an unencodable event is skipped without advancing time."""
        rows: list[list[int]] = []
        last_t1 = 0
        for ev in events:
            if empty is not None and ev[0] in (opt.CC, opt.PATCH) and ev[4] in empty:
                continue
            row = self.vocab.encode(ev[0], [ev[1] - last_t1, *ev[2:]])
            if row is None:
                continue
            rows.append(row)
            last_t1 = ev[1]
        return rows

    def detokenize(self, rows: np.ndarray | Sequence[Sequence[int]]) -> list:
        """Score at 480 ticks per beat from token rows; BOS, EOS, pad and bad rows are ignored."""
        vocab = self.vocab
        tracks: dict[int, list[list]] = {}
        beat = 0
        dur_col = opt.note_duration_col(vocab)
        ch_col = opt.note_channel_col(vocab)
        for row in np.asarray(rows, dtype=np.int64).reshape(-1, ROW_WIDTH).tolist():
            ev = vocab.decode(row)
            if ev is None:
                continue
            name = ev[0]
            beat += ev[1]
            tick = (beat * 16 + ev[2]) * DETOKENIZE_TPB // 16
            out: list = [name, tick]
            if name == opt.NOTE:
                c, p, v = ev[ch_col:ch_col + 3]
                out += [ev[dur_col] * DETOKENIZE_TPB // 16, c, p, v]
            elif name in (opt.CC, opt.PATCH):
                out += ev[4:]
            elif name == opt.TEMPO:
                out += [int(60 / (ev[4] or 1) * 10**6)]
            elif name == opt.TIME_SIG:
                out += [ev[4] + 1, ev[5] + 1, 24, 8]
            else:
                out += [ev[4] - 7, ev[5]]
            tracks.setdefault(ev[3], []).append(out)
        result: list = [DETOKENIZE_TPB]
        for _, track in sorted(tracks.items()):
            result.append(_trim_overlaps(sorted(track, key=lambda e: e[1])))
        return result


def _trim_overlaps(track: list[list]) -> list[list]:
    """Cut each note at the next onset of the same (channel, pitch); drop notes cut to nothing."""
    next_onset: dict[tuple[int, int], int] = {}
    dropped: set[int] = set()
    for i in range(len(track) - 1, -1, -1):
        e = track[i]
        if e[0] != opt.NOTE:
            continue
        key = (e[3], e[4])
        if key in next_onset:
            e[2] = min(e[2], max(next_onset[key] - e[1], 0))
        next_onset[key] = e[1]
        if e[2] == 0:
            dropped.add(i)
    return [e for i, e in enumerate(track) if i not in dropped]


def _check_score(score: object) -> None:
    if not isinstance(score, (list, tuple)) or not score:
        raise TypeError("score must be a non-empty list [ticks_per_beat, track, ...]")
    tpb = score[0]
    if isinstance(tpb, bool) or not isinstance(tpb, int):
        raise TypeError(f"score[0] (ticks_per_beat) must be an int, got {type(tpb).__name__}")
    if tpb <= 0:
        raise ValueError(f"score[0] (ticks_per_beat) must be positive, got {tpb}")
