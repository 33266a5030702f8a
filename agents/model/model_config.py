"""What a model folder must hold, read and checked before any inference runs.

A user points an agent at their own SkyTNT export, so every way it can be wrong (missing file, a
file that is not ONNX, swapped or foreign graphs, a tokenizer that does not match the vocabulary)
must fail at load time with the path and field named, not later as an ONNX shape error mid-performance.
Shapes (layers, heads, head_dim, width, vocab) are read from the graphs, which are what actually runs;
config.json contributes only the tokenizer version and flag, and in our own exports the training window
(its other fields are not authoritative, see docs/model_format.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

CONFIG_FILE = "config.json"
BASE_FILE = "onnx/model_base.onnx"
TOKEN_FILE = "onnx/model_token.onnx"
MAX_TOKEN_SEQ = 8
VOCAB_SIZES = {"v1": 3239, "v2": 3406}
_PAST = re.compile(r"past_key_values\.(\d+)\.(key|value)")


class ModelLoadError(ValueError):
    """A model folder is missing a file or holds something other than a SkyTNT-format export."""


@dataclass(frozen=True)
class StackShape:
    """One Llama stack as the ONNX graph declares it; heads and head_dim are static there."""

    layers: int
    heads: int
    head_dim: int


@dataclass(frozen=True)
class ModelInfo:
    folder: Path
    tokenizer_version: str
    optimise_midi: bool
    config_name: str | None
    vocab_size: int
    n_embd: int
    kv_cache: bool  # False: the pre-2024-10 export, recomputed from scratch every event
    base: StackShape
    token: StackShape

    @property
    def base_path(self) -> Path:
        return self.folder / BASE_FILE

    @property
    def token_path(self) -> Path:
        return self.folder / TOKEN_FILE


@dataclass(frozen=True)
class TokenizerConfig:
    version: str
    optimise_midi: bool
    config_name: str | None
    # events per training window, where the exporter recorded it (ours do; SkyTNT's configs do not):
    # how much context the model ever learnt to use, so an agent need not keep more (worker_config.py)
    train_window: int | None = None


def model_paths(folder: str | Path) -> tuple[Path, Path, Path]:
    """(config.json, model_base.onnx, model_token.onnx), each checked to exist."""
    root = Path(folder)
    if not root.is_dir():
        raise ModelLoadError(f"model folder {root} does not exist or is not a directory")
    paths = (root / CONFIG_FILE, root / BASE_FILE, root / TOKEN_FILE)
    for path in paths:
        if not path.is_file():
            raise ModelLoadError(f"model folder {root} has no {path.relative_to(root)} (expected {path})")
    return paths


def read_tokenizer_config(path: Path) -> TokenizerConfig:
    """Only `tokenizer.version`, `tokenizer.optimise_midi` and our exporter's `train_window` are trusted:
    Hugging Face saves the event tables with sorted keys, which is not token-id order."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: top level must be a JSON object")
    tok = raw.get("tokenizer")
    if not isinstance(tok, dict):
        raise ModelLoadError(f"{path}: field 'tokenizer' missing or not an object")
    version = tok.get("version")
    if version not in VOCAB_SIZES:
        raise ModelLoadError(f"{path}: field 'tokenizer.version' must be one of {sorted(VOCAB_SIZES)}, "
                             f"got {version!r}")
    optimise = tok.get("optimise_midi", False)
    if not isinstance(optimise, bool):
        raise ModelLoadError(f"{path}: field 'tokenizer.optimise_midi' must be true or false, "
                             f"got {optimise!r}")
    name = raw.get("config_name")
    window = raw.get("train_window")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)
                               or not 2 <= window <= 1 << 16):
        raise ModelLoadError(f"{path}: field 'train_window' must be an int in 2..65536 (events per "
                             f"training window), got {window!r}")
    return TokenizerConfig(version, optimise, name if isinstance(name, str) else None, window)


@dataclass(frozen=True)
class _Port:
    name: str
    type: str
    shape: tuple[Any, ...]  # int for static dims, str or None for dynamic ones


def _ports(args: list[Any]) -> dict[str, _Port]:
    return {a.name: _Port(a.name, a.type, tuple(a.shape)) for a in args}


def _static(dim: Any) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _expect(path: Path, port: _Port | None, what: str, kind: str, dtype: str, rank: int) -> _Port:
    if port is None:
        raise ModelLoadError(f"{path}: no {kind} '{what}' — not a SkyTNT {path.name}?")
    if port.type != dtype or len(port.shape) != rank:
        raise ModelLoadError(f"{path}: {kind} '{port.name}' must be {dtype} of rank {rank}, "
                             f"found {port.type} {list(port.shape)}")
    return port


def _stack(path: Path, inputs: dict[str, _Port], outputs: dict[str, _Port]) -> StackShape | None:
    """Layers/heads/head_dim from the past_key_values inputs; None when there are none (legacy)."""
    layers: dict[int, set[str]] = {}
    for name in inputs:
        m = _PAST.fullmatch(name)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not layers:
        return None
    n = max(layers) + 1
    for i in range(n):
        for kv in ("key", "value"):
            if kv not in layers.get(i, ()):
                raise ModelLoadError(f"{path}: input 'past_key_values.{i}.{kv}' missing")
            _expect(path, outputs.get(f"present.{i}.{kv}"), f"present.{i}.{kv}", "output", "tensor(float)", 4)
    first = _expect(path, inputs["past_key_values.0.key"], "past_key_values.0.key", "input",
                    "tensor(float)", 4)
    heads, head_dim = _static(first.shape[1]), _static(first.shape[3])
    if heads is None or head_dim is None:
        raise ModelLoadError(f"{path}: input 'past_key_values.0.key' needs static heads and head_dim "
                             f"(dims 1 and 3), found {list(first.shape)}")
    return StackShape(n, heads, head_dim)


def inspect_graphs(folder: Path, tok: TokenizerConfig, base_in: list[Any], base_out: list[Any],
                   token_in: list[Any], token_out: list[Any]) -> ModelInfo:
    """Check both graphs' signatures (from `session.get_inputs()` etc.) against SkyTNT's format."""
    bpath, tpath = folder / BASE_FILE, folder / TOKEN_FILE
    bi, bo, ti, to = _ports(base_in), _ports(base_out), _ports(token_in), _ports(token_out)
    x = _expect(bpath, bi.get("x"), "x", "input", "tensor(int64)", 3)
    if _static(x.shape[2]) not in (None, MAX_TOKEN_SEQ):
        raise ModelLoadError(f"{bpath}: input 'x' dim 2 (token_seq) must be {MAX_TOKEN_SEQ}, "
                             f"found {x.shape[2]}")
    hidden = _expect(bpath, bo.get("hidden"), "hidden", "output", "tensor(float)", 3)
    base, token = _stack(bpath, bi, bo), _stack(tpath, ti, to)
    if (base is None) != (token is None):
        has, lacks = (bpath, tpath) if base else (tpath, bpath)
        raise ModelLoadError(f"{has} has past_key_values inputs but {lacks} has none: the two files come "
                             "from different export formats")
    kv = base is not None
    _expect(tpath, ti.get("hidden"), "hidden", "input", "tensor(float)", 3 if kv else 2)
    _expect(tpath, ti.get("x"), "x", "input", "tensor(int64)", 2)
    y = _expect(tpath, to.get("y"), "y", "output", "tensor(float)", 3)
    vocab = _static(y.shape[2])
    if vocab != VOCAB_SIZES[tok.version]:
        raise ModelLoadError(f"{tpath}: output 'y' has vocabulary {y.shape[2]} but config.json field "
                             f"'tokenizer.version' = {tok.version!r} needs {VOCAB_SIZES[tok.version]}")
    n_embd = _static(hidden.shape[2])
    tok_hidden = _static(ti["hidden"].shape[-1])
    if n_embd is None or (tok_hidden is not None and tok_hidden != n_embd):
        raise ModelLoadError(f"{bpath} output 'hidden' width {hidden.shape[2]} does not match {tpath} "
                             f"input 'hidden' width {ti['hidden'].shape[-1]}")
    legacy = StackShape(0, 0, 0)
    return ModelInfo(folder, tok.version, tok.optimise_midi, tok.config_name, vocab, n_embd, kv,
                     base or legacy, token or legacy)


_METADATA_FIELD = 14  # ModelProto.metadata_props (onnx.proto): repeated StringStringEntryProto


def onnx_metadata(path: Path) -> dict[str, str]:
    """An ONNX file's metadata_props, read by skipping over everything else in the file.

    onnx.load reads the whole graph, weights included: 1.6 GB of memory for a medium SkyTNT export,
    on every load, only to read a few strings. A ModelProto is a sequence of tagged fields, so the
    graph (one length-delimited field) can be seeked past. A file that is not a protobuf gives {}."""
    def varint(f: BinaryIO) -> int | None:
        shift = value = 0
        while True:
            b = f.read(1)
            if not b:
                return None
            value |= (b[0] & 0x7F) << shift
            if b[0] < 0x80:
                return value
            shift += 7
            if shift > 63:
                return None

    def entry(data: bytes) -> tuple[str, str]:
        fields: dict[int, str] = {}
        i = 0
        while i < len(data):
            key, i = data[i], i + 1  # keys 1 and 2 (length-delimited): one byte each
            n = shift = 0
            while True:
                b, i = data[i], i + 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            fields[key >> 3], i = data[i : i + n].decode("utf-8", "replace"), i + n
        return fields.get(1, ""), fields.get(2, "")

    props: dict[str, str] = {}
    try:
        with path.open("rb") as f:
            while (key := varint(f)) is not None:
                field, wire = key >> 3, key & 7
                if wire == 0:
                    if varint(f) is None:
                        break
                elif wire == 1:
                    f.seek(8, 1)
                elif wire == 5:
                    f.seek(4, 1)
                elif wire == 2:
                    n = varint(f)
                    if n is None:
                        break
                    if field == _METADATA_FIELD:
                        k, v = entry(f.read(n))
                        props[k] = v
                    else:
                        f.seek(n, 1)
                else:
                    return {}
    except (OSError, IndexError):
        return {}
    return props
