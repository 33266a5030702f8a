"""Write a MIDIModel as a SkyTNT export folder: config.json, onnx/model_base.onnx, onnx/model_token.onnx.

The point of matching SkyTNT's format exactly (input/output names, dynamic axes, opset 14 via the
TorchScript exporter, float32, metadata) is that the runtime then has one loader for our own models and
for users' SkyTNT exports, and that our models run in SkyTNT's app too.

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


def export_model(model: MIDIModel, out_dir: str | Path, *, config_name: str = "custom",
                 tokenizer_version: str = "v2", optimise_midi: bool = True,
                 legacy: bool = False) -> ExportedModel:
    """Write `model` to `out_dir` in SkyTNT's current (KV cache) format, or the pre-2024-10 legacy one."""
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
    config = {"architectures": ["MIDIModel"], "model_type": "midi_model", "n_embd": tspec.hidden_size,
              "net_config": bspec.to_hf_dict(), "net_token_config": tspec.to_hf_dict(),
              "tokenizer": tokenizer_dict(tokenizer_version, optimise_midi),
              "torch_dtype": "float32", "config_name": config_name}
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
    a = p.parse_args(argv)
    model = random_model(a.seed, layers=a.layers, width=a.width, heads=a.heads, ffn=a.ffn or 4 * a.width,
                         tokenizer_version=a.tokenizer, token_layers=a.token_layers,
                         token_heads=a.token_heads, token_ffn=a.token_ffn, std=a.std)
    out = export_model(model, a.out_dir, config_name=a.config_name, tokenizer_version=a.tokenizer,
                       optimise_midi=not a.no_optimise_midi, legacy=a.legacy)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out.folder} ({n / 1e6:.2f} M parameters)")


if __name__ == "__main__":
    main()
