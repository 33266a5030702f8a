"""Write a MIDIModel as a SkyTNT export folder: config.json, onnx/model_base.onnx, onnx/model_token.onnx.

The point of matching SkyTNT's format exactly (input/output names, shapes and dynamic axes, float32,
metadata) is that the runtime then has one loader for our own models and for users' SkyTNT exports, and
that our models run in SkyTNT's app too.

Two graph builds behind that one signature:

* ``lean`` (the default): the graphs are written node by node from the weights with ONNX Runtime's
  fused operators (``MultiHeadAttention`` with the causal flag and the past/present cache,
  ``RotaryEmbedding`` over a precomputed cos/sin table, ``SkipSimplifiedLayerNormalization`` for
  residual + RMSNorm, one packed q/k/v MatMul). A small model is dominated by ORT's per-node cost,
  not by FLOPs: the TorchScript graph of the shipped model runs 268 kernels per base call and 83 per
  token call, the lean one 56 and 18, for the same logits (max |diff| ~1e-5). The operators are
  com.microsoft contrib ops, so the files need ONNX Runtime (which SkyTNT's app uses) and will not
  run in other ONNX back ends.
* ``plain``: ``torch.onnx.export`` (TorchScript, opset 14), the graph SkyTNT's own export.py writes,
  for any ONNX back end; also the only build of the legacy (pre-2024-10, no cache) format.

CLI (random weights, e.g. for test fixtures and benchmarks):
    python -m training.export --random --seed 0 --layers 4 --width 16 --heads 2 --ffn 32 OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from training.model import KVCache, MIDIModel, skytnt_specs

OPSET = 14
BASE_FILE = "onnx/model_base.onnx"
TOKEN_FILE = "onnx/model_token.onnx"
MAX_TOKEN_SEQ = 8

# SkyTNT tokenizer tables (upstream midi_tokenizer.py), only what config.json records; the tokenizer
# itself lives in agents/model. Order matters: ids are allocated in this order.
_PARAMS_V2 = {"time1": 128, "time2": 16, "duration": 2048, "track": 128, "channel": 16, "pitch": 128,
              "velocity": 128, "patch": 128, "controller": 128, "value": 128, "bpm": 384, "nn": 16,
              "dd": 4, "sf": 15, "mi": 2}
_EVENTS_V2 = {
    "note": ["time1", "time2", "track", "channel", "pitch", "velocity", "duration"],
    "patch_change": ["time1", "time2", "track", "channel", "patch"],
    "control_change": ["time1", "time2", "track", "channel", "controller", "value"],
    "set_tempo": ["time1", "time2", "track", "bpm"],
    "time_signature": ["time1", "time2", "track", "nn", "dd"],
    "key_signature": ["time1", "time2", "track", "sf", "mi"],
}
_PARAMS_V1 = {k: v for k, v in _PARAMS_V2.items() if k not in ("nn", "dd", "sf", "mi")} | {"bpm": 256}
_EVENTS_V1 = {
    "note": ["time1", "time2", "track", "duration", "channel", "pitch", "velocity"],
    **{k: _EVENTS_V2[k] for k in ("patch_change", "control_change", "set_tempo")},
}
TOKENIZERS = {"v1": (_EVENTS_V1, _PARAMS_V1), "v2": (_EVENTS_V2, _PARAMS_V2)}


def vocab_size(version: str) -> int:
    """3 specials + one id per event + every parameter block (3406 for v2, 3239 for v1)."""
    events, params = TOKENIZERS[version]
    return 3 + len(events) + sum(params.values())


def tokenizer_dict(version: str, optimise_midi: bool) -> dict[str, object]:
    events, params = TOKENIZERS[version]
    return {"version": version, "optimise_midi": optimise_midi, "vocab_size": vocab_size(version),
            "events": events, "event_parameters": params, "max_token_seq": MAX_TOKEN_SEQ,
            "pad_id": 0, "bos_id": 1, "eos_id": 2}


@dataclass(frozen=True)
class ExportedModel:
    folder: Path
    config: Path
    base: Path
    token: Path


class _Base(nn.Module):
    def __init__(self, model: MIDIModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, past: KVCache) -> tuple[Tensor, KVCache]:
        return self.model(x, list(past))


class _Token(nn.Module):
    def __init__(self, model: MIDIModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, hidden: Tensor, x: Tensor, past: KVCache) -> tuple[Tensor, KVCache]:
        return self.model.forward_token(hidden, x, list(past))


class _LegacyBase(_Base):
    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.model(x)[0]


class _LegacyToken(_Token):
    def forward(self, hidden: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.model.forward_token(hidden[:, None, :], x)[0]


def _kv_names(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_key_values.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(layers) for kv in ("key", "value")]
    return past, present


def _example_cache(stack: nn.Module, past_len: int) -> KVCache:
    s = stack.spec
    return [(torch.rand(1, s.num_attention_heads, past_len, s.head_dim),
             torch.rand(1, s.num_attention_heads, past_len, s.head_dim)) for _ in range(s.num_hidden_layers)]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            axes: dict[str, dict[int, str]], metadata: dict[str, str]) -> None:
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter about the TorchScript path
        torch.onnx.export(module, args, str(path), export_params=True, opset_version=OPSET,
                          do_constant_folding=True, input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, dynamo=False)
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


LEAN_OPSET = 17
_MS = "com.microsoft"


class _GraphBuilder:
    """Nodes and float32 initializers of one lean graph, named after the torch parameters they hold."""

    def __init__(self) -> None:
        from onnx import NodeProto, TensorProto

        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []

    def weight(self, name: str, value: Tensor) -> str:
        from onnx import numpy_helper

        array = value.detach().to(torch.float32).cpu().contiguous().numpy()
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def int64(self, name: str, values: list[int]) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(torch.tensor(values, dtype=torch.int64).numpy(), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs: object) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, outputs, domain=domain or None, **attrs))


def _lean_stack(g: _GraphBuilder, stack: nn.Module, prefix: str, h: str, positions: int, out: str) -> None:
    """One Llama stack on input embeddings `h`, final RMSNorm into `out`, cache in/out as SkyTNT names it.

    Per layer: SkipSimplifiedLayerNorm (residual add + RMSNorm in one kernel), MatMul q|k|v, Split, two
    RotaryEmbedding, MultiHeadAttention (causal over past + new, writes present = past ++ new), MatMul o,
    SkipSimplifiedLayerNorm, MatMul gate, MatMul up, Sigmoid*gate (ORT fuses it to one SiLU kernel),
    Mul, MatMul down. Rotary positions start at the past length (one Shape node), as in LlamaStack.
    The cos/sin table is computed exactly as LlamaStack.forward computes it (float32 pos * inv_freq),
    so the only differences from the torch graph are summation orders inside the fused kernels."""
    spec = stack.spec
    heads, eps = spec.num_attention_heads, spec.rms_norm_eps
    freqs = torch.arange(positions).float()[:, None] * stack.inv_freq[None, :]
    cos, sin = g.weight(f"{prefix}.rotary.cos", freqs.cos()), g.weight(f"{prefix}.rotary.sin", freqs.sin())
    split = g.int64(f"{prefix}.qkv_split", [spec.hidden_size] * 3)
    past_len = f"{prefix}.past_len"
    g.node("Shape", ["past_key_values.0.key"], [past_len], start=2, end=3)
    x, res = h, ""
    for i, layer in enumerate(stack.layers):
        p, attn, mlp = f"{prefix}.layers.{i}", layer.self_attn, layer.mlp
        norm_in = g.weight(f"{p}.input_layernorm.weight", layer.input_layernorm.weight)
        if not res:
            g.node("SimplifiedLayerNormalization", [x, norm_in], [f"{p}.ln1"], axis=-1, epsilon=eps,
                   stash_type=1)
            res = x
        else:
            g.node("SkipSimplifiedLayerNormalization", [x, res, norm_in], [f"{p}.ln1", "", "", f"{p}.res1"],
                   domain=_MS, epsilon=eps)
            res = f"{p}.res1"
        qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], dim=0).T
        g.node("MatMul", [f"{p}.ln1", g.weight(f"{p}.self_attn.qkv_proj.weight", qkv)], [f"{p}.qkv"])
        g.node("Split", [f"{p}.qkv", split], [f"{p}.q", f"{p}.k", f"{p}.v"], axis=-1)
        for t in ("q", "k"):
            g.node("RotaryEmbedding", [f"{p}.{t}", past_len, cos, sin], [f"{p}.{t}_rot"], domain=_MS,
                   interleaved=0, num_heads=heads)
        g.node("MultiHeadAttention", [f"{p}.q_rot", f"{p}.k_rot", f"{p}.v", "", "", "",
                                      f"past_key_values.{i}.key", f"past_key_values.{i}.value"],
               [f"{p}.attn", f"present.{i}.key", f"present.{i}.value"], domain=_MS, num_heads=heads,
               unidirectional=1)
        g.node("MatMul", [f"{p}.attn", g.weight(f"{p}.self_attn.o_proj.weight", attn.o_proj.weight.T)],
               [f"{p}.o"])
        norm_post = g.weight(f"{p}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight)
        g.node("SkipSimplifiedLayerNormalization", [f"{p}.o", res, norm_post],
               [f"{p}.ln2", "", "", f"{p}.res2"], domain=_MS, epsilon=eps)
        res = f"{p}.res2"
        g.node("MatMul", [f"{p}.ln2", g.weight(f"{p}.mlp.gate_proj.weight", mlp.gate_proj.weight.T)],
               [f"{p}.gate"])
        g.node("MatMul", [f"{p}.ln2", g.weight(f"{p}.mlp.up_proj.weight", mlp.up_proj.weight.T)], [f"{p}.up"])
        g.node("Sigmoid", [f"{p}.gate"], [f"{p}.gate_sigmoid"])
        g.node("Mul", [f"{p}.gate", f"{p}.gate_sigmoid"], [f"{p}.silu"])
        g.node("Mul", [f"{p}.silu", f"{p}.up"], [f"{p}.gate_up"])
        g.node("MatMul", [f"{p}.gate_up", g.weight(f"{p}.mlp.down_proj.weight", mlp.down_proj.weight.T)],
               [f"{p}.mlp_out"])
        x = f"{p}.mlp_out"
    g.node("SkipSimplifiedLayerNormalization", [x, res, g.weight(f"{prefix}.norm.weight", stack.norm.weight)],
           [out], domain=_MS, epsilon=spec.rms_norm_eps)


def _lean_model(g: _GraphBuilder, name: str, inputs: list, outputs: list, metadata: dict[str, str]) -> object:
    from onnx import helper

    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", LEAN_OPSET),
                                                    helper.make_opsetid(_MS, 1)],
                              ir_version=8, producer_name="barcelona training.export (lean)")
    helper.set_model_props(proto, metadata)
    return proto


ROTARY_KEY = "rotary_positions"  # lean graphs: rows of the cos/sin table, so a runtime can check its reach


def _kv_ports(stack: nn.Module) -> tuple[list, list]:
    from onnx import TensorProto, helper

    s = stack.spec
    past, present = _kv_names(s.num_hidden_layers)
    dims = ["batch", s.num_attention_heads, "past_seq", s.head_dim]
    return ([helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in past],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, [*dims[:2], "present_seq", dims[3]])
             for n in present])


def _export_lean(model: MIDIModel, base_path: Path, token_path: Path, metadata: dict[str, str]) -> None:
    """Both graphs of `model` in SkyTNT's KV-cache signature, built from the weights (see module doc).

    Rotary tables: the base stack covers max_position_embeddings positions (the context SkyTNT trains
    on and the runtime's default max_events); the token stack only ever sees the hidden state plus
    MAX_TOKEN_SEQ - 1 tokens, so it gets a table of 2 * MAX_TOKEN_SEQ rows instead of 1 MB of unused
    ones."""
    import onnx
    from onnx import TensorProto, helper

    net, tok = model.net, model.net_token
    e, v = net.spec.hidden_size, net.spec.vocab_size
    g = _GraphBuilder()
    g.node("Gather", [g.weight("net.embed_tokens.weight", net.embed_tokens.weight), "x"], ["net.embed"])
    g.node("ReduceSum", ["net.embed", g.int64("net.token_axis", [2])], ["net.h0"], keepdims=0)
    positions = net.spec.max_position_embeddings
    _lean_stack(g, net, "net", "net.h0", positions, "hidden")
    past, present = _kv_ports(net)
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", "mid_seq", "token_seq"])
    hidden = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "mid_seq", e])
    base = _lean_model(g, "midi_model_base", [x, *past], [hidden, *present],
                       metadata | {ROTARY_KEY: str(positions)})
    g = _GraphBuilder()
    g.node("Gather", [g.weight("net_token.embed_tokens.weight", tok.embed_tokens.weight), "x"],
           ["net_token.embed"])
    g.node("Concat", ["hidden", "net_token.embed"], ["net_token.h0"], axis=1)
    _lean_stack(g, tok, "net_token", "net_token.h0", 2 * MAX_TOKEN_SEQ, "net_token.out")
    g.node("MatMul", ["net_token.out", g.weight("lm_head.weight", model.lm_head.weight.T)], ["y"])
    past, present = _kv_ports(tok)
    hidden = helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "states", e])
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", "token_seq"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "token_seq1", v])
    token = _lean_model(g, "midi_model_token", [hidden, x, *past], [y, *present],
                        metadata | {ROTARY_KEY: str(2 * MAX_TOKEN_SEQ)})
    onnx.save(base, str(base_path))
    onnx.save(token, str(token_path))


def export_model(model: MIDIModel, out_dir: str | Path, *, config_name: str = "custom",
                 tokenizer_version: str = "v2", optimise_midi: bool = True,
                 legacy: bool = False, lean: bool = True, int8: bool = False,
                 train_window: int | None = None) -> ExportedModel:
    """Write `model` to `out_dir` in SkyTNT's current (KV cache) format, or the pre-2024-10 legacy one.

    `lean` (current format only) builds the graphs from ORT's fused operators, ~4x fewer kernels per
    call; lean=False writes the TorchScript graph SkyTNT's export.py writes (see the module doc).
    `int8` then stores the weights as int8 (quantize_int8): same names and shapes, float32 in and out.
    `train_window` (events per training window) goes into config.json, where agents read how much
    context is worth keeping; SkyTNT's own code ignores the extra field."""
    if tokenizer_version not in TOKENIZERS:
        raise ValueError(f"tokenizer_version must be one of {sorted(TOKENIZERS)}, got {tokenizer_version!r}")
    vocab = vocab_size(tokenizer_version)
    if model.lm_head.out_features != vocab:
        raise ValueError(f"model vocab_size {model.lm_head.out_features} != {tokenizer_version} "
                         f"tokenizer vocab_size {vocab}")
    folder = Path(out_dir)
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    out = ExportedModel(folder, folder / "config.json", folder / BASE_FILE, folder / TOKEN_FILE)
    model = model.eval()
    meta = {"config_name": config_name, "config": model.config_metadata()}
    bspec, tspec = model.net.spec, model.net_token.spec
    x = torch.randint(1, vocab, (1, 16, MAX_TOKEN_SEQ))
    tok_x = torch.randint(1, vocab, (1, MAX_TOKEN_SEQ // 2))
    with torch.no_grad():
        if legacy:
            _export(_LegacyBase(model), (x,), out.base, ["x"], ["hidden"],
                    {"x": {0: "batch", 1: "mid_seq", 2: "token_seq"}, "hidden": {0: "batch", 1: "mid_seq"}},
                    meta)
            _export(_LegacyToken(model), (torch.randn(1, bspec.hidden_size), tok_x), out.token,
                    ["hidden", "x"], ["y"],
                    {"hidden": {0: "batch"}, "x": {0: "batch", 1: "token_seq"},
                     "y": {0: "batch", 1: "token_seq1"}}, meta)
        elif lean:
            _export_lean(model, out.base, out.token, meta)
        else:
            past_names, present_names = _kv_names(bspec.num_hidden_layers)
            axes = {"x": {0: "batch", 1: "mid_seq", 2: "token_seq"}, "hidden": {0: "batch", 1: "mid_seq"}}
            axes |= {n: {0: "batch", 2: "past_seq"} for n in past_names}
            axes |= {n: {0: "batch", 2: "present_seq"} for n in present_names}
            _export(_Base(model), (x, _example_cache(model.net, 16)), out.base, ["x", *past_names],
                    ["hidden", *present_names], axes, meta)
            past_names, present_names = _kv_names(tspec.num_hidden_layers)
            axes = {"x": {0: "batch", 1: "token_seq"}, "hidden": {0: "batch", 1: "states"},
                    "y": {0: "batch", 1: "token_seq1"}}
            axes |= {n: {0: "batch", 2: "past_seq"} for n in past_names}
            axes |= {n: {0: "batch", 2: "present_seq"} for n in present_names}
            _export(_Token(model), (torch.randn(1, 1, bspec.hidden_size), tok_x,
                                    _example_cache(model.net_token, MAX_TOKEN_SEQ // 2)),
                    out.token, ["hidden", "x", *past_names], ["y", *present_names], axes, meta)
    if int8:
        from training.quantize import quantize_int8

        quantize_int8(out.base)
        quantize_int8(out.token)
    config = {"architectures": ["MIDIModel"], "model_type": "midi_model", "n_embd": tspec.hidden_size,
              "net_config": bspec.to_hf_dict(), "net_token_config": tspec.to_hf_dict(),
              "tokenizer": tokenizer_dict(tokenizer_version, optimise_midi),
              "torch_dtype": "float32", "config_name": config_name}
    if train_window is not None:
        config["train_window"] = int(train_window)
    out.config.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def random_model(seed: int, *, layers: int, width: int, heads: int, ffn: int, tokenizer_version: str = "v2",
                 token_layers: int | None = None, token_heads: int | None = None,
                 token_ffn: int | None = None, std: float = 0.02) -> MIDIModel:
    """A deterministic random-weights model: fixtures and benchmarks need the format, not the music."""
    net, tok = skytnt_specs(vocab_size(tokenizer_version), layers, heads, width, ffn,
                            token_layers, token_heads, token_ffn)
    model = MIDIModel(net, tok)
    model.init_random(seed, std)
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--random", action="store_true", required=True,
                   help="random weights (the only source so far; checkpoints come with training)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--ffn", type=int, default=None, help="default 4 x width")
    p.add_argument("--token-layers", type=int, default=None, help="default layers // 4")
    p.add_argument("--token-heads", type=int, default=None, help="default heads // 4")
    p.add_argument("--token-ffn", type=int, default=None, help="default ffn // 4")
    p.add_argument("--std", type=float, default=0.02, help="weight init std")
    p.add_argument("--tokenizer", choices=sorted(TOKENIZERS), default="v2")
    p.add_argument("--no-optimise-midi", action="store_true", help="record optimise_midi false")
    p.add_argument("--config-name", default="custom")
    p.add_argument("--legacy", action="store_true", help="pre-2024-10 format without KV cache")
    p.add_argument("--plain", action="store_true",
                   help="TorchScript graph as SkyTNT's export.py writes it, instead of the lean fused one")
    a = p.parse_args(argv)
    model = random_model(a.seed, layers=a.layers, width=a.width, heads=a.heads, ffn=a.ffn or 4 * a.width,
                         tokenizer_version=a.tokenizer, token_layers=a.token_layers,
                         token_heads=a.token_heads, token_ffn=a.token_ffn, std=a.std)
    out = export_model(model, a.out_dir, config_name=a.config_name, tokenizer_version=a.tokenizer,
                       optimise_midi=not a.no_optimise_midi, legacy=a.legacy, lean=not a.plain)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out.folder} ({n / 1e6:.2f} M parameters)")


if __name__ == "__main__":
    main()
