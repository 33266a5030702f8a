"""The training loop: random event windows, AdamW, cosine learning rate over a wall-clock budget.

The budget is time, not steps, because the question a user asks is "what is the best model I get in
20 minutes on this machine"; the cosine schedule therefore runs on the fraction of the budget used
(or of `max_steps`, whichever is further along), so it always anneals to the end however fast the
machine is. bf16 autocast is chosen by measuring both on the first batches ('auto'), since it is
1.4x faster on some CPUs and slower on others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from training.data import Corpus, WindowSampler
from training.export import vocab_size
from training.model import LlamaSpec, MIDIModel, skytnt_specs


@dataclass
class TrainConfig:
    """Model shape and optimisation settings; the defaults are the shipped model's."""

    width: int = 128
    layers: int = 4
    heads: int = 4
    ffn: int | None = None  # 4 x width
    token_layers: int = 1
    token_heads: int = 2
    token_ffn: int | None = None  # 2 x width
    seq_len: int = 256
    batch: int = 4
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 30
    weight_decay: float = 0.01
    minutes: float = 20.0
    max_steps: int | None = None
    seed: int = 0
    threads: int | None = None
    bf16: str = "auto"  # auto | on | off
    transpose: int = 5  # random transposition range in semitones; 0 = off
    eval_every: int = 100
    checkpoint: Path | None = None
    checkpoint_every_s: float = 120.0
    init: Path | None = None


@dataclass
class TrainResult:
    model: MIDIModel
    steps: int
    seconds: float
    events: int  # non-pad event rows trained on
    tokens: int  # non-pad token ids trained on
    history: list[dict[str, float]] = field(default_factory=list)  # step, seconds, loss, val_loss, lr
    bf16: bool = False
    device: str = "cpu"

    @property
    def final_loss(self) -> float:
        losses = [h["loss"] for h in self.history[-5:]]
        return float(np.mean(losses)) if losses else float("nan")

    @property
    def final_val_loss(self) -> float | None:
        vals = [h["val_loss"] for h in self.history if not math.isnan(h.get("val_loss", math.nan))]
        return vals[-1] if vals else None


def build_model(cfg: TrainConfig) -> MIDIModel:
    net, tok = skytnt_specs(vocab_size("v2"), cfg.layers, cfg.heads, cfg.width, cfg.ffn or 4 * cfg.width,
                            cfg.token_layers, cfg.token_heads, cfg.token_ffn or 2 * cfg.width)
    model = MIDIModel(net, tok)
    model.init_random(cfg.seed)
    with torch.no_grad():  # norms start at 1 for training (init_random jitters them for export tests)
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
    return model


def _state_dict_of(ckpt: object) -> dict[str, torch.Tensor]:
    """Our checkpoint, a Lightning checkpoint of SkyTNT's train.py, or a bare state dict."""
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        return ckpt["model"]
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        raise ValueError("checkpoint: expected a dict of tensors")
    return {k.removeprefix("model."): v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}


CHECKPOINT_NAME = "checkpoint.pt"  # the weights shipped inside a model folder, for fine-tuning


def checkpoint_path(path: str | Path) -> Path:
    """A checkpoint file as given, or the one inside a model folder; FileNotFoundError (one line,
    naming the path) when there is none."""
    p = Path(path)
    if p.is_dir():
        ckpt = p / CHECKPOINT_NAME
        if not ckpt.is_file():
            raise FileNotFoundError(f"{p}: model folder has no {CHECKPOINT_NAME} to fine-tune from "
                                    f"(python -m training.recover {p} {ckpt} rebuilds one from the ONNX)")
        return ckpt
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file or model folder")
    return p


def model_from_checkpoint(path: str | Path) -> tuple[MIDIModel, dict]:
    """Rebuild the model a checkpoint (or a model folder's checkpoint.pt) holds; shapes come from the
    weights (SkyTNT's head counts: 64-wide heads in the base, a quarter as many in the token model)
    unless our checkpoint names them."""
    path = checkpoint_path(path)
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    sd = _state_dict_of(ckpt)
    if isinstance(ckpt, dict) and "specs" in ckpt:
        net, tok = (LlamaSpec(**ckpt["specs"][k]) for k in ("net", "net_token"))
    else:
        vocab, width = sd["net.embed_tokens.weight"].shape

        def spec(prefix: str, heads: int) -> LlamaSpec:
            layers = len({k.split(".")[2] for k in sd if k.startswith(f"{prefix}.layers.")})
            inner = sd[f"{prefix}.layers.0.mlp.gate_proj.weight"].shape[0]
            return LlamaSpec(vocab, width, heads, layers, inner)

        heads = max(1, width // 64)
        net, tok = spec("net", heads), spec("net_token", max(1, heads // 4))
    model = MIDIModel(net, tok)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if [k for k in missing if not k.endswith("inv_freq")] or unexpected:
        raise ValueError(f"{path}: weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model, ckpt if isinstance(ckpt, dict) else {}


def save_checkpoint(path: Path, model: MIDIModel, cfg: TrainConfig, step: int, history: list,
                    **totals: float) -> None:
    """`totals` (events, tokens, seconds, ...) let `--export-only` write a complete card later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    cfg_dict = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    torch.save({"model": model.state_dict(), "step": step, "config": cfg_dict, "history": history,
                "totals": totals, "specs": {"net": asdict(model.net.spec),
                                            "net_token": asdict(model.net_token.spec)}}, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a truncated checkpoint


def _lr(cfg: TrainConfig, step: int, progress: float) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _choose_bf16(model: MIDIModel, batch: torch.Tensor, device: str) -> bool:
    """Time a forward+backward with and without bf16 autocast on a slice of a batch; keep the faster."""
    batch = batch[:2, :64]
    times = {}
    for use in (False, True):
        best = math.inf
        for _ in range(2):
            t = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16, enabled=use):
                loss = model.loss(batch)
            loss.backward()
            best = min(best, time.perf_counter() - t)
        times[use] = best
    model.zero_grad(set_to_none=True)
    return times[True] < 0.9 * times[False]


@torch.no_grad()
def evaluate(model: MIDIModel, batches: list[torch.Tensor], bf16: bool, device: str) -> float:
    model.eval()
    losses = []
    for b in batches:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            losses.append(float(model.loss(b)))
    model.train()
    return float(np.mean(losses))


def train(corpus: Corpus, cfg: TrainConfig, val: Corpus | None = None,
          report: Callable[[str], None] = print) -> TrainResult:
    """Train until the time budget or max_steps runs out; returns the model in eval mode."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.init:
        model, _ = model_from_checkpoint(cfg.init)
        report(f"init from {cfg.init}")
    else:
        model = build_model(cfg)
    model.to(device).train()
    sampler = WindowSampler(corpus, cfg.seq_len, cfg.seed, cfg.transpose)
    val_batches: list[torch.Tensor] = []
    if val is not None and val.pieces:
        vs = WindowSampler(val, cfg.seq_len, cfg.seed + 1)
        val_batches = [torch.from_numpy(vs.batch(cfg.batch)).to(device) for _ in range(4)]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    if cfg.bf16 == "auto":
        bf16 = _choose_bf16(model, torch.from_numpy(sampler.batch(cfg.batch)).to(device), device)
    else:
        bf16 = cfg.bf16 == "on"
    n_params = sum(p.numel() for p in model.parameters())
    report(f"model {n_params / 1e6:.2f} M parameters, device {device}, bf16 {bf16}, "
           f"threads {torch.get_num_threads()}, train {len(corpus.pieces)} pieces / {corpus.events} events")
    budget = cfg.minutes * 60.0
    history: list[dict[str, float]] = []
    events = tokens = step = 0
    start = last_ckpt = last_report = time.perf_counter()
    window_events, window_t, recent = 0, start, []
    while True:
        elapsed = time.perf_counter() - start
        progress = max(elapsed / budget if budget > 0 else 1.0,
                       step / cfg.max_steps if cfg.max_steps else 0.0)
        if progress >= 1.0:
            break
        lr = _lr(cfg, step, progress)
        for g in opt.param_groups:
            g["lr"] = lr
        x = torch.from_numpy(sampler.batch(cfg.batch)).to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        n_ev = int((x[:, 1:, 0] != 0).sum())
        events += n_ev
        tokens += int((x[:, 1:] != 0).sum())
        window_events += n_ev
        recent.append(float(loss.detach()))
        now = time.perf_counter()
        if step % cfg.eval_every == 0 or now - last_report > 30:
            val_loss = evaluate(model, val_batches, bf16, device) if val_batches else math.nan
            rate = window_events / max(now - window_t, 1e-9)
            left = (1 - progress) * (budget if budget > 0 else 0)
            if cfg.max_steps:
                left = min(left or math.inf, (cfg.max_steps - step) * (now - start) / step)
            history.append({"step": step, "seconds": now - start, "loss": float(np.mean(recent)),
                            "val_loss": val_loss, "lr": lr, "events_per_s": rate})
            report(f"step {step:6d}  loss {np.mean(recent):.4f}  val {val_loss:.4f}  lr {lr:.2e}  "
                   f"{rate:6.0f} events/s  elapsed {(now - start) / 60:5.1f} min  ETA {left / 60:5.1f} min")
            recent, window_events, window_t, last_report = [], 0, now, now
        if cfg.checkpoint and now - last_ckpt > cfg.checkpoint_every_s:
            save_checkpoint(cfg.checkpoint, model, cfg, step, history, events=events, tokens=tokens,
                            seconds=now - start, bf16=bf16)
            last_ckpt = now
    seconds = time.perf_counter() - start
    if recent or not history:
        val_loss = evaluate(model, val_batches, bf16, device) if val_batches else math.nan
        history.append({"step": step, "seconds": seconds,
                        "loss": float(np.mean(recent)) if recent else math.nan,
                        "val_loss": val_loss, "lr": _lr(cfg, step, 1.0), "events_per_s": math.nan})
    model = model.cpu().eval()
    if cfg.checkpoint:
        save_checkpoint(cfg.checkpoint, model, cfg, step, history, events=events, tokens=tokens,
                        seconds=seconds, bf16=bf16)
    return TrainResult(model, step, seconds, events, tokens, history, bf16, device)
