"""training.export round trip: the torch model and the ONNX runtime must give the same logits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the exporter needs the train extra (PyTorch)")
onnx = pytest.importorskip("onnx", reason="the exporter needs the train extra (onnx)")

from agents.model.runtime import ModelRuntime  # noqa: E402
from training.export import (  # noqa: E402
    LEAN_OPSET,
    ROTARY_KEY,
    export_model,
    random_model,
    vocab_size,
)
from training.model import MIDIModel, skytnt_specs  # noqa: E402
from training.quantize import QUANT_KEY  # noqa: E402

pytestmark = pytest.mark.torch
TOL = 1e-4
FIXTURE = Path(__file__).parent / "fixtures" / "models" / "tiny_v2"
SMALL = {"layers": 4, "width": 32, "heads": 4, "ffn": 48, "token_layers": 2, "token_heads": 2, "std": 0.3}


def torch_logits(model: torch.nn.Module, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        hidden, _ = model(torch.from_numpy(rows)[None])
        y, _ = model.forward_token(hidden[:, -1:], torch.from_numpy(prefix)[None])
    return y[0, -1].numpy()


@pytest.fixture(scope="module", params=[("v2", "lean"), ("v2", "plain"), ("v2", "legacy"), ("v1", "lean")],
                ids=["v2", "v2-plain", "v2-legacy", "v1"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One export per format for the whole module: tracing costs seconds."""
    version, build = request.param
    legacy = build == "legacy"
    model = random_model(11, tokenizer_version=version, **SMALL)
    folder = tmp_path_factory.mktemp(f"{version}-{build}")
    export_model(model, folder, config_name="tiny", tokenizer_version=version, optimise_midi=False,
                 legacy=legacy, lean=build == "lean")
    return model, folder, version, legacy


def test_onnx_logits_equal_torch_logits(exported: tuple) -> None:
    model, folder, version, legacy = exported
    rt = ModelRuntime(folder)
    assert (rt.info.vocab_size, rt.info.kv_cache, rt.info.tokenizer_version) == (vocab_size(version),
                                                                                 not legacy, version)
    rng = np.random.default_rng(0)
    rows = rng.integers(3, vocab_size(version), (12, 8))
    event = rng.integers(3, vocab_size(version), 8)
    rt.prefill(rows[:9])  # a prompt in one call, then events one by one as in generation
    for row in rows[9:]:
        rt.prefill(row)
    for j in range(8):
        expected = torch_logits(model, rows, event[:j])
        assert np.abs(rt.token_logits(event[:j]) - expected).max() <= TOL
        assert np.abs(rt.full_logits(rows, event[:j])[0] - expected).max() <= TOL


def test_export_matches_skytnt_signature(exported: tuple) -> None:
    _, folder, version, legacy = exported
    config = json.loads((folder / "config.json").read_text())
    assert config["tokenizer"]["version"] == version and config["tokenizer"]["optimise_midi"] is False
    assert config["tokenizer"]["vocab_size"] == vocab_size(version)
    assert config["net_config"]["num_hidden_layers"] == 4
    base = onnx.load(str(folder / "onnx" / "model_base.onnx"))
    token = onnx.load(str(folder / "onnx" / "model_token.onnx"))
    kv = [] if legacy else [f"past_key_values.{i}.{k}" for i in range(4) for k in ("key", "value")]
    assert [i.name for i in base.graph.input] == ["x", *kv]
    assert [o.name for o in base.graph.output] == ["hidden"] + [n.replace("past_key_values", "present")
                                                                for n in kv]
    assert [i.name for i in token.graph.input] == ["hidden", "x", *kv[:4]]
    assert len(token.graph.input[0].type.tensor_type.shape.dim) == (2 if legacy else 3)
    lean = any(op.domain == "com.microsoft" for op in base.opset_import)
    assert {op.domain: op.version for op in base.opset_import}[""] == (LEAN_OPSET if lean else 14)
    meta = {p.key: p.value for p in base.metadata_props}
    assert meta["config_name"] == "tiny"
    assert json.loads(json.loads(meta["config"])["net_token"])["num_attention_heads"] == 2
    for proto in (base, token):  # static heads / head_dim, dynamic batch and sequence, as SkyTNT's
        for port in [*proto.graph.input, *proto.graph.output]:
            if port.name.startswith(("past", "present")):
                dims = port.type.tensor_type.shape.dim
                assert dims[0].dim_param and dims[2].dim_param
                assert dims[1].dim_value > 0 and dims[3].dim_value > 0


def test_lean_graph_runs_far_fewer_kernels(tmp_path: Path) -> None:
    """The point of the lean build: ORT's per-node cost dominates a small model, so count nodes after
    ORT's own optimisation, and hold the lean logits to the plain (TorchScript) graph's."""
    import onnxruntime as ort

    model = random_model(3, **SMALL)
    export_model(model, tmp_path / "lean", config_name="tiny", lean=True)
    export_model(model, tmp_path / "plain", config_name="tiny", lean=False)

    def nodes(folder: Path, name: str) -> int:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(tmp_path / f"{folder.name}-{name}.onnx")
        ort.InferenceSession(str(folder / "onnx" / name), opts, providers=["CPUExecutionProvider"])
        return len(onnx.load(opts.optimized_model_filepath).graph.node)

    for name in ("model_base.onnx", "model_token.onnx"):
        assert nodes(tmp_path / "lean", name) * 3 < nodes(tmp_path / "plain", name)
    lean, plain = ModelRuntime(tmp_path / "lean"), ModelRuntime(tmp_path / "plain")
    rng = np.random.default_rng(4)
    rows, event = rng.integers(3, 3406, (40, 8)), rng.integers(3, 3406, 8)
    for rt in (lean, plain):
        rt.prefill(rows[:30])
        rt.prefill(rows[30:])
    for j in range(8):
        assert np.abs(lean.token_logits(event[:j]) - plain.token_logits(event[:j])).max() <= TOL


def test_lean_export_records_its_rotary_reach(tmp_path: Path) -> None:
    """A lean base graph has a fixed cos/sin table: a runtime asked for more events must refuse at
    construction, not fail in ORT when the context reaches the end of the table mid-performance."""
    net, tok = skytnt_specs(3406, 1, 2, 16, 32, 1, 1, 16)
    model = MIDIModel(replace(net, max_position_embeddings=64), tok)
    model.init_random(0)
    export_model(model, tmp_path, config_name="tiny")
    base = onnx.load(str(tmp_path / "onnx" / "model_base.onnx"))
    assert {p.key: p.value for p in base.metadata_props}[ROTARY_KEY] == "64"
    rt = ModelRuntime(tmp_path, max_events=64)
    rt.prefill(np.random.default_rng(0).integers(3, 3406, (64, 8)))
    assert rt.token_logits(np.array([4, 5], np.int64)).shape == (1, 3406)
    with pytest.raises(ValueError, match="max_events: 65 exceeds the 64 positions"):
        ModelRuntime(tmp_path, max_events=65)


def test_int8_export_keeps_the_interface_and_the_logits(tmp_path: Path) -> None:
    """int8 weights are a storage choice: same inputs, outputs and metadata, a quarter of the bytes,
    and logits that still rank the vocabulary as the float32 graph does."""
    model = random_model(3, **SMALL)
    export_model(model, tmp_path / "fp32", config_name="tiny")
    export_model(model, tmp_path / "int8", config_name="tiny", int8=True)
    for name in ("model_base.onnx", "model_token.onnx"):
        f32_path, i8_path = tmp_path / "fp32" / "onnx" / name, tmp_path / "int8" / "onnx" / name
        f32, i8 = onnx.load(str(f32_path)), onnx.load(str(i8_path))
        assert [i.name for i in f32.graph.input] == [i.name for i in i8.graph.input]
        assert [o.name for o in f32.graph.output] == [o.name for o in i8.graph.output]
        meta = {p.key: p.value for p in i8.metadata_props}
        assert meta[QUANT_KEY] == "int8-dynamic" and ROTARY_KEY in meta and "config" in meta
        assert i8_path.stat().st_size < f32_path.stat().st_size / 2
    a, b = ModelRuntime(tmp_path / "fp32"), ModelRuntime(tmp_path / "int8")
    rng = np.random.default_rng(4)
    rows, event = rng.integers(3, 3406, (40, 8)), rng.integers(3, 3406, 8)
    for rt in (a, b):
        rt.prefill(rows)
    for j in range(8):
        x, y = a.token_logits(event[:j])[0].copy(), b.token_logits(event[:j])[0]
        assert np.corrcoef(x, y)[0, 1] > 0.95  # unrelated logits would be ~0
        assert not np.array_equal(x, y)  # the weights really are different numbers


def test_committed_fixture_is_seed_7(tmp_path: Path) -> None:
    """tests/fixtures/models/tiny_v2 must stay reproducible from the command in test_runtime.py."""
    model = random_model(7, layers=4, width=16, heads=2, ffn=32, token_layers=2, token_heads=1,
                         token_ffn=16, std=0.3)
    rows = np.random.default_rng(1).integers(3, 3406, (5, 8))
    prefix = rows[0, :3]
    got = ModelRuntime(FIXTURE).full_logits(rows, prefix)[0]
    assert np.abs(got - torch_logits(model, rows, prefix)).max() <= TOL


def test_training_loss_is_finite() -> None:
    model = random_model(2, **SMALL)
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 3406, (2, 6, 8)))
    loss = model.loss(x)
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad is not None
