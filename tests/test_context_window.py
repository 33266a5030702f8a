"""How much context an agent keeps (1.5 training windows where the model's config.json records one),
and the engine options that shape what it plays.

Real model folders (the shipped model, the tiny fixtures) and a real Planner driving ONNX Runtime
through several trims of its context.
"""

from __future__ import annotations

import json
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from support.models import TINY

from agents.engines.model_worker import Planner
from agents.engines.worker_config import DEFAULT_CONTEXT_EVENTS, WorkerConfig, context_events
from agents.model.model_config import CONFIG_FILE, ModelLoadError
from protocol.ensemble import parse_ensemble

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "default"


def worker_config(model: Path, **over: object) -> WorkerConfig:
    base = dict(model=str(model), track=2, channel=1, pitch_range=(48, 72), programs=((2, 1, 0),),
                tempo=120.0, beats_per_bar=4, key_sharps=0, key_minor=0, plan_text="C | G7 | Am | F",
                plan_loop=True, plan_key="C", horizon_beats=8.0, seed=5, temperature=1.0, top_p=0.98,
                top_k=20, density=2.0, chord_bias=2.0, bass=False)
    return WorkerConfig(**(base | over))


def test_window_comes_from_the_model_config(tmp_path: Path) -> None:
    assert json.loads((SHIPPED / CONFIG_FILE).read_text())["train_window"] == 256
    assert context_events(str(SHIPPED)) == 384  # never fewer than a whole training window after a trim
    assert context_events(str(TINY)) == DEFAULT_CONTEXT_EVENTS  # a SkyTNT config: no window recorded
    assert context_events(str(SHIPPED), 100) == 100  # the YAML's context_events wins


def test_bad_window_in_config_names_the_field(tmp_path: Path) -> None:
    model = tmp_path / "m"
    shutil.copytree(TINY, model)
    config = json.loads((model / CONFIG_FILE).read_text())
    for bad in ("256", 1, True, 1 << 20):
        (model / CONFIG_FILE).write_text(json.dumps({**config, "train_window": bad}))
        with pytest.raises(ModelLoadError, match="field 'train_window'"):
            context_events(str(model))


def test_planner_keeps_its_window_through_trims() -> None:
    planner = Planner(worker_config(SHIPPED))
    assert planner.runtime.max_events == planner.context.max_events == 384
    planner.commit(0.0, 1.0)
    lengths = [len(planner.context)]
    while len(lengths) < 1500 and sum(b < a for a, b in pairwise(lengths)) < 2:
        planner.step()  # until it has trimmed twice (384 -> 288 rows each time)
        lengths.append(len(planner.context))
        # the cache mirrors the context after every step (the trim rebuilt it)
        n = planner.runtime.length
        assert np.array_equal(planner.runtime.rows[0, :n], planner.context.rows[:n])
    assert max(lengths) == 384
    assert sum(b < a for a, b in pairwise(lengths)) == 2, max(lengths)


def test_yaml_engine_options_are_checked() -> None:
    def ens(key: str, value: object) -> dict:
        return {"name": "w", "agents": [{"name": "a", "engine": {"type": "onnx", key: value}}]}

    assert parse_ensemble(ens("context_events", 512)).agents[0].engine.context_events == 512
    for bad in (8, 10_000, "lots"):
        with pytest.raises(ValueError, match="context_events"):
            parse_ensemble(ens("context_events", bad))
    assert parse_ensemble(ens("grid", 0.5)).agents[0].engine.grid == 0.5
    for bad in (0.3, 0, 2, "eighths", float("nan")):
        with pytest.raises(ValueError, match="grid"):
            parse_ensemble(ens("grid", bad))
