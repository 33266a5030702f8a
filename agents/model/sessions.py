"""Which ONNX Runtime sessions run a model folder: providers, options, and the shared-cache rewrite.

Kept apart from ModelRuntime, which only drives the sessions it is given: choosing them is load-time
work with its own rules (CUDA first when present; the rewrite of fuse_attention.py only where it is
known to compute right), and every failure here must name the file instead of surfacing mid-play.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from agents.model.fuse_attention import fuse_shared_cache
from agents.model.model_config import ModelLoadError

__all__ = ["CPU", "CUDA", "SHARED_CACHE_ORT", "Sessions", "choose_providers", "fused_sessions",
           "open_session", "session_options", "shared_cache_refusal", "version_tuple"]

log = logging.getLogger(__name__)
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
SHARED_CACHE_ORT = (1, 20)  # first onnxruntime whose CPU GroupQueryAttention the shared cache can use
Sessions = tuple[ort.InferenceSession, ort.InferenceSession]


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu), CPU always as the fallback."""
    available = ort.get_available_providers()
    if requested is None:
        return ([CUDA] if CUDA in available else []) + [CPU]
    missing = [p for p in requested if p not in available]
    if missing:
        raise ValueError(f"providers: {missing} not available in this onnxruntime (has {available})")
    return list(requested)


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Sequential, fully optimised, no spinning: agents share two cores with a timing thread, and ORT's
    spinning worker threads would steal it."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def open_session(path: Path, opts: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    """A session on the file as exported; a file ORT cannot load is a ModelLoadError naming it."""
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/... types
        raise ModelLoadError(f"{path}: onnxruntime cannot load it as an ONNX model ({exc})") from exc


def fused_sessions(base: Path, token: Path, opts: ort.SessionOptions, providers: list[str],
                   batch_size: int) -> Sessions | None:
    """Both graphs rewritten for the shared cache, or None: not on CPU, a batch (the CPU kernel feeds
    several new events after a past only for batch 1), not lean exports, or an onnxruntime without a
    right GroupQueryAttention on CPU (then the exported graphs run, as for any export). A file that is
    broken is left for open_session to report."""
    if providers[0] != CPU or batch_size != 1:
        return None
    if version_tuple(ort.__version__) < SHARED_CACHE_ORT:
        # 1.17 has no float32 kernel; 1.19 loads one that gets continued prompts wrong (logits off by
        # up to 10 on the fixtures); 1.20 and later match the exported graphs
        log.info("onnxruntime %s: the shared KV cache needs %s or later; running the graphs as exported",
                 ort.__version__, ".".join(map(str, SHARED_CACHE_ORT)))
        return None
    graphs = [fuse_shared_cache(base), fuse_shared_cache(token, token_graph=True)]
    if graphs[0] is None or graphs[1] is None:
        return None
    try:
        return (ort.InferenceSession(graphs[0], sess_options=opts, providers=providers),
                ort.InferenceSession(graphs[1], sess_options=opts, providers=providers))
    except Exception as exc:
        log.warning("%s: the shared-cache rewrite does not load in this onnxruntime (%s); running the "
                    "graphs as exported", base.parent.parent, exc)
        return None


def shared_cache_refusal(folder: str | Path) -> str:
    """Why cache_mode 'shared' cannot run `folder` here, naming a missing onnx package."""
    try:
        import onnx  # noqa: F401
        missing = ""
    except ImportError:
        missing = ": the onnx package is not installed (pip install onnx)"
    return (f"cache_mode 'shared' needs a lean export (training/export.py), the onnx package, CPU, "
            f"onnxruntime >= {'.'.join(map(str, SHARED_CACHE_ORT))} and batch_size 1; {folder} cannot "
            f"run on it here{missing} (see agents/model/fuse_attention.py)")


def version_tuple(text: str) -> tuple[int, ...]:
    """(major, minor) of a version string such as '1.20.1' or '1.21.0.dev20250101'."""
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
