"""Held-out loss of trained models, measured side by side on the same pieces.

Two measures, both cross-entropy per token in nats on the fixed held-out pieces (`Corpus.split` drawn
from the HOLDOUT_SOURCES files, the pieces every shipped model's card reports):

- **validation** — what the training loop prints and the card records: 4 batches of 4 random windows
  of `train_window` events (the same windows for every model, seeded as in `train`);
- **all events** — every event of every held-out piece once, in consecutive windows of `train_window`
  events: less noisy, since it does not depend on which 16 windows were drawn;
- **all events through ONNX Runtime** (`--runtime`, model folders) — the same through the agents'
  runtime: the loss of the shipped graphs as they are played (int8 activations included).

A model is a model folder (its checkpoint.pt, or else the weights read back from its ONNX graphs, see
training.recover) or a checkpoint file.

    python -m training.evaluate models/default models/.checkpoints/default.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from training.data import Corpus, WindowSampler, holdout_files, load_corpus, parse_sources, to_c
from training.model import MIDIModel
from training.train import CHECKPOINT_NAME, evaluate, model_from_checkpoint


def load_model(path: str | Path, from_onnx: bool = False) -> tuple[MIDIModel, str]:
    """The model at `path` and where its weights came from (checkpoint, or ONNX graphs: what an agent
    plays, int8-rounded for an int8 export)."""
    p = Path(path)
    if p.is_dir() and (from_onnx or not (p / CHECKPOINT_NAME).is_file()):
        import onnx

        from training.quantize import QUANT_KEY
        from training.recover import model_from_onnx

        meta = {m.key for m in onnx.load(str(p / "onnx" / "model_base.onnx")).metadata_props}
        return model_from_onnx(p), "int8 ONNX weights" if QUANT_KEY in meta else "ONNX weights"
    return model_from_checkpoint(p)[0].eval(), "checkpoint"


def validation_batches(val: Corpus, seq_len: int, batch: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """The training loop's validation windows (train(): WindowSampler(val, seq_len, seed + 1))."""
    vs = WindowSampler(val, seq_len, seed + 1)
    return [torch.from_numpy(vs.batch(batch)) for _ in range(4)]


@torch.no_grad()
def all_events_loss(model: MIDIModel, val: Corpus, seq_len: int) -> float:
    """Token-weighted loss over every event of every piece, windows of `seq_len` events."""
    model.eval()
    total, count = 0.0, 0
    for rows in val.pieces:
        for start in range(0, len(rows) - 1, seq_len - 1):  # windows overlap by one: every event predicted
            x = torch.from_numpy(rows[start : start + seq_len][None])
            if x.shape[1] < 2:
                continue
            n = int((x[:, 1:] != 0).sum())
            total += float(model.loss(x)) * n
            count += n
    return total / max(count, 1)


def runtime_loss(folder: str | Path, val: Corpus, seq_len: int) -> float:
    """`all_events_loss` through the agents' ONNX Runtime path (KV cache, int8 activations of an int8
    export): the loss of what an agent actually plays, to check the float measure against."""
    import numpy as np

    from agents.model.runtime import ModelRuntime

    rt = ModelRuntime(folder, intra_op_threads=1)
    total, count = 0.0, 0
    for rows in val.pieces:
        for start in range(0, len(rows) - 1, seq_len - 1):
            win = rows[start : start + seq_len]
            if len(win) < 2:
                continue
            rt.reset()
            rt.prefill(win[:1])
            for i in range(1, len(win)):
                for j in np.flatnonzero(win[i]):
                    logits = rt.token_logits(win[i][:j]).reshape(-1).astype(np.float64)
                    top = logits.max()
                    total += float(np.log(np.exp(logits - top).sum()) + top - logits[win[i][j]])
                    count += 1
                rt.prefill(win[i : i + 1])
    return total / max(count, 1)


def train_window(path: str | Path) -> int | None:
    p = Path(path)
    cfg = p / "config.json" if p.is_dir() else None
    if cfg and cfg.is_file():
        return json.loads(cfg.read_text()).get("train_window")
    return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path, help="model folders or checkpoint files")
    p.add_argument("--sources", default="bach,folk", help="corpus holding the held-out pieces")
    p.add_argument("--holdout", type=float, default=0.05)
    p.add_argument("--seq-len", type=int, default=None, help="window (default: train_window, 256)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--onnx", action="store_true", help="read folders' ONNX weights, not checkpoint.pt")
    p.add_argument("--runtime", action="store_true",
                   help="model folders: also the all-events loss through ONNX Runtime, as an agent runs it")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    sources, limits = parse_sources(a.sources)
    corpus = to_c(load_corpus(sources, limits=limits, workers=1))
    _, val = corpus.split(a.holdout, seed=0, among=holdout_files())
    print(f"held out: {len(val.pieces)} pieces, {val.events} events")
    results = []
    for path in a.models:
        model, origin = load_model(path, from_onnx=a.onnx)
        seq_len = a.seq_len or train_window(path) or 256
        v = evaluate(model, validation_batches(val, seq_len), bf16=False, device="cpu")
        full = all_events_loss(model, val, seq_len)
        results.append({"model": str(path), "weights": origin, "seq_len": seq_len, "validation": v,
                        "all_events": full})
        line = f"{path} ({origin}, window {seq_len}): validation {v:.4f}, all events {full:.4f}"
        if a.runtime and path.is_dir():
            results[-1]["runtime_all_events"] = rt = runtime_loss(path, val, seq_len)
            line += f", all events through ONNX Runtime {rt:.4f}"
        print(line, flush=True)
    if a.json:
        a.json.write_text(json.dumps({"pieces": len(val.pieces), "events": val.events, "results": results},
                                     indent=2))


if __name__ == "__main__":
    main()
