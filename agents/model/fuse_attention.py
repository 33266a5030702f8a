"""Load-time rewrite of a lean export's attention into ONNX Runtime's GroupQueryAttention on one shared cache.

Why: SkyTNT's graph interface (which the files keep, so SkyTNT's app and any runtime load them) passes
the cache as ``past`` in and ``present = past ++ new`` out. Every call therefore copies the whole cache
once, and a rollback copies it again to cut it; at the 768-1024 events an agent keeps, that copy is most
of a base call (1.6 ms of a 1-event prefill at 1024 events on the shipped model, against 0.2 ms of
actual work). ``GroupQueryAttention`` with ``past`` and ``present`` bound to the *same* buffer of fixed
capacity appends the new keys in place and reads the valid length from ``seqlens_k``: a call costs the
same at any length short of the attention itself, and a rollback is only a smaller ``seqlens_k``. It
also applies the rotary embedding inside the kernel, so the Split and both RotaryEmbedding nodes of
each layer go too.

Only the pattern ``training/export.py`` writes for lean graphs is rewritten (also after int8
quantisation, which leaves the attention alone): per layer a Split of the packed q|k|v projection into
three equal parts (heads of a multiple of 16 values, which the kernel needs), RotaryEmbedding of q and
k at positions starting from the past length (a Shape of ``past_key_values.0.key``), and a causal
MultiHeadAttention over past and present. Anything else (a user's TorchScript export, a graph edited by
hand) returns None and runs as exported, on the copying cache. The rewritten graph gains two inputs,
``seqlens_k`` (int32, batch: valid length - 1) and ``total_sequence_length`` (int32 scalar), and its
cache ports have the capacity as their length.

GroupQueryAttention's float32 kernel exists on CPU only, so the runtime uses this on CPU; on CUDA the
graphs run as exported.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LAST_NORM", "PROBS", "SEQLENS", "TEMPERATURE", "TOTAL_LENGTH", "fuse_shared_cache"]

log = logging.getLogger(__name__)
SEQLENS = "seqlens_k"
TOTAL_LENGTH = "total_sequence_length"
PROBS = "probs"
TEMPERATURE = "temperature"
LAST_NORM = "net_token.out"  # the lean token graph's final RMSNorm, the vocabulary head's input
_MS = "com.microsoft"


def fuse_shared_cache(path: Path, *, token_graph: bool = False) -> bytes | None:
    """The serialised rewritten model, or None when `path` is not a lean graph this can rewrite
    (or the ``onnx`` package is missing). Never raises for a bad file: the caller's own loading
    reports that with the path named.

    ``token_graph`` adds two changes for the token model, both for the decode loop's sake:

    * only the last position is projected onto the vocabulary, so ``y`` is ``(batch, 1, vocab)``: a
      call that feeds skipped tokens (a forced track and channel) with the next one pays the
      128 x 3406 head once, not once per token (3 of the 8 per note were thrown away). With int8
      weights the head's own input is then quantised over that position alone (the layers before it
      still quantise over every position of the call);
    * a second output ``probs = Softmax(y / temperature)`` over the whole vocabulary, ``temperature``
      a new float scalar input: the normaliser SkyTNT's nucleus rule needs, from ORT's vectorised
      kernel instead of four numpy passes over 3406 logits per token (sampling.py)."""
    try:
        import onnx
    except ImportError:
        log.info("onnx is not installed: %s runs on the copying KV cache (pip install onnx)", path)
        return None
    try:
        model = onnx.load(str(path))
        if not _rewrite(model):
            return None
        if token_graph and not (_project_last_position(model) and _add_probs(model)):
            return None
        return model.SerializeToString()
    except Exception as exc:  # a file onnx cannot parse: ORT's own load names the problem
        log.debug("%s: not rewritten for the shared cache (%s)", path, exc)
        return None


def _attrs(node: Any) -> dict[str, object]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _rewrite(model: Any) -> bool:
    """Rewrite `model` in place; False (and `model` untouched) unless every attention matches."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    nodes = list(graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, int] = {}
    for n in nodes:
        for name in n.input:
            consumers[name] = consumers.get(name, 0) + 1
    inits = {t.name: t for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for mha in nodes:
        if mha.op_type != "MultiHeadAttention":
            continue
        attrs = _attrs(mha)
        if set(attrs) - {"num_heads", "unidirectional"} or attrs.get("unidirectional") != 1:
            return False
        heads = attrs.get("num_heads")
        if not isinstance(heads, int) or heads < 1:
            return False
        ins = list(mha.input)
        if len(ins) != 8 or any(ins[3:6]) or not (ins[6] in inputs and ins[7] in inputs):
            return False
        rot_q, rot_k = producer.get(ins[0]), producer.get(ins[1])
        if rot_q is None or rot_k is None or not all(
            r.op_type == "RotaryEmbedding" and r.domain == _MS and _rotary_ok(r, heads, producer)
            for r in (rot_q, rot_k)
        ):
            return False
        split = producer.get(rot_q.input[0])
        if split is None or split.op_type != "Split":
            return False
        if list(split.output) != [rot_q.input[0], rot_k.input[0], ins[2]]:
            return False
        if any(consumers.get(name, 0) != 1 for name in (*split.output, ins[0], ins[1])):
            return False
        if len(split.input) != 2 or split.input[1] not in inits:
            return False
        if _attrs(split).get("axis", 0) not in (-1, 2):
            return False
        sizes = numpy_helper.to_array(inits[split.input[1]]).tolist()
        if len(sizes) != 3 or len(set(sizes)) != 1 or sizes[0] % heads:
            return False
        if (sizes[0] // heads) % 16:  # GroupQueryAttention's CPU kernel needs it
            return False
        if rot_q.input[2:] != rot_k.input[2:]:
            return False
        gqa = helper.make_node(
            "GroupQueryAttention",
            [split.input[0], "", "", ins[6], ins[7], SEQLENS, TOTAL_LENGTH, rot_q.input[2], rot_q.input[3]],
            list(mha.output), name=mha.name or None, domain=_MS,
            num_heads=heads, kv_num_heads=heads, do_rotary=1, rotary_interleaved=0,
        )
        replaced[id(mha)] = gqa
        dropped.update((id(split), id(rot_q), id(rot_k)))
    if not replaced:
        return False
    kept = [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]
    fused = {id(n) for n in replaced.values()}
    lengths = {o for n in kept if n.op_type == "Shape" and n.input[0].startswith("past_key_values.")
               for o in n.output}
    for n in kept:  # after the rewrite a past input's length is the capacity, not the past: no other reader
        if id(n) not in fused and n.op_type != "Shape" and any(
                name.startswith("past_key_values.") or name in lengths for name in n.input):
            return False
    kept = [n for n in kept if not (n.op_type == "Shape" and n.input[0].startswith("past_key_values."))]
    used = {name for n in kept for name in n.input}
    del graph.node[:]
    graph.node.extend(kept)
    graph.input.append(helper.make_tensor_value_info(SEQLENS, TensorProto.INT32, ["batch"]))
    graph.input.append(helper.make_tensor_value_info(TOTAL_LENGTH, TensorProto.INT32, []))
    for port in (*graph.input, *graph.output):
        if port.name.startswith(("past_key_values.", "present.")):
            port.type.tensor_type.shape.dim[2].dim_param = "capacity"
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:  # the Split sizes
        graph.initializer.remove(t)
    return True


def _rotary_ok(node: Any, heads: int, producer: dict[str, Any]) -> bool:
    """Rotary over the full head, not interleaved, at positions from the past length: what GQA's
    ``do_rotary`` computes from ``seqlens_k``."""
    attrs = _attrs(node)
    if set(attrs) - {"interleaved", "num_heads"} or attrs.get("interleaved", 0) != 0:
        return False
    if attrs.get("num_heads", heads) != heads or len(node.input) != 4:
        return False
    shape = producer.get(node.input[1])
    if shape is None or shape.op_type != "Shape":
        return False
    sa = _attrs(shape)
    return (sa.get("start"), sa.get("end")) == (2, 3) and shape.input[0].startswith("past_key_values.")


def _project_last_position(model: Any) -> bool:
    """Slice the token stack's output to its last position before the vocabulary head."""
    from onnx import helper, numpy_helper

    graph = model.graph
    norm = next((n for n in graph.node if LAST_NORM in n.output), None)
    y = next((o for o in graph.output if o.name == "y"), None)
    if norm is None or norm.op_type != "SkipSimplifiedLayerNormalization" or y is None:
        return False
    last = f"{LAST_NORM}.last"
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name == LAST_NORM:
                node.input[k] = last
    consts = {f"{last}.{key}": value for key, value in (("starts", -1), ("ends", 2**63 - 1), ("axes", 1))}
    for name, value in consts.items():
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.int64), name))
    at = list(graph.node).index(norm) + 1
    graph.node.insert(at, helper.make_node("Slice", [LAST_NORM, *consts], [last]))
    dim = y.type.tensor_type.shape.dim[1]
    dim.Clear()
    dim.dim_value = 1
    return True


def _add_probs(model: Any) -> bool:
    """``probs = Softmax(y / temperature)``, the last axis, as a second output."""
    from onnx import TensorProto, helper

    graph = model.graph
    if any(port.name in (PROBS, TEMPERATURE) for port in (*graph.input, *graph.output)):
        return False
    # no declared shape: a scalar for one runtime, (batch, 1, 1) for a shared model's rows, each its own
    graph.input.append(helper.make_tensor_value_info(TEMPERATURE, TensorProto.FLOAT, None))
    graph.node.append(helper.make_node("Div", ["y", TEMPERATURE], ["y.scaled"]))
    graph.node.append(helper.make_node("Softmax", ["y.scaled"], [PROBS], axis=-1))
    y = next(o for o in graph.output if o.name == "y")
    probs = helper.make_tensor_value_info(PROBS, TensorProto.FLOAT, None)
    probs.type.CopyFrom(y.type)
    graph.output.append(probs)
    return True
