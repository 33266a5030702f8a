"""What an agent and its machine's output host say to each other (agents/output_host.py).

The agent commits its notes as before and hands each to the host at once, with every change of its
beat clock; the host keeps the part's queue (the same `SchedulerCore` an agent's own timing thread
runs) and its synth output, and writes each note at its moment. Each message is a frozen value,
sent whole over a local `multiprocessing` connection (both ends are this project's own processes,
authenticated by a key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol.messages import Note
from protocol.timeline import LocalTimeMap

__all__ = ["Clear", "Close", "Closed", "Control", "CutAt", "Open", "Opened", "Schedule", "SetTimeMap",
           "Stats", "Written"]


@dataclass(frozen=True, slots=True)
class Open:
    """The first message of a connection: the part's name, its output section as the output
    factory reads it (agents/agent_output.py `output_spec`), and its queue's settings."""

    part: str
    spec: dict[str, Any]
    late_ms: float
    drop_after_s: float | None


@dataclass(frozen=True, slots=True)
class Opened:
    """The output is open (or `error` says in one line why not); `priority` is what the host's
    writing thread runs at, as the report shows it."""

    priority: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A committed note, to be played at its beats; `tag` as the scheduler keeps it (None for the
    part's own notes, which the agent counts as played)."""

    note: Note
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class CutAt:
    """End everything at `beat` (`SchedulerCore.cut_at`: the end of a piece)."""

    beat: float


@dataclass(frozen=True, slots=True)
class SetTimeMap:
    """Beats to this machine's seconds from now on (None: stopped; sounding notes are released)."""

    timemap: LocalTimeMap | None


@dataclass(frozen=True, slots=True)
class Clear:
    """Forget the part's unstarted notes and release its sounding ones now (the transport stopped)."""


@dataclass(frozen=True, slots=True)
class Control:
    """A controller change now (a fader or pan move: it changes the sound that is ringing)."""

    channel: int
    control: int
    value: int


@dataclass(frozen=True, slots=True)
class Close:
    """Release everything, send all-notes-off and close the part's output; answered by `Closed`."""


@dataclass(frozen=True, slots=True)
class Written:
    """After a batch of the part's went out: how many of its own notes have started so far (a total,
    so an answer skipped while the agent was not reading loses nothing), how many sound now."""

    onsets: int
    sounding: int


@dataclass(frozen=True, slots=True)
class Stats:
    """The part's timing statistics (`SchedulerCore.stats`), sent every half second or so."""

    stats: dict[str, float | int]
    sounding: int
    onsets: int


@dataclass(frozen=True, slots=True)
class Closed:
    """The part's last statistics, as its output closes; `sounding`: notes still sounding once its
    notes were released (stuck: 0 unless the synth failed)."""

    stats: dict[str, float | int]
    sounding: int
    onsets: int
