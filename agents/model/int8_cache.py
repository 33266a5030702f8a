"""`engine.quantize: int8`: a user's float32 SkyTNT export, quantised once and cached, never touched.

A big model decoding one event reads every weight once, so it is bound by memory bandwidth: int8
weights read a quarter of the bytes (a medium-shaped export ran ~4x the events per CPU-second of its
float32 graph in bench/model_speed). The quantised copy goes to a cache folder keyed by the export's
files (their sizes, modification times and first megabyte), so a second agent, or the next run,
loads it at once; the user's folder is only read.

How close it plays to the float32 model is measured once, when the copy is made, on a real prompt
(the tokens of a Bach chorale, agents/model/prompts/): the share of token positions where both pick
the same most likely token (top-1 agreement) and the mean KL divergence of int8's distribution from
float32's, teacher-forced through the prompt. The figures are kept beside the copy and logged at
every load, so a user sees what the speed costs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agents.model.model_config import (
    BASE_FILE,
    CONFIG_FILE,
    TOKEN_FILE,
    model_paths,
    onnx_metadata,
    read_tokenizer_config,
)
from agents.model.quantize import RECIPE

AGREEMENT_FILE = "int8_agreement.json"
PROMPTS = Path(__file__).parent / "prompts"
MIN_AGREEMENT = 0.85  # below this the log says the copy plays noticeably differently


def cache_root() -> Path:
    """$BARCELONA_CACHE, else $XDG_CACHE_HOME/barcelona, else ~/.cache/barcelona."""
    env = os.environ.get("BARCELONA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "barcelona"


def is_int8(folder: Path) -> bool:
    """Whether an export's graphs already carry int8 weights (our exporter's --int8 records it)."""
    from agents.model.quantize import QUANT_KEY

    _, base, _ = model_paths(folder)
    return QUANT_KEY in onnx_metadata(base)


def fingerprint(folder: Path) -> str:
    """Cheap identity of an export: name, size, mtime and the first MiB of each file it loads from."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = path.stat()
        h.update(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
        with path.open("rb") as f:
            h.update(f.read(1 << 20))
    return h.hexdigest()[:20]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One process quantises a given export at a time; the others wait and then find it cached."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def int8_model(folder: str | Path, root: Path | None = None) -> tuple[Path, dict[str, float]]:
    """The int8 copy of ``folder`` (made and measured on first use) and its agreement with float32.

    An export that is int8 already is returned as it is, with no figures."""
    src = Path(folder)
    model_paths(src)  # a missing file is named before anything is written
    if is_int8(src):
        return src, {}
    root = root or cache_root()
    dest = root / "int8" / f"{src.name}-{fingerprint(src)}-{RECIPE}"
    with _locked(root / "int8" / f".{dest.name}.lock"):
        figures = dest / AGREEMENT_FILE
        if not figures.is_file():
            _quantise_copy(src, dest)
            figures.write_text(json.dumps(agreement(src, dest), indent=1) + "\n")
    return dest, json.loads(figures.read_text())


def _quantise_copy(src: Path, dest: Path) -> None:
    from agents.model.quantize import quantize_int8

    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(src, tmp)
        for name in (BASE_FILE, TOKEN_FILE):
            quantize_int8(tmp / name)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def prompt_rows(folder: Path) -> np.ndarray:
    """The chorale prompt in the export's tokenizer version."""
    version = read_tokenizer_config(folder / CONFIG_FILE).version
    return np.load(PROMPTS / f"chorale_{version}.npy")


def agreement(fp32_folder: Path, int8_folder: Path, start: int = 16) -> dict[str, float]:
    """Top-1 agreement and mean KL(float32 || int8) of the token model at every position of the
    prompt's rows after ``start``, both models fed the same (teacher-forced) rows."""
    from agents.model.runtime import ModelRuntime

    rows = prompt_rows(fp32_folder)
    a_rt, b_rt = ModelRuntime(fp32_folder, max_events=len(rows) + 1), ModelRuntime(int8_folder,
                                                                                  max_events=len(rows) + 1)
    for rt in (a_rt, b_rt):
        rt.prefill(rows[:start])
    same, kls = 0, []
    for j in range(start, len(rows)):
        width = int(np.count_nonzero(rows[j])) or 1
        for i in range(width):
            a = a_rt.token_logits(rows[j, :i]).astype(np.float64)[0]
            b = b_rt.token_logits(rows[j, :i]).astype(np.float64)[0]
            pa, pb = _softmax(a), _softmax(b)
            kls.append(float(np.sum(pa * (np.log(pa + 1e-30) - np.log(pb + 1e-30)))))
            same += int(np.argmax(a) == np.argmax(b))
        for rt in (a_rt, b_rt):
            rt.prefill(rows[j : j + 1])
    n = len(kls)
    return {"positions": float(n), "top1_agreement": same / n, "mean_kl": float(np.mean(kls))}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def describe(folder: Path, figures: dict[str, float]) -> str:
    """The one line an agent logs when it loads the copy."""
    if not figures:
        return f"{folder}: int8 already"
    agree = figures["top1_agreement"]
    note = "" if agree >= MIN_AGREEMENT else f" (below {MIN_AGREEMENT:.0%}: it plays noticeably differently)"
    return (f"int8 copy {folder}: same top token as float32 at {agree:.1%} of "
            f"{figures['positions']:.0f} positions of a chorale, mean KL {figures['mean_kl']:.4f}{note}")


def folder_to_load(model: str, quantize: str) -> tuple[str, str]:
    """The folder an agent loads for `model` at `quantize` ("none" or "int8"), and the line to log
    about it ("" for none): the int8 copy is made and measured on first use."""
    if quantize != "int8":
        return model, ""
    folder, figures = int8_model(model)
    return str(folder), describe(folder, figures)
