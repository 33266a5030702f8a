"""What the model process is told about its part, and the small look-ups the agent makes to build it.

`WorkerConfig` crosses into a spawned process, so it holds plain values only; the Planner
(agents/engines/model_worker.py) reads everything it plays from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocol.realtime import MODEL_NICE_WITHOUT_FIFO

if TYPE_CHECKING:
    from agents.model.voicing import Voicing


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the model process needs, picklable (it crosses into a spawned process)."""

    model: str
    track: int
    channel: int
    pitch_range: tuple[int, int]
    programs: tuple[tuple[int, int, int], ...]
    tempo: float
    beats_per_bar: int
    key_sharps: int
    key_minor: int
    plan_text: str
    plan_loop: bool
    plan_key: str
    horizon_beats: float
    seed: int
    temperature: float
    top_p: float
    top_k: int
    density: float
    chord_bias: float
    bass: bool
    tracks: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (track, model channel)
    human: str = ""
    max_rest_beats: int = 4
    max_note_beats: float = 8.0
    max_events: int | None = None  # context rows the agent keeps; None: context_events(model)
    onset_grid: int = 1  # onsets on multiples of this many 1/16-beat steps (Generator.onset_grid)
    intra_op_threads: int = 1
    role: str = "comp"  # protocol/instruments.py roles: the voicing rules and velocities follow it
    polyphony: int = 4
    chord_notes: int = 1  # a comping part's chord under each model note on a beat (comp_chords.py)
    span: int = 0
    doubling: bool = False
    roles: tuple[tuple[int, str], ...] = ()  # (track, role) of every part
    dynamics: int = 82  # the part's level as a centre velocity (agents/dynamics.py)
    plan: Any = None  # the parsed ChordPlan (plan_text is parsed when None)
    commit_offset: float = 0.0  # beats this part commits ahead of the agent's commit point
    # how far ahead of now the agent's commit point runs (timing.commit_beats, or the output latency
    # where that is longer): where the commit point stood when the player's note sounded
    commit_beats: float = 1.0
    quantize: str = "none"  # "int8": load an int8 copy of a float32 export (agents/model/int8_cache.py)
    source: str = "model"  # the part's name: the source of the notes it commits
    # (track, commit_offset) of every part (agents/arrangement.py): the musical time at which each
    # other part committed a note it hears, so what a commit takes of theirs is a matter of beats
    turns: tuple[tuple[int, float], ...] = ()
    # the channel the model hears and draws this part on (agents/voices.py); None: `channel`
    model_channel: int | None = None
    # the model process's nice value (protocol.realtime.model_niceness): 0 where the processes that
    # keep time run at SCHED_FIFO, else it steps back for them
    nice: int = MODEL_NICE_WITHOUT_FIFO

    @property
    def voice(self) -> int:
        """This part's channel inside the model's context."""
        return self.channel if self.model_channel is None else self.model_channel


DEFAULT_CONTEXT_EVENTS = 1024  # a model whose config does not say what window it was trained on


def context_events(model: str, requested: int | None = None) -> int:
    """How many events of context the agent keeps (the oldest quarter goes when it is full).

    Attention costs time per event in the context, so context the model never learnt to use is pure
    cost: for a model that records its training window (ours do), 1.5 windows, so that after a trim
    the model still sees at least a whole one. The shipped model's validation loss is the same with
    128 events of context as with 1024 (docs/model_format.md), and this makes its agents ~1.25x faster
    than a 1024-event context. Otherwise DEFAULT_CONTEXT_EVENTS; `requested` (YAML) overrides both."""
    if requested is not None:
        return requested
    from agents.model.model_config import CONFIG_FILE, read_tokenizer_config

    window = read_tokenizer_config(Path(model) / CONFIG_FILE).train_window
    return DEFAULT_CONTEXT_EVENTS if window is None else (3 * window) // 2


def key_signature(tonic_pc: int, minor: bool) -> tuple[int, int]:
    """Sharps (+) or flats (-) of a key, as a MIDI key-signature event carries them."""
    major_pc = (tonic_pc + 3) % 12 if minor else tonic_pc
    sf = (major_pc * 7) % 12
    return (sf - 12 if sf > 6 else sf), int(minor)

def part_voicing(cfg: WorkerConfig) -> Voicing:
    """The band's voicing rules as they bear on this part (agents/model/voicing.py): which of the
    other tracks are the bass, the drums, the other agents and the player's tune."""
    from agents.model.voicing import Voicing

    roles = dict(cfg.roles)
    human_track = cfg.tracks.get(cfg.human, (-1, -1))[0]
    drums = frozenset(t for t, r in roles.items() if r == "drums") | frozenset(
        t for t, ch in cfg.tracks.values() if ch == 9)
    return Voicing(
        role=cfg.role,
        polyphony=cfg.polyphony,
        span=cfg.span,
        doubling=cfg.doubling,
        bass_tracks=frozenset(t for t, r in roles.items() if r == "bass" and t != cfg.track),
        agent_tracks=frozenset(t for t, _ in cfg.tracks.values()
                               if t not in (cfg.track, human_track) and t not in drums),
        drum_tracks=drums,
        tune_tracks=frozenset({human_track} if roles.get(human_track) == "melody" else ()),
    )


def resolve_model(path: str | None, base_dir: Path) -> Path:
    """`default` (or nothing) is the shipped model; a relative path is taken from the YAML's folder."""
    root = Path(__file__).resolve().parents[2]
    if path in (None, "", "default"):
        return root / "models" / "default"
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)
