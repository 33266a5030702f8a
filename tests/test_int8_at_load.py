"""`engine.quantize: int8`: a float32 export quantised once at load, cached apart from the user's
files, measured against float32 on a real prompt, and played by an agent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.models import TINY

from agents.engines.model_worker import Planner, WorkerConfig
from agents.model.int8_cache import AGREEMENT_FILE, describe, fingerprint, int8_model, is_int8

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "default"


def test_a_float32_export_is_quantised_once_into_the_cache(tmp_path: Path) -> None:
    user = tmp_path / "my-export"
    shutil.copytree(TINY, user)
    before = {p: p.read_bytes() for p in user.rglob("*") if p.is_file()}
    folder, figures = int8_model(user, root=tmp_path / "cache")
    assert folder.is_relative_to(tmp_path / "cache") and is_int8(folder) and not is_int8(user)
    assert {p: p.read_bytes() for p in user.rglob("*") if p.is_file()} == before  # never touched
    assert figures["positions"] > 500
    assert figures["top1_agreement"] >= 0.85, figures
    assert 0 <= figures["mean_kl"] < 0.1
    stamp = (folder / AGREEMENT_FILE).stat().st_mtime_ns
    again, same = int8_model(user, root=tmp_path / "cache")
    assert (again, same) == (folder, figures) and (folder / AGREEMENT_FILE).stat().st_mtime_ns == stamp
    assert "same top token as float32" in describe(folder, figures)


def test_the_int8_copy_has_7_bit_weights(tmp_path: Path) -> None:
    """Full-range int8 weights overflow the int16 pair sums of x86 CPUs without VNNI
    (agents/model/quantize.py): no weight of the copy is larger than 64 (full range: 127)."""
    import onnx
    from onnx import numpy_helper

    user = tmp_path / "my-export"
    shutil.copytree(TINY, user)
    folder, _ = int8_model(user, root=tmp_path / "cache")
    weights = [numpy_helper.to_array(t) for f in sorted((folder / "onnx").glob("*.onnx"))
               for t in onnx.load(str(f)).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights and max(int(abs(w.astype(int)).max()) for w in weights) <= 64


def test_a_changed_export_gets_a_new_copy(tmp_path: Path) -> None:
    user = tmp_path / "m"
    shutil.copytree(TINY, user)
    first = fingerprint(user)
    config = json.loads((user / "config.json").read_text())
    (user / "config.json").write_text(json.dumps({**config, "note": "edited"}))
    assert fingerprint(user) != first


def test_an_int8_export_is_used_as_it_is(tmp_path: Path) -> None:
    assert int8_model(SHIPPED, root=tmp_path) == (SHIPPED, {})
    assert not any(tmp_path.iterdir())


def test_an_agent_plays_the_int8_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BARCELONA_CACHE", str(tmp_path / "cache"))
    cfg = WorkerConfig(model=str(TINY), track=1, channel=0, pitch_range=(48, 72), programs=((1, 0, 0),),
                       tempo=120.0, beats_per_bar=4, key_sharps=0, key_minor=0, plan_text="C | G7",
                       plan_loop=True, plan_key="C", horizon_beats=2.0, seed=3, temperature=1.0,
                       top_p=0.98, top_k=20, density=1.0, chord_bias=2.0, bass=False, quantize="int8")
    planner = Planner(cfg)
    assert "int8 copy" in planner.model_note
    notes = []
    for i in range(200):
        notes += planner.commit(i * 0.05, i * 0.05 + 1.0)
        while planner.wants_work():
            planner.work()
    assert notes


def test_metadata_is_read_without_loading_the_graph(tmp_path: Path) -> None:
    """is_int8 reads an export's metadata by skipping the graph (onnx.load would hold a medium export's
    1.6 GB to read a few strings): the same properties as onnx.load gives, and none from a file that
    is not ONNX."""
    import onnx

    from agents.model.model_config import onnx_metadata

    root = Path(__file__).parent / "fixtures" / "models"
    shipped = Path(__file__).parents[1] / "models" / "default"
    files = [*root.glob("*/onnx/*.onnx"), *shipped.glob("onnx/*.onnx")]
    assert len(files) >= 6
    for f in files:
        expected = {p.key: p.value for p in onnx.load(str(f), load_external_data=False).metadata_props}
        assert onnx_metadata(f) == expected, f
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 64)
    assert onnx_metadata(junk) == {}
    assert onnx_metadata(tmp_path / "missing.onnx") == {}
