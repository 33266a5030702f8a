"""`python -m training`: corpus -> training -> ONNX export -> model card, in one command.

The shipped default model is made by exactly this command:

    python -m training --out models/default --minutes 15 --threads 2 --to-c --int8

`python -m training.export` (random-weights exports) is a separate module and is unaffected.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from training.data import CACHE_DIR, SOURCES, holdout_files, load_corpus, parse_sources, to_c
from training.train import CHECKPOINT_NAME, TrainConfig, checkpoint_path, train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="model folder to write (config.json, onnx/, card)")
    p.add_argument("--name", default=None, help="config_name recorded in the export (default: folder name)")
    data = p.add_argument_group("data")
    data.add_argument("--sources", default="bach,folk",
                      help=f"music21 corpus sources, comma-separated, from {sorted(SOURCES)}, each "
                           "optionally NAME:FILES (its first FILES corpus files, or 'all'); '' for none")
    data.add_argument("--midi-dir", type=Path, default=None, help="also train on every .mid file under this")
    data.add_argument("--to-c", action="store_true", help="transpose every piece to C major / A minor")
    data.add_argument("--transpose", type=int, default=d.transpose,
                      help="random transposition range in semitones (0 = off); drums are never moved")
    data.add_argument("--holdout", type=float, default=0.05,
                      help="fraction of the held-out files' pieces kept for validation (every Bach work and "
                           "the first 3 Essen files, whatever --sources adds, so losses stay comparable)")
    data.add_argument("--no-cache", action="store_true", help=f"re-tokenize instead of using {CACHE_DIR}")
    m = p.add_argument_group("model")
    m.add_argument("--width", type=int, default=d.width)
    m.add_argument("--layers", type=int, default=d.layers)
    m.add_argument("--heads", type=int, default=d.heads)
    m.add_argument("--ffn", type=int, default=None, help="default 4 x width")
    m.add_argument("--token-layers", type=int, default=d.token_layers)
    m.add_argument("--token-heads", type=int, default=d.token_heads)
    m.add_argument("--token-ffn", type=int, default=None, help="default 2 x width")
    m.add_argument("--init", type=Path, default=None,
                   help="fine-tune from a model folder (its checkpoint.pt), our .pt checkpoint or a SkyTNT "
                        "PyTorch state dict (shape from it)")
    t = p.add_argument_group("training")
    t.add_argument("--minutes", type=float, default=d.minutes, help="wall-clock budget for the train loop")
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--seq-len", type=int, default=d.seq_len, help="events per training window")
    t.add_argument("--batch", type=int, default=d.batch)
    t.add_argument("--lr", type=float, default=d.lr)
    t.add_argument("--warmup", type=int, default=d.warmup)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    t.add_argument("--bf16", choices=["auto", "on", "off"], default=d.bf16)
    t.add_argument("--eval-every", type=int, default=d.eval_every)
    t.add_argument("--seed", type=int, default=d.seed)
    t.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint path (default: OUT/../.checkpoints/NAME.pt, outside the model folder)")
    t.add_argument("--export-only", action="store_true",
                   help="skip training: export --init as it is and write its card")
    m.add_argument("--int8", action="store_true",
                   help="store the exported weights as int8 (ONNX Runtime dynamic quantisation): ~1.25x "
                        "faster on a CPU core, a quarter of the size")
    c = p.add_argument_group("card")
    c.add_argument("--samples", type=int, default=4, help="generated pieces for the card's metrics")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    from training import card
    from training.export import export_model

    name = a.name or a.out.resolve().name
    try:
        sources, limits = parse_sources(a.sources)
        if a.init:
            a.init = checkpoint_path(a.init)
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}" if "--sources" in str(exc) else f"error: --init {exc}")
    t0 = time.perf_counter()
    corpus = load_corpus(sources, a.midi_dir, workers=max(1, a.threads or 2), cache=not a.no_cache,
                         limits=limits)
    if a.to_c:
        corpus = to_c(corpus)
    train_set, val_set = corpus.split(a.holdout, seed=0, among=holdout_files() if sources else None)
    n_train = len(train_set.pieces)
    train_set = train_set.deduplicated()
    print(f"data: {len(corpus.pieces)} pieces, {corpus.events} events ({time.perf_counter() - t0:.0f} s); "
          f"validation {len(val_set.pieces)} pieces; training {len(train_set.pieces)} pieces "
          f"({len(corpus.pieces) - len(val_set.pieces) - n_train} repeating a held-out piece and "
          f"{n_train - len(train_set.pieces)} duplicates left out)", flush=True)
    ckpt = a.checkpoint or a.out.resolve().parent / ".checkpoints" / f"{name}.pt"
    cfg = TrainConfig(width=a.width, layers=a.layers, heads=a.heads, ffn=a.ffn, token_layers=a.token_layers,
                      token_heads=a.token_heads, token_ffn=a.token_ffn, seq_len=a.seq_len, batch=a.batch,
                      lr=a.lr, warmup=a.warmup, minutes=0.0 if a.export_only else a.minutes,
                      max_steps=a.max_steps, seed=a.seed, threads=a.threads, bf16=a.bf16,
                      transpose=0 if a.to_c else a.transpose, eval_every=a.eval_every,
                      checkpoint=None if a.export_only else ckpt, init=a.init)
    if a.export_only and not a.init:
        sys.exit("--export-only needs --init CHECKPOINT")
    result = train(train_set, cfg, val_set, report=lambda line: print(line, flush=True))
    if a.export_only:
        card.restore_totals(result, a.init)
        # the window the checkpoint was trained on, not this command's default (config.json and card)
        cfg = replace(cfg, seq_len=card.checkpoint_seq_len(a.init) or cfg.seq_len)
    export_model(result.model, a.out, config_name=name, tokenizer_version="v2", optimise_midi=True,
                 int8=a.int8, train_window=cfg.seq_len)
    print(f"exported {a.out}", flush=True)
    shipped = a.out / CHECKPOINT_NAME  # beside the graphs, so `--init OUT` fine-tunes this model
    source = a.init if a.export_only else ckpt
    if source.resolve() != shipped.resolve():
        shutil.copyfile(source, shipped)
    path = card.write_card(a.out, result, cfg, corpus, val_set, argv=sys.argv[1:] if argv is None else argv,
                           sources=sources, midi_dir=a.midi_dir, to_c=a.to_c, samples=a.samples,
                           int8=a.int8)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
