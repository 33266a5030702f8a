"""The rows a live context starts from: BOS and the setup events (tempo, meter, key, each part's
program) at time 0, laid out as SkyTNT's app builds a custom prompt, so the model hears the ensemble
described the way its training pieces began."""

from __future__ import annotations

import numpy as np

from agents.model.checks import int_in
from agents.model.vocab import vocab_for

__all__ = ["setup_prefix"]


def setup_prefix(version: str = "v2", *, bpm: int | None = None,
                 time_signature: tuple[int, int] | None = None, key: tuple[int, int] | None = None,
                 programs: tuple[tuple[int, int, int], ...] = ()) -> np.ndarray:
    """BOS plus setup rows at time 0, laid out as SkyTNT's app builds a custom prompt.

    ``time_signature`` is (numerator, denominator), ``key`` is (sharps or -flats, minor 0/1),
    ``programs`` are (track, channel, program) triples; time and key signatures need V2.
    """
    vocab = vocab_for(version)
    rows = [vocab.bos_row()]
    wanted: list[tuple[str, str, list[int]]] = []
    if time_signature is not None:
        num, den = time_signature
        int_in("time_signature denominator", den, 1, 16)
        wanted.append(("time_signature", "time_signature", [0, num - 1, den.bit_length() - 2]))
        if den & (den - 1):
            raise ValueError(f"time_signature denominator must be 2, 4, 8 or 16, got {den}")
    if key is not None:
        wanted.append(("key", "key_signature", [0, key[0] + 7, key[1]]))
    if bpm is not None:
        wanted.append(("bpm", "set_tempo", [0, bpm]))
    for track, channel, program in programs:
        wanted.append(("programs", "patch_change", [track, channel, program]))
    for field_name, event, params in wanted:
        if event not in vocab.events:
            raise ValueError(f"{field_name} needs a V2 tokenizer (version is {version!r})")
        row = vocab.encode(event, [0, 0, *params])
        if row is None:
            raise ValueError(f"{field_name} is out of the token range: {params}")
        rows.append(row)
    return np.asarray(rows, dtype=np.int64)
