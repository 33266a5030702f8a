"""Every message on the bus, defined once as a frozen value that checks itself.

Each class lists its fields in `SPEC` (kind and range); construction validates against it, so a
message that exists is a valid message, whichever encoding it came from. Timeline lives in
`protocol.timeline` and is a message too; the heartbeats, roster and display messages
(`AgentStatus`, `Roster`, `BeatTick`, `EnsembleStatus`) are in `protocol.status_messages`.
Addresses, topics and encodings are in `protocol.codec`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from protocol.fields import check_bool, check_float, check_int, check_name, check_str
from protocol.instruments import DYNAMICS
from protocol.mix import DEFAULT_DYNAMICS, DEFAULT_PAN, DEFAULT_VOLUME
from protocol.rules import RULES

# kind, low, high. Kinds: i int, d double, s string, n name (address-safe), b bool, v float-or-string
Spec = tuple[str, Any, Any]

MAX_BEAT = 1e9
MAX_TEXT = 4096


def validate(obj: Any) -> None:
    """Coerce and check every field of a message against its class's SPEC."""
    for f in fields(obj):
        kind, lo, hi = obj.SPEC[f.name]
        value = getattr(obj, f.name)
        name = f"{type(obj).__name__}.{f.name}"
        if kind == "i":
            value = check_int(name, value, lo, hi)
        elif kind == "d":
            value = check_float(name, value, lo, hi)
        elif kind == "s":
            value = check_str(name, value, hi, empty_ok=lo == 0)
        elif kind == "n":
            value = check_name(name, value)
        elif kind == "b":
            value = check_bool(name, value)
        elif kind == "v":
            if isinstance(value, str):
                value = check_str(name, value, MAX_TEXT, empty_ok=True)
            else:
                value = check_float(name, value)
        object.__setattr__(obj, f.name, value)


class Message:
    """Base: validation on construction, field access by SPEC order."""

    __slots__ = ()
    SPEC: ClassVar[dict[str, Spec]] = {}

    def __post_init__(self) -> None:
        validate(self)

    def values(self) -> list[Any]:
        return [getattr(self, f.name) for f in fields(self)]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Note(Message):
    """A note in beats. Agents publish committed notes; the human bridge publishes the human's."""

    start_beat: float
    duration_beats: float
    pitch: int
    velocity: int
    channel: int
    source: str

    SPEC: ClassVar[dict[str, Spec]] = {
        "start_beat": ("d", -MAX_BEAT, MAX_BEAT),
        "duration_beats": ("d", 1e-4, 1024.0),
        "pitch": RULES["pitch"].spec,
        "velocity": RULES["velocity"].spec,
        "channel": RULES["channel"].spec,
        "source": ("n", None, None),
    }

    @property
    def end_beat(self) -> float:
        return self.start_beat + self.duration_beats


@dataclass(frozen=True, slots=True)
class NoteAgain(Message):
    """Agent → recorder: a committed note sent again because the recorder has not acknowledged it
    (a broker outage, a conductor restarting). Its own message so that only the recorder hears it:
    a note heard twice, or late, by another agent's model would change what that agent plays."""

    start_beat: float
    duration_beats: float
    pitch: int
    velocity: int
    channel: int
    source: str

    SPEC: ClassVar[dict[str, Spec]] = Note.SPEC

    @classmethod
    def of(cls, note: Note) -> NoteAgain:
        return cls(*note.values())

    def note(self) -> Note:
        return Note(*self.values())


@dataclass(frozen=True, slots=True)
class HeldNote(Message):
    """The player's note at its note-on, before anyone knows how long it will be held. The bands
    hears what the player holds now, not a beat after the player lets go: agents put it in their
    context with a provisional length and re-plan at once; the `Note` with its real duration follows
    at the note-off and replaces it (the recorder and the report count only that one)."""

    start_beat: float
    pitch: int
    velocity: int
    channel: int
    source: str

    SPEC: ClassVar[dict[str, Spec]] = {k: v for k, v in Note.SPEC.items() if k != "duration_beats"}


def note_key(start_beat: float, pitch: int) -> tuple[float, int]:
    """What tells one note of a part from another: the recorder's dedup key and the ack's item."""
    return (round(float(start_beat), 6), int(pitch))


@dataclass(frozen=True, slots=True)
class NoteAck(Message):
    """Recorder → agent: these notes of yours are recorded. `notes` is `beat:pitch` items separated by
    spaces (beat as Python writes a float, so it reads back to the same key); an agent keeps every note
    it committed until it is acknowledged, and sends it again (NoteAgain) while it is not."""

    agent: str
    notes: str

    SPEC: ClassVar[dict[str, Spec]] = {
        "agent": ("n", None, None),
        "notes": ("s", 0, MAX_TEXT),
    }

    @staticmethod
    def pack(agent: str, keys: list[tuple[float, int]]) -> list[NoteAck]:
        """As few acks as carry `keys` within MAX_TEXT each."""
        out: list[NoteAck] = []
        items: list[str] = []
        size = 0
        for beat, pitch in keys:
            item = f"{beat!r}:{pitch}"
            if items and size + len(item) + 1 > MAX_TEXT:
                out.append(NoteAck(agent, " ".join(items)))
                items, size = [], 0
            items.append(item)
            size += len(item) + 1
        if items:
            out.append(NoteAck(agent, " ".join(items)))
        return out

    def keys(self) -> list[tuple[float, int]]:
        """The acknowledged notes; a malformed item raises ValueError (counted by the receiver)."""
        out = []
        for item in self.notes.split():
            beat, _, pitch = item.partition(":")
            out.append(note_key(float(beat), int(pitch)))
        return out


@dataclass(frozen=True, slots=True)
class PlanState(Message):
    """The chord plan as text (`Dm7 G7 | Cmaj7`); receivers parse it with protocol.harmony."""

    epoch: int
    text: str
    loop: bool
    key: str

    SPEC: ClassVar[dict[str, Spec]] = {
        "epoch": ("i", 0, 2**31 - 1),
        "text": ("s", 0, MAX_TEXT),
        "loop": ("b", None, None),
        "key": ("s", 1, 8),
    }


@dataclass(frozen=True, slots=True)
class RoleState(Message):
    """Conductor → agents and displays: the parts the player has taken, and who makes room.

    `player` is the roles heard from the player now, comma-separated (`bass,comp`; empty: none).
    `yields` is `agent:from:until` items separated by spaces: that agent starts no note in the beats
    [from, until) (bar lines; until -1 while the player still holds the part). Each agent keeps only
    its latest item, so a lost or repeated message (it is re-sent with the state) changes nothing."""

    epoch: int
    player: str
    yields: str

    SPEC: ClassVar[dict[str, Spec]] = {
        "epoch": ("i", 0, 2**31 - 1),
        "player": ("s", 0, 64),
        "yields": ("s", 0, MAX_TEXT),
    }

    @staticmethod
    def pack(yields: dict[str, tuple[float, float | None]]) -> str:
        """The `yields` text for {agent: (from, until or None)}."""
        return " ".join(f"{a}:{f:g}:{-1 if u is None else u:g}" for a, (f, u) in sorted(yields.items()))

    def yields_of(self) -> dict[str, tuple[float, float | None]]:
        """{agent: (from, until or None)}; a malformed item raises ValueError (the receiver counts it)."""
        out: dict[str, tuple[float, float | None]] = {}
        for item in self.yields.split():
            agent, start, until = item.rsplit(":", 2)
            begin, end = float(start), float(until)
            if not (agent and 0.0 <= begin < MAX_BEAT and (end == -1 or begin < end < MAX_BEAT)):
                raise ValueError(f"RoleState.yields: bad item {item[:80]!r}")
            out[agent] = (begin, None if end == -1 else end)
        return out

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in self.player.split(",") if r)


@dataclass(frozen=True, slots=True)
class AgentParams(Message):
    """One agent's live parameters, resolved by the conductor (solo already folded into `muted`).

    `volume` and `pan` are the part's CC7 and CC10 (pan as -1..1); `dynamics` its level as a centre
    velocity. They have defaults so a sender that predates them still decodes."""

    agent: str
    epoch: int
    muted: bool
    temperature: float
    density: float
    top_p: float
    top_k: int
    volume: int = DEFAULT_VOLUME
    pan: float = DEFAULT_PAN
    dynamics: int = DYNAMICS[DEFAULT_DYNAMICS]

    SPEC: ClassVar[dict[str, Spec]] = {
        "agent": ("n", None, None),
        "epoch": ("i", 0, 2**31 - 1),
        "muted": ("b", None, None),
        **{name: RULES[name].spec
           for name in ("temperature", "density", "top_p", "top_k", "volume", "pan", "dynamics")},
    }


@dataclass(frozen=True, slots=True)
class SyncPing(Message):
    """Agent → conductor: t_local is the agent's clock when sent."""

    agent: str
    seq: int
    t_local: float

    SPEC: ClassVar[dict[str, Spec]] = {
        "agent": ("n", None, None),
        "seq": ("i", 0, 2**31 - 1),
        "t_local": ("d", -1e12, 1e12),
    }


@dataclass(frozen=True, slots=True)
class SyncPong(Message):
    """Conductor → agent: echoes the ping with the conductor's clock when the ping arrived and when
    the pong left, NTP's four timestamps: the conductor's own delay in between is then no leg of
    the round trip, so a busy conductor does not bias every agent's offset."""

    agent: str
    seq: int
    t_local: float
    t_conductor: float
    t_reply: float

    SPEC: ClassVar[dict[str, Spec]] = {
        "agent": ("n", None, None),
        "seq": ("i", 0, 2**31 - 1),
        "t_local": ("d", -1e12, 1e12),
        "t_conductor": ("d", -1e12, 1e12),
        "t_reply": ("d", -1e12, 1e12),
    }


@dataclass(frozen=True, slots=True)
class Control(Message):
    """A steering request for the conductor (tempo, play, a plan edit, an agent's mute…).

    `target` is an agent name for per-agent params, empty for ensemble-wide ones. Which params exist
    and their ranges is `protocol.controls.CONTROLS`.
    """

    param: str
    value: float | str
    target: str = ""

    SPEC: ClassVar[dict[str, Spec]] = {
        "param": ("s", 1, 32),
        "value": ("v", None, None),
        "target": ("s", 0, 64),
    }
