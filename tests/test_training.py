"""The training pipeline end to end on a tiny model: data -> a few steps -> ONNX export -> runtime."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs the train extra (PyTorch)")
pytest.importorskip("onnx", reason="the exporter needs the train extra (onnx)")

from agents.model.runtime import ModelRuntime  # noqa: E402
from training import card  # noqa: E402
from training.data import Corpus, WindowSampler, corpus_paths, music21_pieces, to_c, tokenize_midi, transpose  # noqa: E402
from training.export import export_model  # noqa: E402
from training.train import TrainConfig, model_from_checkpoint, save_checkpoint, train  # noqa: E402

pytestmark = pytest.mark.torch
REPO = Path(__file__).resolve().parents[1]
TINY = {"width": 32, "layers": 2, "heads": 2, "ffn": 64, "token_layers": 1, "token_heads": 1,
        "token_ffn": 64}


def _synthetic_midi(seed: int) -> bytes:
    """Two voices in C major, a scale over a held bass: enough structure for the loss to fall."""
    rng = np.random.default_rng(seed)
    mid = mido.MidiFile(ticks_per_beat=96)
    for voice, (low, step) in enumerate(((60, 1), (48, 4))):
        track = mido.MidiTrack()
        mid.tracks.append(track)
        scale = [0, 2, 4, 5, 7, 9, 11]
        for i in range(48):
            pitch = low + scale[(i // step + int(rng.integers(0, 2))) % 7]
            track.append(mido.Message("note_on", channel=voice, note=pitch, velocity=80, time=0))
            track.append(mido.Message("note_off", channel=voice, note=pitch, velocity=0, time=96 * step))
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    """A handful of chorales when music21 is there (the real data), synthetic MIDI otherwise."""
    try:
        import music21  # noqa: F401
    except ImportError:
        pieces = [tokenize_midi(_synthetic_midi(s)) for s in range(6)]
        return Corpus(pieces, [f"synthetic{s}" for s in range(6)])
    found = [p for path in corpus_paths(["bach"])[:5] for p in music21_pieces(path)]
    return Corpus([r for _, r in found], [n for n, _ in found])


def test_corpus_keeps_voices_apart(corpus: Corpus) -> None:
    channel = 1 + 3  # note rows: event, time1, time2, track, channel, ...
    notes = corpus.pieces[0][corpus.pieces[0][:, 0] == 3]
    assert len(np.unique(notes[:, channel])) >= 2


def test_transpose_moves_pitches_not_drums() -> None:
    rows = np.array([[3, 9, 137, 2202, 2329 + 0, 2345 + 60, 2473 + 80, 169],
                     [3, 9, 137, 2203, 2329 + 9, 2345 + 36, 2473 + 80, 169],
                     [8, 9, 137, 2202, 3389 + 7 + 2, 3404, 0, 0]])  # key signature D major (2 sharps)
    out = transpose(rows, 3)
    assert out[0, 5] == 2345 + 63 and out[1, 5] == 2345 + 36
    assert out[2, 4] == 3389 + 7 - 1  # F major: one flat
    assert transpose(rows, 100) is None
    assert to_c(Corpus([rows], ["d"])).pieces[0][0, 5] == 2345 + 58  # D -> C: down a tone


def test_windows_are_bounded_and_padded(corpus: Corpus) -> None:
    batch = WindowSampler(corpus, 40, seed=1, transpose_range=5).batch(6)
    assert batch.shape[0] == 6 and batch.shape[1] <= 40 and batch.shape[2] == 8


def test_train_export_and_play(corpus: Corpus, tmp_path: Path) -> None:
    cfg = TrainConfig(**TINY, seq_len=48, batch=4, lr=3e-3, warmup=5, minutes=5.0, max_steps=30,
                      threads=2, bf16="off", eval_every=10, checkpoint=tmp_path / "c.pt")
    result = train(corpus, cfg, val=Corpus(corpus.pieces[:1], corpus.names[:1]), report=lambda _: None)
    assert result.steps == 30
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.5, losses
    again, _ = model_from_checkpoint(tmp_path / "c.pt")  # the saved checkpoint rebuilds the model
    x = torch.from_numpy(corpus.pieces[0][None, :32])
    with torch.no_grad():
        assert torch.allclose(again.loss(x), result.model.loss(x), atol=1e-5)
    export_model(result.model, tmp_path / "m", config_name="tiny")
    rt = ModelRuntime(tmp_path / "m")
    rows, speed = card.generate(rt, 30, seed=0)
    assert rows.ndim == 2 and rows.shape[1] == 8 and speed > 0
    path = card.write_card(tmp_path / "m", result, cfg, corpus, Corpus(corpus.pieces[:1], ["v"]), argv=["x"],
                           sources=["bach"], midi_dir=None, to_c=False, samples=1, sample_events=20)
    assert "## Metrics" in path.read_text()


def test_init_accepts_a_bare_state_dict(tmp_path: Path) -> None:
    """SkyTNT checkpoints are bare (or Lightning-wrapped) state dicts: shapes come from the weights."""
    from training.train import build_model

    model = build_model(TrainConfig(**{**TINY, "width": 64, "heads": 1, "token_heads": 1}))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "sky.ckpt")
    loaded, _ = model_from_checkpoint(tmp_path / "sky.ckpt")
    assert loaded.net.spec.hidden_size == 64 and loaded.net.spec.num_hidden_layers == 2
    save_checkpoint(tmp_path / "ours.pt", loaded, TrainConfig(), 0, [])
    assert model_from_checkpoint(tmp_path / "ours.pt")[0].net_token.spec.num_hidden_layers == 1


def _tiny_folder(tmp_path: Path, corpus: Corpus, *, with_checkpoint: bool) -> Path:
    """A tiny trained model exported to a folder, with or without its checkpoint.pt beside the graphs."""
    from training.train import CHECKPOINT_NAME

    cfg = TrainConfig(**TINY, seq_len=32, batch=2, max_steps=2, threads=1, bf16="off", warmup=1,
                      checkpoint=tmp_path / "ckpt.pt")
    result = train(corpus, cfg, report=lambda _: None)
    folder = tmp_path / "model"
    export_model(result.model, folder, config_name="tiny", int8=True, train_window=32)
    if with_checkpoint:
        (folder / CHECKPOINT_NAME).write_bytes((tmp_path / "ckpt.pt").read_bytes())
    return folder


def _run_training(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_init_from_a_model_folder_fine_tunes_its_checkpoint(corpus: Corpus, tmp_path: Path) -> None:
    """`--init FOLDER` finds checkpoint.pt in it, trains, and ships the fine-tuned checkpoint in --out."""
    folder = _tiny_folder(tmp_path, corpus, with_checkpoint=True)
    midi = tmp_path / "midi"
    midi.mkdir()
    for s in range(3):
        (midi / f"s{s}.mid").write_bytes(_synthetic_midi(s))
    out = tmp_path / "tuned"
    done = _run_training("--out", str(out), "--sources", "", "--midi-dir", str(midi), "--init", str(folder),
                         "--max-steps", "2", "--seq-len", "32", "--batch", "2", "--threads", "1",
                         "--bf16", "off", "--samples", "1", "--checkpoint", str(tmp_path / "t.pt"),
                         "--no-cache")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"init from {folder / 'checkpoint.pt'}" in done.stdout
    tuned, ckpt = model_from_checkpoint(out)  # the folder itself now fine-tunes further
    assert ckpt["step"] == 2 and tuned.net.spec.hidden_size == TINY["width"]
    before, _ = model_from_checkpoint(folder)
    assert any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(),
                                                     tuned.state_dict().values(), strict=True))


def test_init_from_a_folder_without_checkpoint_is_a_one_line_error(corpus: Corpus, tmp_path: Path) -> None:
    folder = _tiny_folder(tmp_path, corpus, with_checkpoint=False)
    done = _run_training("--out", str(tmp_path / "x"), "--sources", "bach", "--init", str(folder))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(folder) in lines[0] and "checkpoint.pt" in lines[0], done.stderr
    assert not (tmp_path / "x").exists()  # nothing written


def test_recover_reads_the_exported_weights_back(corpus: Corpus, tmp_path: Path) -> None:
    """float32 graphs give the weights back exactly; int8 ones within their rounding, same loss."""
    from training.recover import model_from_onnx
    from training.train import build_model

    model = build_model(TrainConfig(**TINY))
    export_model(model, tmp_path / "f32", config_name="t")
    back = model_from_onnx(tmp_path / "f32")
    for (name, a), b in zip(model.state_dict().items(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    export_model(model, tmp_path / "i8", config_name="t", int8=True)
    x = torch.from_numpy(corpus.pieces[0][None, :32])
    with torch.no_grad():
        assert abs(float(model_from_onnx(tmp_path / "i8").loss(x)) - float(model.loss(x))) < 0.05


def test_holdout_stays_put_when_sources_are_added() -> None:
    """Held-out pieces are drawn from the named files only: new pieces after them change nothing, and
    a training piece with a held-out piece's notes (the same work in another file) is left out."""
    rng = np.random.default_rng(0)
    base = [np.column_stack([np.full(12, 3), rng.integers(0, 100, (12, 7))]) for _ in range(40)]
    names = [f"a.abc#{i}" for i in range(40)]
    _, val = Corpus(base, names).split(0.1, seed=0, among={"a.abc"})
    _, old_val = Corpus(base, names).split(0.1, seed=0)
    assert val.names == old_val.names
    copy = base[names.index(val.names[0])].copy()
    copy[:, 5] += 2  # the same tune a tone higher
    more = Corpus([*base, copy, base[0][::-1].copy()], [*names, "b.krn", "c.krn"])
    train_more, val_more = more.split(0.1, seed=0, among={"a.abc"})
    assert val_more.names == val.names
    assert "b.krn" not in train_more.names and "c.krn" in train_more.names
