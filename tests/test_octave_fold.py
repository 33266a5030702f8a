"""A part whose model wants a pitch outside the part's range plays it an octave in, rather than on the
range's edge (agents/model/decoder.py: fold_targets)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import yaml
from support.busy_band import play
from support.inprocess import ENSEMBLES

from agents.model import decoder, voicing
from agents.model.decoder import Generator, fold_targets


def test_every_pitch_folds_onto_the_nearest_in_range_pitch_of_its_class() -> None:
    out = fold_targets(60, 72)
    assert out[60] == 0 and out[72] == 12  # in range: itself
    assert out[84] == 12 and out[96] == 12  # C6 and C7 onto C5, the top
    assert out[48] == 0 and out[71 - 24] == 71 - 60  # C3 onto C4; B2 onto B4, its only B
    assert out[73] == 61 - 60  # C#5 onto C#4
    narrow = fold_targets(60, 64)
    assert narrow[67] == -1  # no G in C4..E4: the model's G has nowhere to go


EDGE_PARTS = ("guitar", "sax", "trumpet")


def edge_share(monkeypatch: pytest.MonkeyPatch, fold: bool) -> float:
    """band.yaml's horns and guitar (their own channels: parts the model never learnt), two seeds of
    8 bars: the share of their notes on the two lowest or two highest pitches of their range."""
    if not fold:
        monkeypatch.setattr(Generator, "_fold_bias",
                            lambda self, logits: np.zeros(len(self._pitches), np.float32))
    data: dict[str, Any] = yaml.safe_load((ENSEMBLES / "band.yaml").read_text())
    # the horns in the registers they have on their own, over the tune as well as under it: the
    # ceiling under the tune (agents/model/voicing.py) is an edge of its own, which no fold moves
    for module in (voicing, decoder):
        monkeypatch.setattr(module, "UNDER_TUNE", frozenset({"comp"}))
    for a in data["agents"]:
        if a["name"] in ("sax", "trumpet"):
            a["range"] = {"sax": [58, 72], "trumpet": [64, 79]}[a["name"]]
    ranges = {a["name"]: a["range"] for a in data["agents"] if a["name"] in EDGE_PARTS}
    edge = total = 0
    for seed in (1, 2):
        data["seed"] = seed
        band, _ = play(data, ENSEMBLES, 8, busy=False)
        for part, (lo, hi) in ranges.items():
            pitches = [p for _, _, p, _ in band.recorded(part)]
            edge += sum(p in (lo, lo + 1, hi - 1, hi) for p in pitches)
            total += len(pitches)
    monkeypatch.undo()
    return edge / total


def test_parts_the_model_never_learnt_sit_less_on_their_ranges_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    folded, masked = edge_share(monkeypatch, True), edge_share(monkeypatch, False)
    print(f"notes on the range's edges: masked {masked:.2f}, folded {folded:.2f}")
    assert folded < masked - 0.05
