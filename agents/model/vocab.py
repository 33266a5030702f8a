"""SkyTNT midi-model vocabularies (V1 and V2) and the row codec.

A model export only works with token ids allocated exactly as SkyTNT allocates them: pad, bos, eos,
one id per event type in event order, then one contiguous block per parameter in parameter order.
The tables below are that order; a user's ``config.json`` lists them alphabetically, so they are
never read from it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
ROW_WIDTH = 8  # 1 event id + at most 7 parameters, in both versions

_V1_EVENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("note", ("time1", "time2", "track", "duration", "channel", "pitch", "velocity")),
    ("patch_change", ("time1", "time2", "track", "channel", "patch")),
    ("control_change", ("time1", "time2", "track", "channel", "controller", "value")),
    ("set_tempo", ("time1", "time2", "track", "bpm")),
)
_V1_PARAMS: tuple[tuple[str, int], ...] = (
    ("time1", 128), ("time2", 16), ("duration", 2048), ("track", 128), ("channel", 16), ("pitch", 128),
    ("velocity", 128), ("patch", 128), ("controller", 128), ("value", 128), ("bpm", 256),
)
_V2_EVENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("note", ("time1", "time2", "track", "channel", "pitch", "velocity", "duration")),
    ("patch_change", ("time1", "time2", "track", "channel", "patch")),
    ("control_change", ("time1", "time2", "track", "channel", "controller", "value")),
    ("set_tempo", ("time1", "time2", "track", "bpm")),
    ("time_signature", ("time1", "time2", "track", "nn", "dd")),
    ("key_signature", ("time1", "time2", "track", "sf", "mi")),
)
_V2_PARAMS: tuple[tuple[str, int], ...] = (
    ("time1", 128), ("time2", 16), ("duration", 2048), ("track", 128), ("channel", 16), ("pitch", 128),
    ("velocity", 128), ("patch", 128), ("controller", 128), ("value", 128), ("bpm", 384), ("nn", 16),
    ("dd", 4), ("sf", 15), ("mi", 2),
)


class Vocab:
    """One tokenizer version's id layout, with the row encoder and decoder that depend on it."""

    __slots__ = ("event_ids", "event_names", "events", "param_base", "param_size", "version", "vocab_size")

    def __init__(self, version: str, events: Sequence[tuple[str, tuple[str, ...]]],
                 params: Sequence[tuple[str, int]]) -> None:
        self.version = version
        self.events: dict[str, tuple[str, ...]] = dict(events)
        next_id = 3  # pad, bos, eos
        self.event_ids: dict[str, int] = {}
        for name, _ in events:
            self.event_ids[name] = next_id
            next_id += 1
        self.event_names: dict[int, str] = {i: n for n, i in self.event_ids.items()}
        self.param_base: dict[str, int] = {}
        self.param_size: dict[str, int] = dict(params)
        for name, size in params:
            self.param_base[name] = next_id
            next_id += size
        self.vocab_size = next_id

    def __repr__(self) -> str:
        return f"Vocab({self.version!r}, vocab_size={self.vocab_size})"

    def column(self, event: str, param: str) -> int:
        """Row column of ``param`` in ``event``: V1 and V2 place e.g. a note's duration differently."""
        return 1 + self.events[event].index(param)

    def encode(self, event: str, params: Sequence[int]) -> list[int] | None:
        """Token row for one event, or None when a value is out of its block (SkyTNT skips those)."""
        names = self.events[event]
        row = [self.event_ids[event]]
        for name, value in zip(names, params, strict=False):
            if not 0 <= value < self.param_size[name]:
                return None
            row.append(self.param_base[name] + value)
        row.extend([PAD_ID] * (ROW_WIDTH - len(row)))
        return row

    def decode(self, row: Sequence[int] | np.ndarray) -> list | None:
        """``[event, *params]`` for a decodable row; None for BOS/EOS/pad and malformed rows."""
        name = self.event_names.get(int(row[0]))
        if name is None:
            return None
        names = self.events[name]
        if len(row) <= len(names):
            return None
        out: list = [name]
        for i, pname in enumerate(names):
            value = int(row[1 + i]) - self.param_base[pname]
            if not 0 <= value < self.param_size[pname]:
                return None
            out.append(value)
        return out

    def bos_row(self) -> list[int]:
        return [BOS_ID] + [PAD_ID] * (ROW_WIDTH - 1)

    def eos_row(self) -> list[int]:
        return [EOS_ID] + [PAD_ID] * (ROW_WIDTH - 1)


VOCAB_V1 = Vocab("v1", _V1_EVENTS, _V1_PARAMS)
VOCAB_V2 = Vocab("v2", _V2_EVENTS, _V2_PARAMS)


def vocab_for(version: str) -> Vocab:
    """The vocabulary named by a config's ``tokenizer.version`` ("v1" or "v2")."""
    if not isinstance(version, str):
        raise TypeError(f"version must be a str, got {type(version).__name__}")
    if version == "v1":
        return VOCAB_V1
    if version == "v2":
        return VOCAB_V2
    raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
