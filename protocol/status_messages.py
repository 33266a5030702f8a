"""The messages by which the ensemble says who is playing and how: each agent's heartbeat
(`AgentStatus`, from which the conductor builds the `Roster`), and for the displays the `BeatTick`
and the whole state as one JSON object (`EnsembleStatus`). Each is a `protocol.messages.Message`:
a frozen value that checks itself against its `SPEC` when it is built.
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any, ClassVar

from protocol.messages import MAX_TEXT, Message, Spec, validate


@dataclass(frozen=True, slots=True)
class AgentStatus(Message):
    """An agent's heartbeat: the roster is built from these, and displays show them."""

    agent: str
    seq: int
    state: str
    pid: int
    notes: int
    late_notes: int
    invalid: int
    load: float
    lookahead_beats: float
    latency_ms: float
    offset_ms: float
    rtt_ms: float

    SPEC: ClassVar[dict[str, Spec]] = {
        "agent": ("n", None, None),
        "seq": ("i", 0, 2**31 - 1),
        "state": ("s", 1, 16),
        "pid": ("i", 0, 2**31 - 1),
        "notes": ("i", 0, 2**31 - 1),
        "late_notes": ("i", 0, 2**31 - 1),
        "invalid": ("i", 0, 2**31 - 1),
        "load": ("d", 0.0, 1e3),
        "lookahead_beats": ("d", -1e6, 1e6),
        "latency_ms": ("d", -1e6, 1e6),
        "offset_ms": ("d", -1e9, 1e9),
        "rtt_ms": ("d", 0.0, 1e6),
    }


@dataclass(frozen=True, slots=True)
class Roster(Message):
    """The agents the conductor currently hears, comma-separated (OSC has no list type Max likes)."""

    epoch: int
    agents: str

    SPEC: ClassVar[dict[str, Spec]] = {
        "epoch": ("i", 0, 2**31 - 1),
        "agents": ("s", 0, MAX_TEXT),
    }

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a for a in self.agents.split(",") if a)


@dataclass(frozen=True, slots=True)
class BeatTick(Message):
    """Conductor → displays: bar, beat in bar and the current chord, once a beat."""

    bar: int
    beat: int
    chord: str
    tempo_bpm: float

    SPEC: ClassVar[dict[str, Spec]] = {
        "bar": ("i", -(2**31), 2**31 - 1),
        "beat": ("i", 0, 64),
        "chord": ("s", 0, 32),
        "tempo_bpm": ("d", 0.0, 1000.0),
    }


MAX_STATUS_JSON = 6000  # under MQTT's 8192-byte payload limit with room for msgpack framing


@dataclass(frozen=True, slots=True)
class EnsembleStatus(Message):
    """Conductor → bus and displays, once a beat: the whole ensemble's state as one JSON object.

    One string because Max's `dict` (and any JSON parser) takes it in one piece, and because the set
    of agents changes at run time, which positional OSC arguments cannot express. Keys: bar, beat,
    chord, tempo, playing, agents {name: {...}}, bus {invalid, refused, roster}; see docs/osc.md.
    """

    json: str

    SPEC: ClassVar[dict[str, Spec]] = {"json": ("s", 2, MAX_STATUS_JSON)}

    def __post_init__(self) -> None:
        validate(self)
        try:
            data = _json.loads(self.json)
        except ValueError as exc:
            raise ValueError(f"EnsembleStatus.json: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"EnsembleStatus.json: expected an object, got {type(data).__name__}")

    @property
    def data(self) -> dict[str, Any]:
        parsed: dict[str, Any] = _json.loads(self.json)
        return parsed
