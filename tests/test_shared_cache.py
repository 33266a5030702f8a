"""The shared in-place KV cache: the load-time rewrite of a lean export (agents/model/fuse_attention.py)
and where the runtime uses it, held to the exported graphs and to the copying cache on the same files.

On tiny_v2_lean (tests/support/models.py); the cached-path tests of test_runtime.py also run on it in
shared mode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.models import LEAN, LEGACY, TINY, assert_close, random_rows

from agents.model.model_config import BASE_FILE, TOKEN_FILE
from agents.model.runtime import ModelRuntime


def test_lean_exports_run_on_the_shared_cache_by_default() -> None:
    """On CPU a lean export is rewritten so ORT appends to one buffer per cache tensor in place; a
    TorchScript export (a user's SkyTNT files) keeps its interface and the copying cache. Asking for
    the shared cache where it cannot apply is refused with the reason, not run wrongly."""
    assert ModelRuntime(LEAN).cache_mode == "shared"
    assert ModelRuntime(TINY).cache_mode == "buffers"
    assert ModelRuntime(LEGACY).cache_mode == "buffers"
    # GroupQueryAttention's CPU kernel feeds several events after a past only for batch 1
    assert ModelRuntime(LEAN, batch_size=2).cache_mode == "buffers"
    with pytest.raises(ValueError, match="cache_mode 'shared' needs a lean export"):
        ModelRuntime(TINY, cache_mode="shared")
    with pytest.raises(ValueError, match="batch_size 1"):
        ModelRuntime(LEAN, cache_mode="shared", batch_size=2)
    with pytest.raises(ValueError, match="cache_mode must be one of"):
        ModelRuntime(LEAN, cache_mode="fast")
    rt = ModelRuntime(LEAN)
    names = {i.name for i in rt._base.get_inputs()}
    assert {"seqlens_k", "total_sequence_length"} <= names
    assert {i.name for i in rt._exported_sessions()[0].get_inputs()} == names - {"seqlens_k",
                                                                                "total_sequence_length"}


def test_shared_cache_holds_the_same_keys_as_the_copying_one() -> None:
    """Same files, both caches, the same feeds with rollbacks between them: the valid part of every
    cache tensor agrees (the shared buffer's tail beyond it is stale by design), and so do the logits."""
    rng = np.random.default_rng(11)
    rows, event = random_rows(rng, 40), random_rows(rng, 1)[0]
    shared = ModelRuntime(LEAN, max_events=64)
    copying = ModelRuntime(LEAN, cache_mode="buffers", max_events=64)
    for rt in (shared, copying):
        rt.prefill(rows[:30])
        rt.rollback(12)
        rt.prefill(rows[12:25])
        rt.token_logits(event[:5])
        rt.rollback(20)
        rt.prefill(rows[20:40])
    for a, b in zip(shared.base_cache(), copying.base_cache(), strict=True):
        assert a.shape == b.shape == (1, 2, 40, 16)
        assert_close(a, b)
    for j in range(8):
        assert_close(shared.token_logits(event[:j]), copying.token_logits(event[:j]))
    with pytest.raises(ValueError, match="max_events"):
        shared.prefill(random_rows(rng, 25))


def test_rewrite_leaves_what_it_does_not_recognise(tmp_path: Path) -> None:
    """Only the exact lean pattern is rewritten: a TorchScript graph, a file that is not ONNX, and a lean
    graph whose attention was changed (a scale GroupQueryAttention would not apply) all come back None,
    so they run as exported."""
    onnx = pytest.importorskip("onnx")
    from agents.model.fuse_attention import fuse_shared_cache

    assert fuse_shared_cache(LEAN / BASE_FILE) is not None
    assert fuse_shared_cache(LEAN / TOKEN_FILE) is not None
    assert fuse_shared_cache(TINY / BASE_FILE) is None
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert fuse_shared_cache(junk) is None
    model = onnx.load(str(LEAN / BASE_FILE))
    mha = next(n for n in model.graph.node if n.op_type == "MultiHeadAttention")
    mha.attribute.append(onnx.helper.make_attribute("scale", 0.5))
    edited = tmp_path / "edited.onnx"
    onnx.save(model, str(edited))
    assert fuse_shared_cache(edited) is None
    # another reader of the past length (after the rewrite it would read the buffer's capacity)
    model = onnx.load(str(LEAN / BASE_FILE))
    length = next(n for n in model.graph.node if n.op_type == "Shape").output[0]
    model.graph.node.append(onnx.helper.make_node("Identity", [length], ["past_length"]))
    model.graph.output.append(onnx.helper.make_tensor_value_info("past_length", onnx.TensorProto.INT64, [1]))
    onnx.save(model, str(edited))
    assert fuse_shared_cache(edited) is None


def test_shared_token_graph_returns_the_softmax_of_its_logits() -> None:
    """The rewritten token graph also gives softmax(logits / T) at the temperature of the call (the
    sampler's normaliser); other modes have none. A bad temperature is refused before any run."""
    rng = np.random.default_rng(12)
    rows, event = random_rows(rng, 12), random_rows(rng, 1)[0]
    rt = ModelRuntime(LEAN)
    rt.prefill(rows)
    for j, temperature in ((0, 1.0), (1, 0.7), (3, 1.3), (6, 0.7), (7, 1.0)):
        logits = rt.token_logits(event[:j], temperature=temperature).astype(np.float64)
        expected = np.exp((logits - logits.max()) / temperature)
        expected /= expected.sum()
        assert np.abs(rt.probs - expected).max() < 1e-6
        assert_close(logits, rt.full_logits(rows, event[:j]))
    rt.token_logits(event[:2], temperature=np.float32(0.9))  # a numpy float is a number too
    assert abs(float(rt._temperature) - 0.9) < 1e-6
    for bad in (float("nan"), 0.0, -1.0, "hot"):
        with pytest.raises(ValueError, match="temperature"):
            rt.token_logits(event[:2], temperature=bad)
    assert ModelRuntime(TINY).probs is None
    assert ModelRuntime(LEAN, cache_mode="buffers").probs is None


def test_shared_cache_waits_for_an_onnxruntime_that_gets_it_right(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime 1.19 loads the rewritten graphs but gets continued prompts wrong (measured: logits off
    by up to 10 on these fixtures), so below 1.20 a lean export runs as exported, by default and with a
    clear refusal when asked for the shared cache."""
    import agents.model.sessions as sessions_module

    assert sessions_module.version_tuple("1.20.1") == (1, 20)
    assert sessions_module.version_tuple("1.21.0.dev20250101") == (1, 21)
    monkeypatch.setattr(sessions_module.ort, "__version__", "1.19.2")
    assert ModelRuntime(LEAN).cache_mode == "buffers"
    with pytest.raises(ValueError, match=r"onnxruntime >= 1\.20"):
        ModelRuntime(LEAN, cache_mode="shared")
