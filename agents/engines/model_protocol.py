"""Every message between an `onnx` agent and its model process, one frozen value each.

The two ends talk over a `multiprocessing` pipe (or, on virtual time, the in-process stand-in in
agents/engines/inline_model.py), so every value here must pickle. They are typed values rather than
tuples read by index so that a field added on one side is a type error on the other, not a note
played at the wrong pitch; and notes cross as `protocol.messages.Note`, the value the bus carries,
so a note keeps one shape from the bus through the model and back to the scheduler.

Agent → model: `Join` first where the model is shared (agents/engines/model_host.py), then `Hear`,
`Held`, `CommitWindow`, `PlanChange`, `ParamsChange`, `Stop`.
Model → agent: `Ready` or `Failed` once at start, `Committed` for every `CommitWindow`, and
`StepFailed` when one step went wrong but the part plays on.
"""

from __future__ import annotations

from dataclasses import dataclass

from agents.engines.worker_config import WorkerConfig
from protocol.harmony import ChordPlan
from protocol.messages import HeldNote, Note

__all__ = [
    "AgentMessage",
    "CommitWindow",
    "Committed",
    "Failed",
    "Hear",
    "Held",
    "Join",
    "ModelMessage",
    "ParamsChange",
    "PlanChange",
    "Ready",
    "StepFailed",
    "Stop",
]


# -- agent → model ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Join:
    """An agent's part, to a shared model process: what a model process of its own is started with."""

    cfg: WorkerConfig


@dataclass(frozen=True, slots=True)
class Hear:
    """A whole note of another part, or the player's at its note-off (its length now known)."""

    note: Note


@dataclass(frozen=True, slots=True)
class Held:
    """The player's note at its note-on, so the part can answer before the player lets go."""

    note: HeldNote


@dataclass(frozen=True, slots=True)
class CommitWindow:
    """The agent's commit point moved from `start_beat` to `end_beat`: the model answers with the
    notes it commits for good (`Committed`), and keeps planning past them."""

    start_beat: float
    end_beat: float


@dataclass(frozen=True, slots=True)
class PlanChange:
    """The chord plan changed; parsed already, since the agent parsed it to play by it."""

    plan: ChordPlan


@dataclass(frozen=True, slots=True)
class ParamsChange:
    """The part's live settings changed (protocol.messages.AgentParams, the ones the model uses)."""

    muted: bool
    temperature: float
    top_p: float
    top_k: int
    density: float
    dynamics: int


@dataclass(frozen=True, slots=True)
class Stop:
    """The agent is done with the model: the process ends."""


AgentMessage = Hear | Held | CommitWindow | PlanChange | ParamsChange | Stop


# -- model → agent ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Ready:
    """The model is loaded and can play: where it runs and how much context it keeps."""

    providers: tuple[str, ...]
    context_events: int
    cache_mode: str
    max_events: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The model could not start (a missing model file, a bad export): one line saying why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Committed:
    """The answer to one `CommitWindow`: the notes committed, already the part's (its channel, its
    name as their source), and the model's running counts for the agent's stats."""

    notes: tuple[Note, ...]
    events: int
    replans: int
    load: float
    behind_beats: int
    late_heard: int = 0  # other parts' notes that came after the turn they counted in (Planner)


@dataclass(frozen=True, slots=True)
class StepFailed:
    """One message or generation step failed; the model goes on (the part must not fall silent)."""

    reason: str


ModelMessage = Ready | Failed | Committed | StepFailed
