"""Rebuild a PyTorch model from an exported lean model folder (float32 or int8 weights).

A model folder shipped without its checkpoint can still be fine-tuned or re-exported: every weight of
the lean graphs is an initializer named after the torch parameter it came from (training.export), so
the state dict is read back from them. int8 weights come back dequantised ((q - zero point) x scale),
i.e. the weights the shipped graphs actually compute with, not the float32 ones they were rounded from.

    python -m training.recover models/default models/.checkpoints/default.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from training.model import LlamaSpec, MIDIModel


def _initializers(path: Path) -> dict[str, np.ndarray]:
    """Float weights of one graph by torch name, int8/uint8 ones dequantised."""
    import onnx
    from onnx import numpy_helper

    raw = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    out: dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if name.endswith("_quantized"):
            base = name.removesuffix("_quantized")
            scale, zero = raw[f"{base}_scale"], raw[f"{base}_zero_point"]
            out[base] = ((value.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)
        elif value.dtype == np.float32 and not name.endswith(("_scale", ".cos", ".sin")):
            out[name] = value
    return out


def _spec(cfg: dict) -> LlamaSpec:
    fields = LlamaSpec.__dataclass_fields__
    return LlamaSpec(**{k: v for k, v in cfg.items() if k in fields})


def model_from_onnx(folder: str | Path) -> MIDIModel:
    """The model a lean export in `folder` holds (config.json + onnx/model_{base,token}.onnx)."""
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    model = MIDIModel(_spec(config["net_config"]), _spec(config["net_token_config"]))
    weights = _initializers(folder / "onnx" / "model_base.onnx") | _initializers(folder / "onnx" /
                                                                                 "model_token.onnx")
    sd: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        t = torch.from_numpy(value.copy())
        if name.endswith("qkv_proj.weight"):  # stored as [q; k; v].T
            prefix = name.removesuffix("qkv_proj.weight")
            for part, w in zip(("q", "k", "v"), t.T.chunk(3, dim=0), strict=True):
                sd[f"{prefix}{part}_proj.weight"] = w.contiguous()
        elif name.endswith(("o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                            "mlp.down_proj.weight", "lm_head.weight")):  # MatMul weights are transposed
            sd[name] = t.T.contiguous()
        else:
            sd[name] = t
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise ValueError(f"{folder}: the graphs' weights do not fit config.json "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    from training.train import TrainConfig, save_checkpoint

    p = argparse.ArgumentParser(prog="python -m training.recover", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="exported model folder (config.json, onnx/)")
    p.add_argument("checkpoint", type=Path, help="checkpoint to write")
    a = p.parse_args(argv)
    model = model_from_onnx(a.folder)
    config = json.loads((a.folder / "config.json").read_text())
    cfg = TrainConfig(width=model.net.spec.hidden_size, layers=model.net.spec.num_hidden_layers,
                      heads=model.net.spec.num_attention_heads, ffn=model.net.spec.intermediate_size,
                      token_layers=model.net_token.spec.num_hidden_layers,
                      token_heads=model.net_token.spec.num_attention_heads,
                      token_ffn=model.net_token.spec.intermediate_size,
                      seq_len=int(config.get("train_window", TrainConfig.seq_len)))
    save_checkpoint(a.checkpoint, model, cfg, 0, [])
    print(f"wrote {a.checkpoint}")


if __name__ == "__main__":
    main()
