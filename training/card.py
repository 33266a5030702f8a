"""MODEL_CARD.md for a trained model: what it learned from, how long, how well, and how fast it plays.

The metrics compare generated music with held-out corpus pieces on three measures used in symbolic
music evaluation (MusPy's definitions): pitch-class entropy (how many different pitch classes are used,
in bits), scale consistency (share of notes in the best-fitting major/minor scale) and groove
consistency (how alike the onset patterns of consecutive bars are). They cannot say a model is good,
but a broken one shows at once (random notes: entropy 3.58 bits, scale consistency ≈ 0.6).
Generation runs through the exported ONNX files and the agent runtime, so the card's speed is the
speed an agent gets.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agents.model.runtime import ModelRuntime
from agents.model.vocab import VOCAB_V2
from training.data import DRUM_CHANNEL, Corpus
from training.train import TrainConfig, TrainResult

_V = VOCAB_V2
_NOTE = _V.event_ids["note"]
_MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
SLOTS_PER_BAR = 64  # 4/4 bars of 16ths: chorales and most folk songs here


def _allowed_masks() -> tuple[np.ndarray, dict[int, list[np.ndarray]]]:
    """SkyTNT's generation masks: first an event type (or EOS), then each parameter's own block."""
    first = np.zeros(_V.vocab_size, bool)
    first[list(_V.event_ids.values())] = True
    first[2] = True
    params: dict[int, list[np.ndarray]] = {}
    for name, eid in _V.event_ids.items():
        masks = []
        for pname in _V.events[name]:
            m = np.zeros(_V.vocab_size, bool)
            base = _V.param_base[pname]
            m[base : base + _V.param_size[pname]] = True
            masks.append(m)
        params[eid] = masks
    return first, params


def _sample(logits: np.ndarray, mask: np.ndarray, rng: np.random.Generator, temp: float, top_p: float,
            top_k: int) -> int:
    z = np.where(mask, logits / temp, -np.inf)
    idx = np.argpartition(-z, top_k)[:top_k] if top_k < len(z) else np.arange(len(z))
    idx = idx[np.argsort(-z[idx])]
    p = np.exp(z[idx] - z[idx[0]])
    p /= p.sum()
    keep = (np.cumsum(p) - p) <= top_p
    p = np.where(keep, p, 0.0)
    return int(idx[rng.choice(len(idx), p=p / p.sum())])


def generate(rt: ModelRuntime, events: int, seed: int, temp: float = 1.0, top_p: float = 0.98,
             top_k: int = 20) -> tuple[np.ndarray, float]:
    """Rows sampled from BOS (SkyTNT's app_onnx loop and defaults), and events per second."""
    first, params = _allowed_masks()
    rng = np.random.default_rng(seed)
    rt.reset()
    rt.prefill(np.array(_V.bos_row()))
    rows = []
    t = time.perf_counter()
    for _ in range(events):
        row = np.zeros(8, np.int64)
        row[0] = _sample(rt.token_logits(row[:0])[0], first, rng, temp, top_p, top_k)
        if row[0] == 2:
            break
        for j, mask in enumerate(params[int(row[0])], start=1):
            row[j] = _sample(rt.token_logits(row[:j])[0], mask, rng, temp, top_p, top_k)
        rows.append(row)
        rt.prefill(row)
    seconds = time.perf_counter() - t
    return np.array(rows, np.int64).reshape(-1, 8), len(rows) / max(seconds, 1e-9)


def _notes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(absolute 1/16-beat onset, pitch) of the pitched notes; drums carry no pitch class."""
    decoded = [_V.decode(r) for r in rows]
    beat, onsets, pitches = 0, [], []
    for ev in decoded:
        if ev is None:
            continue
        beat += ev[1]
        if ev[0] == "note" and ev[4] != DRUM_CHANNEL:
            onsets.append(16 * beat + ev[2])
            pitches.append(ev[5])
    return np.array(onsets, int), np.array(pitches, int)


def metrics(rows: np.ndarray) -> dict[str, float]:
    """Pitch-class entropy (bits), scale consistency and groove consistency of one piece."""
    onsets, pitches = _notes(rows)
    if len(pitches) < 2:
        return {"pitch_class_entropy": math.nan, "scale_consistency": math.nan,
                "groove_consistency": math.nan, "notes": float(len(pitches))}
    hist = np.bincount(pitches % 12, minlength=12) / len(pitches)
    nz = hist[hist > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    scale = max(float(hist[np.roll(s, k)].sum()) for s in (_MAJOR_SCALE, _MINOR_SCALE) for k in range(12))
    bars = onsets // SLOTS_PER_BAR
    patterns = np.zeros((int(bars.max()) + 1, SLOTS_PER_BAR), bool)
    patterns[bars, onsets % SLOTS_PER_BAR] = True
    if len(patterns) > 1:
        groove = 1.0 - float(np.mean(np.logical_xor(patterns[1:], patterns[:-1]).mean(axis=1)))
    else:
        groove = math.nan
    return {"pitch_class_entropy": entropy, "scale_consistency": scale, "groove_consistency": groove,
            "notes": float(len(pitches))}


def _mean(items: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = items[0].keys() if items else []
    return {k: float(np.nanmean([m[k] for m in items])) for k in keys}


def checkpoint_seq_len(checkpoint: str | Path) -> int | None:
    """Events per training window of the run that wrote `checkpoint` (ours only; None otherwise)."""
    import torch

    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    seq_len = ckpt.get("config", {}).get("seq_len") if isinstance(ckpt, dict) else None
    return seq_len if isinstance(seq_len, int) and not isinstance(seq_len, bool) else None


def restore_totals(result: TrainResult, checkpoint: str | Path) -> None:
    """Steps, time, events and the loss history of the run that wrote `checkpoint` (ours only), so a
    card written by `--export-only` describes the training, not the zero-step export."""
    import torch

    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "history" not in ckpt:
        return
    totals = ckpt.get("totals", {})
    result.history = list(ckpt["history"]) or result.history
    result.steps = int(ckpt.get("step", result.steps))
    result.events = int(totals.get("events", result.events))
    result.tokens = int(totals.get("tokens", result.tokens))
    result.seconds = float(totals.get("seconds", result.seconds))
    result.bf16 = bool(totals.get("bf16", result.bf16))


def _plot(history: list[dict[str, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # optional: the table in the card says the same
        return False
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    steps = [h["step"] for h in history]
    ax.plot(steps, [h["loss"] for h in history], label="train")
    val = [h.get("val_loss", math.nan) for h in history]
    if not all(math.isnan(v) for v in val):
        ax.plot(steps, val, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy per token")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_card(folder: str | Path, result: TrainResult, cfg: TrainConfig, corpus: Corpus, val: Corpus, *,
               argv: Sequence[str], sources: Sequence[str], midi_dir: Path | None, to_c: bool,
               samples: int = 4, sample_events: int = 300, int8: bool = False) -> Path:
    """Measure the exported model and write MODEL_CARD.md (and loss.png when matplotlib is there)."""
    folder = Path(folder)
    rt = ModelRuntime(folder, intra_op_threads=1)
    gen, speeds = [], []
    for s in range(samples):
        rows, speed = generate(rt, sample_events, seed=s)
        gen.append(metrics(rows))
        speeds.append(speed)
    ref = [metrics(p) for p in (val.pieces or corpus.pieces)[:50]]
    gen_m, ref_m = (_mean(gen) if gen else {}), _mean(ref)
    model = result.model
    n_params = sum(p.numel() for p in model.parameters())
    b, t = model.net.spec, model.net_token.spec
    plotted = bool(result.history) and _plot(result.history, folder / "loss.png")
    hist = result.history
    pick = hist if len(hist) <= 12 else [hist[round(i * (len(hist) - 1) / 11)] for i in range(12)]
    lines = [
        f"# Model card: {folder.name}",
        "",
        "A small SkyTNT midi-model (V2 tokenizer, optimise_midi) trained by `python -m training`; loads in "
        "Barcelona's agents and in SkyTNT's own app (the graphs use ONNX Runtime's fused operators; "
        "`training.export.export_model(..., lean=False)` writes the portable TorchScript graph of the same "
        "weights). Files: `config.json`, `onnx/model_base.onnx`, `onnx/model_token.onnx`.",
        "",
        "## Reproduce",
        "",
        f"    python -m training {' '.join(argv)}",
        "",
        "## Data",
        "",
        f"- music21 corpus sources: {', '.join(sources) or 'none'}"
        + (f"; MIDI folder `{midi_dir}`" if midi_dir else ""),
        f"- {len(corpus.pieces)} pieces, {corpus.events} events; {len(val.pieces)} pieces held out for "
        "validation",
        "- each voice on its own channel and track (SATB chorales: 4 parts)",
        "- augmentation: " + ("every piece transposed to C major / A minor" if to_c else
                              f"random transposition ±{cfg.transpose} semitones per window (drums kept)"),
        "",
        "## Model",
        "",
        "| part | layers | width | heads | ffn |",
        "|---|---|---|---|---|",
        f"| base (event) | {b.num_hidden_layers} | {b.hidden_size} | {b.num_attention_heads} | "
        f"{b.intermediate_size} |",
        f"| token | {t.num_hidden_layers} | {t.hidden_size} | {t.num_attention_heads} | "
        f"{t.intermediate_size} |",
        "",
        f"{n_params / 1e6:.2f} M parameters; folder size {_folder_bytes(folder) / 1e6:.1f} MB ("
        + ("int8 weights by ONNX Runtime's dynamic quantisation, float32 in and out; trained in float32)."
           if int8 else "float32)."),
        "",
        "## Training",
        "",
        f"- {result.steps} steps in {result.seconds / 60:.1f} min on {result.device}"
        f" ({'bf16 autocast' if result.bf16 else 'float32'}, {cfg.threads or 'default'} threads)",
        f"- batch {cfg.batch} windows of up to {cfg.seq_len} events; AdamW, peak lr {cfg.lr:g}, cosine "
        "over the time budget",
        f"- trained on {result.events} events = {result.tokens} tokens (pads excluded)",
        f"- final train loss {_fmt(result.final_loss)}, validation loss {_fmt(result.final_val_loss)} "
        "(cross-entropy per token, nats)",
        "",
        "| step | minutes | train loss | validation loss | events/s |",
        "|---|---|---|---|---|",
        *(f"| {int(h['step'])} | {h['seconds'] / 60:.1f} | {_fmt(h['loss'])} | {_fmt(h.get('val_loss'))} | "
          f"{_fmt(h.get('events_per_s'), 0)} |" for h in pick),
        "",
        *(["![loss curve](loss.png)", ""] if plotted else []),
        "## Metrics",
        "",
        f"{samples} pieces of up to {sample_events} events sampled from BOS (temperature 1, top-p 0.98, "
        f"top-k 20) against {len(ref)} held-out corpus pieces:",
        "",
        "| measure | generated | corpus |",
        "|---|---|---|",
        *(f"| {k.replace('_', ' ')} | {_fmt(gen_m.get(k))} | {_fmt(ref_m.get(k))} |"
          for k in ("pitch_class_entropy", "scale_consistency", "groove_consistency")),
        "",
        f"Generation speed (ONNX Runtime, 1 thread, KV cache, sampling in numpy): "
        f"{np.mean(speeds):.0f} events/s." if speeds else "",
        "",
        "## Limits",
        "",
        "Trained on chorales and folk songs only: it plays tonal, mostly diatonic, 4/4 and 3/4 music in "
        "up to four voices and knows nothing of drums or jazz harmony; the chord bias at decode time "
        "steers it to the conductor's chords. Fine-tune on your own MIDI with `--midi-dir` and `--init`.",
        "",
    ]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
