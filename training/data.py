"""Training data: MIDI from music21's offline corpus or a folder, tokenized once and cached as .npz.

Tokenizing goes through the runtime's own `midi_to_score` + `MidiTokenizer` (V2, optimise_midi) so the
model is trained on exactly the token stream an agent feeds it. music21 is slow (≈ 0.7 s per chorale to
parse and write MIDI), hence the cache under ~/.cache/barcelona/ and a process pool for the first run.
Augmentation works on token rows rather than scores: a transposition is a shift of the pitch tokens and
the key-signature tokens, which costs microseconds per window instead of a re-tokenize.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import mido
import numpy as np

from agents.model.score import midi_to_score
from agents.model.tokenizer import MidiTokenizer
from agents.model.vocab import VOCAB_V2

log = logging.getLogger(__name__)

CACHE_DIR = Path(os.environ.get("BARCELONA_CACHE", Path.home() / ".cache" / "barcelona"))
CACHE_VERSION = 1  # bump when conversion or tokenization changes, so stale caches are not reused
DRUM_CHANNEL = 9
# music21 corpus sources: name -> (corpus path filter, how many files at most; None = all)
SOURCES = {"bach": ("bach", None), "folk": ("essenFolksong", 3), "palestrina": ("palestrina", 60),
           "oneill": ("oneills1850", None)}
# The files the held-out pieces are drawn from: those of the first shipped model's corpus (every Bach
# work, the first three Essen files), so held-out losses of models trained on more stay comparable.
HOLDOUT_SOURCES = {"bach": None, "folk": 3}

_V = VOCAB_V2
_NOTE = _V.event_ids["note"]
_KEY = _V.event_ids["key_signature"]
_COL_CH = _V.column("note", "channel")
_COL_PITCH = _V.column("note", "pitch")
_COL_TRACK = _V.column("note", "track")
_COL_SF = _V.column("key_signature", "sf")
_PITCH0 = _V.param_base["pitch"]
_CH0 = _V.param_base["channel"]
_SF0 = _V.param_base["sf"]
# Krumhansl-Kessler major profile: a key estimate for pieces without a key signature
_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])


@dataclass
class Corpus:
    """Tokenized pieces: one (N_i, 8) int64 array each, with the name it came from."""

    pieces: list[np.ndarray]
    names: list[str]

    @property
    def events(self) -> int:
        return int(sum(len(p) for p in self.pieces))

    def split(self, holdout: float, seed: int = 0, among: set[str] | None = None) -> tuple[Corpus, Corpus]:
        """A fixed random hold-out, so the validation loss measures the same pieces on every run.

        `among` (corpus file names, see `holdout_files`) draws the held-out pieces from those files only,
        in corpus order: adding sources then leaves the held-out set as it was, and the validation loss
        stays comparable with models trained on less. Training pieces whose notes repeat a held-out
        piece's (the corpus holds some works twice) are dropped from training, so nothing leaks."""
        pool = [i for i, n in enumerate(self.names) if among is None or n.split("#")[0] in among]
        if not pool:  # e.g. only a user's MIDI folder: draw from everything
            pool = list(range(len(self.pieces)))
        order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
        n_val = max(1, int(len(order) * holdout)) if len(order) > 1 else 0
        val = order[:n_val]
        seen = {_fingerprint(self.pieces[i]) for i in val}
        chosen = set(val)
        train = [i for i in range(len(self.pieces)) if i not in chosen]
        if among is None:  # the original draw's order, so a run without `among` splits as it always did
            train = order[n_val:]
        train = [i for i in train if _fingerprint(self.pieces[i]) not in seen]
        pick = lambda idx: Corpus([self.pieces[i] for i in idx], [self.names[i] for i in idx])  # noqa: E731
        return pick(train), pick(val)

    def deduplicated(self) -> Corpus:
        """Each piece once: overlapping corpus files (O'Neill's collection has some) would weight their
        tunes double."""
        seen: set[bytes] = set()
        keep = []
        for i, rows in enumerate(self.pieces):
            key = _fingerprint(rows)
            if key not in seen:
                seen.add(key)
                keep.append(i)
        return Corpus([self.pieces[i] for i in keep], [self.names[i] for i in keep])


def _fingerprint(rows: np.ndarray) -> bytes:
    """The piece's pitch sequence, transposition-free: equal for the same work in two files or keys."""
    pitches = rows[rows[:, 0] == _NOTE, _COL_PITCH].astype(np.int64)
    return hashlib.sha1(np.diff(pitches).tobytes() if len(pitches) > 1 else rows.tobytes()).digest()


def separate_channels(mid: mido.MidiFile) -> mido.MidiFile:
    """Give every note-bearing track its own channel (9 skipped).

    music21 writes all four chorale voices on one channel; the tokenizer's remap would then fold them
    into one channel, and an ensemble model would never learn that voices are separate instruments.
    """
    channel = 0
    for track in mid.tracks:
        if not any(m.type == "note_on" for m in track):
            continue
        if channel == DRUM_CHANNEL:
            channel += 1
        for msg in track:
            if hasattr(msg, "channel") and msg.channel != DRUM_CHANNEL:
                msg.channel = channel
        channel = min(channel + 1, 15)
    return mid


def tokenize_midi(source: str | os.PathLike | bytes | mido.MidiFile) -> np.ndarray:
    """Token rows for one MIDI file, exactly as an agent would tokenize it."""
    if isinstance(source, bytes):
        import io

        source = mido.MidiFile(file=io.BytesIO(source))
    elif not isinstance(source, mido.MidiFile):
        source = mido.MidiFile(os.fspath(source))
    return MidiTokenizer("v2", optimise_midi=True).tokenize(midi_to_score(separate_channels(source)))


def _file_cache(path: str) -> Path:
    st = os.stat(path)
    key = hashlib.sha256(f"{CACHE_VERSION}|{path}|{st.st_size}".encode()).hexdigest()[:16]
    return CACHE_DIR / "files" / f"{Path(path).name}-{key}.npz"


def music21_pieces(path: str, cache: bool = True) -> list[tuple[str, np.ndarray]]:
    """All scores in one corpus file (an Essen .abc file holds hundreds) as token arrays.

    Each file's tokens are cached on their own, so a corpus of thousands of pieces (hours of music21
    parsing) can be built up over several runs, or in the background while another run trains."""
    cached = _file_cache(path)
    if cache and cached.exists():
        with np.load(cached) as z:
            flat, offsets, names = z["rows"], z["offsets"], list(z["names"])
        return [(str(n), flat[a:b]) for n, (a, b) in zip(names, pairwise(offsets), strict=True)]
    out = _parse_music21(path)
    if cache:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npz")
        rows = np.concatenate([r for _, r in out]) if out else np.zeros((0, 8), np.int64)
        np.savez_compressed(tmp, rows=rows, offsets=np.cumsum([0] + [len(r) for _, r in out]),
                            names=np.array([n for n, _ in out], dtype=str))
        tmp.replace(cached)
    return out


def _parse_music21(path: str) -> list[tuple[str, np.ndarray]]:
    from music21 import corpus, midi, stream

    out: list[tuple[str, np.ndarray]] = []
    try:
        parsed = corpus.parse(path)
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
        for i, score in enumerate(scores):
            try:
                data = midi.translate.streamToMidiFile(score).writestr()
                rows = tokenize_midi(bytes(data))
            except Exception as exc:  # music21 fails on a few odd scores; skip them, keep the rest
                log.debug("skip %s #%d: %s", path, i, exc)
                continue
            if len(rows) > 8:
                out.append((f"{Path(path).name}#{i}" if len(scores) > 1 else Path(path).name, rows))
    except Exception as exc:
        log.warning("skip %s: %s", path, exc)
    return out


def midi_pieces(path: str) -> list[tuple[str, np.ndarray]]:
    try:
        rows = tokenize_midi(path)
    except Exception as exc:  # a user's folder may hold broken files: say which, go on
        log.warning("skip %s: %s", path, exc)
        return []
    return [(Path(path).name, rows)] if len(rows) > 8 else []


def holdout_files() -> set[str]:
    """Names of the corpus files the held-out pieces come from (HOLDOUT_SOURCES)."""
    return {Path(p).name for p in corpus_paths(list(HOLDOUT_SOURCES), HOLDOUT_SOURCES)}


def corpus_paths(sources: Sequence[str], limits: dict[str, int | None] | None = None) -> list[str]:
    """music21 corpus files for the named sources (see SOURCES), in a stable order; `limits` overrides
    SOURCES' file counts."""
    from music21 import corpus

    every = sorted(str(p) for p in corpus.getPaths())
    paths: list[str] = []
    for name in sources:
        if name not in SOURCES:
            raise ValueError(f"source must be one of {sorted(SOURCES)}, got {name!r}")
        folder, limit = SOURCES[name]
        if limits and name in limits:
            limit = limits[name]
        if name == "bach":
            found = sorted(str(p) for p in corpus.getComposer("bach"))
        else:
            found = [p for p in every if f"/{folder}/" in p.replace(os.sep, "/")]
        paths += found[:limit] if limit else found
    return paths


def _cache_file(sources: Sequence[str], midi_dir: Path | None, files: Sequence[str]) -> Path:
    h = hashlib.sha256(f"{CACHE_VERSION}|{sorted(sources)}|{midi_dir}".encode())
    for f in files:
        h.update(f.encode())
        if midi_dir is not None:
            st = os.stat(f)
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return CACHE_DIR / f"tokens-{'+'.join(sorted(sources)) or 'none'}-{h.hexdigest()[:12]}.npz"


def parse_sources(text: str) -> tuple[list[str], dict[str, int | None]]:
    """'bach,folk:12,oneill' -> names and file limits ('name:N' = its first N corpus files, 'name:all')."""
    names: list[str] = []
    limits: dict[str, int | None] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, _, count = item.partition(":")
        if name not in SOURCES:
            raise ValueError(f"--sources: {name!r} is not one of {sorted(SOURCES)}")
        names.append(name)
        if count:
            if count != "all" and not (count.isdigit() and int(count) > 0):
                raise ValueError(f"--sources: file count of {name!r} must be a positive number or 'all', "
                                 f"got {count!r}")
            limits[name] = None if count == "all" else int(count)
    return names, limits


def load_corpus(sources: Sequence[str] = ("bach", "folk"), midi_dir: str | Path | None = None,
                workers: int = 2, cache: bool = True, limits: dict[str, int | None] | None = None) -> Corpus:
    """Tokenized pieces from music21 sources and/or a folder of .mid files, cached after the first run."""
    folder = Path(midi_dir).expanduser() if midi_dir else None
    midi_files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi")) \
        if folder else []
    m21_files = corpus_paths(sources, limits) if sources else []
    if not midi_files and not m21_files:
        raise ValueError("no training data: name music21 sources or a --midi-dir holding .mid files")
    path = _cache_file(sources, folder, m21_files + midi_files)
    if cache and path.exists():
        with np.load(path) as z:
            flat, offsets, names = z["rows"], z["offsets"], list(z["names"])
        return Corpus([flat[a:b] for a, b in pairwise(offsets)], names)
    jobs = [(music21_pieces, p, cache) for p in m21_files] + [(midi_pieces, p) for p in midi_files]
    results: list[tuple[str, np.ndarray]] = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_run_job, jobs, chunksize=4):
                results += part
    else:
        for job in jobs:
            results += _run_job(job)
    if not results:
        raise ValueError("no piece could be tokenized")
    corpus = Corpus([r for _, r in results], [n for n, _ in results])
    if cache:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        offsets = np.cumsum([0] + [len(p) for p in corpus.pieces])
        np.savez_compressed(path, rows=np.concatenate(corpus.pieces), offsets=offsets,
                            names=np.array(corpus.names))
    return corpus


def _run_job(job: tuple) -> list[tuple[str, np.ndarray]]:
    fn, *args = job
    return fn(*args)


def _tonic_shift(rows: np.ndarray) -> int:
    """Semitones (−5..+6) that move the piece's major key (or its relative minor) to C / A minor."""
    keys = rows[(rows[:, 0] == _KEY)]
    if len(keys):
        sf = int(keys[0, _COL_SF]) - _SF0 - 7
        tonic = (7 * sf) % 12
    else:
        notes = rows[(rows[:, 0] == _NOTE) & (rows[:, _COL_CH] != _CH0 + DRUM_CHANNEL)]
        if not len(notes):
            return 0
        hist = np.bincount((notes[:, _COL_PITCH] - _PITCH0) % 12, minlength=12).astype(float)
        tonic = int(np.argmax([np.corrcoef(hist, np.roll(_MAJOR, k))[0, 1] for k in range(12)]))
    shift = -tonic % 12
    return shift - 12 if shift > 6 else shift


def transpose(rows: np.ndarray, semitones: int) -> np.ndarray | None:
    """Rows moved by `semitones`, drums untouched, key signatures moved along; None if a pitch leaves
    0..127 (the caller keeps the original, as SkyTNT's augment does)."""
    if semitones == 0:
        return rows
    out = rows.copy()
    notes = (out[:, 0] == _NOTE) & (out[:, _COL_CH] != _CH0 + DRUM_CHANNEL)
    pitch = out[notes, _COL_PITCH] - _PITCH0 + semitones
    if len(pitch) and (pitch.min() < 0 or pitch.max() > 127):
        return None
    out[notes, _COL_PITCH] = pitch + _PITCH0
    drum_tracks = set(out[~notes & (out[:, 0] == _NOTE), _COL_TRACK]) - set(out[notes, _COL_TRACK])
    keys = (out[:, 0] == _KEY) & ~np.isin(out[:, _COL_TRACK], list(drum_tracks))
    sf = out[keys, _COL_SF] - _SF0 - 7 + 7 * semitones
    sf = (sf + 6) % 12 - 6  # the same key, spelled with at most 6 accidentals
    out[keys, _COL_SF] = sf + 7 + _SF0
    return out


def to_c(corpus: Corpus) -> Corpus:
    """Every piece in C major / A minor: a small model then spends its capacity on voice leading
    instead of on 12 transpositions of it (the keys are restored by the chord bias when playing)."""
    pieces = []
    for rows in corpus.pieces:
        shifted = transpose(rows, _tonic_shift(rows))
        pieces.append(rows if shifted is None else shifted)
    return Corpus(pieces, list(corpus.names))


class WindowSampler:
    """Random training windows of up to `length` events, padded into batches.

    Pieces are drawn in proportion to their length, so every event is equally likely to be trained
    on; a quarter of windows start at the piece's BOS so the model also learns how pieces begin."""

    def __init__(self, corpus: Corpus, length: int, seed: int = 0, transpose_range: int = 0) -> None:
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        self.pieces = [p for p in corpus.pieces if len(p) >= 2]
        if not self.pieces:
            raise ValueError("corpus has no piece of at least 2 events")
        sizes = np.array([len(p) for p in self.pieces], dtype=float)
        self.weights = sizes / sizes.sum()
        self.length, self.transpose_range = length, transpose_range
        self.rng = np.random.default_rng(seed)

    def window(self) -> np.ndarray:
        rows = self.pieces[self.rng.choice(len(self.pieces), p=self.weights)]
        n = min(self.length, len(rows))
        start = 0 if self.rng.random() < 0.25 else int(self.rng.integers(0, len(rows) - n + 1))
        win = rows[start : start + n]
        if self.transpose_range:
            shifted = transpose(win, int(self.rng.integers(-self.transpose_range, self.transpose_range + 1)))
            win = win if shifted is None else shifted
        return win

    def batch(self, size: int) -> np.ndarray:
        wins = [self.window() for _ in range(size)]
        out = np.zeros((size, max(len(w) for w in wins), 8), np.int64)
        for i, w in enumerate(wins):
            out[i, : len(w)] = w
        return out

    def batches(self, size: int) -> Iterator[np.ndarray]:
        while True:
            yield self.batch(size)
