"""The model folders bench.model_speed times: the test fixture, the shipped model, random exports.

``tiny`` (the test fixture, a plain TorchScript export) and ``shipped`` (models/default) are on disk;
``small`` and ``medium`` are random weights exported once with our exporter (its default lean graphs)
and cached under ~/.cache/barcelona/bench/, as are int8 copies of an export (torch is imported only
when one is (re)built).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache" / "barcelona" / "bench"
SHAPES = {"small": {"layers": 4, "width": 128, "heads": 4, "ffn": 512},
          "medium": {"layers": 12, "width": 1024, "heads": 16, "ffn": 4096}}


def model_folder(name: str) -> Path:
    """The tiny fixture, the shipped model, or a random-weights export made once and kept in the cache."""
    if name == "tiny":
        return ROOT / "tests" / "fixtures" / "models" / "tiny_v2"
    if name == "shipped":
        return ROOT / "models" / "default"
    folder = CACHE / f"{name}-s0-lean"  # the exporter's default build; older caches were plain
    if not (folder / "onnx" / "model_token.onnx").exists():
        from training.export import export_model, random_model  # torch only when (re)building

        print(f"exporting random {name} model to {folder} (once) ...", flush=True)
        tmp = CACHE / f".tmp-{name}-{os.getpid()}"
        export_model(random_model(0, **SHAPES[name]), tmp, config_name=f"bench-{name}")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder


def int8_folder(src: Path) -> Path:
    """quantize_dynamic of both graphs (MatMul weights to int8), cached beside the fp32 export."""
    from training.quantize import quantize_int8

    folder = src.with_name(src.name + "-int8")
    if not (folder / "onnx" / "model_token.onnx").exists():
        print(f"quantising {src.name} to int8 (once) ...", flush=True)
        tmp = src.with_name(f".tmp-int8-{os.getpid()}")
        (tmp / "onnx").mkdir(parents=True, exist_ok=True)
        shutil.copy(src / "config.json", tmp / "config.json")
        for f in ("model_base.onnx", "model_token.onnx"):
            shutil.copy(src / "onnx" / f, tmp / "onnx" / f)
            quantize_int8(tmp / "onnx" / f)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
    return folder
