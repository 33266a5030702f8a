"""One table from message class to OSC address and MQTT topic, and the two encodings.

OSC: `/barcelona/<ensemble>/<address>` with positional typed arguments in field order (ints 'i',
floats as doubles 'd' because python-osc's float32 would cost a timestamp a minute, strings 's').
MQTT: `barcelona/<ensemble>/<topic>[/<key>]` with a msgpack map of field names to values.
Decoding validates through the message constructors; every failure is a `DecodeError` whose text
names the message and field, so the bus can count it under that reason.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

import msgpack

from protocol.messages import (
    AgentParams,
    Control,
    HeldNote,
    Note,
    NoteAck,
    NoteAgain,
    PlanState,
    RoleState,
    SyncPing,
    SyncPong,
)
from protocol.status_messages import AgentStatus, BeatTick, EnsembleStatus, Roster
from protocol.timeline import Timeline

OSC_ROOT = "/barcelona"
MQTT_ROOT = "barcelona"
MAX_PAYLOAD = 8192


class DecodeError(ValueError):
    """A packet that is not a valid message; `reason` is a short key for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Kind:
    """How one message class travels. `key` names the field appended to the MQTT topic."""

    cls: type
    address: str
    qos: int
    retain: bool
    key: str | None = None


KINDS: tuple[Kind, ...] = (
    Kind(Timeline, "timeline", qos=1, retain=True),
    Kind(PlanState, "plan", qos=1, retain=True),
    Kind(Roster, "roster", qos=1, retain=True),
    Kind(AgentParams, "params", qos=1, retain=True, key="agent"),
    Kind(Note, "note", qos=0, retain=False, key="source"),
    Kind(AgentStatus, "status", qos=0, retain=False, key="agent"),
    Kind(SyncPing, "sync/ping", qos=0, retain=False, key="agent"),
    Kind(SyncPong, "sync/pong", qos=0, retain=False, key="agent"),
    Kind(Control, "control", qos=1, retain=False),
    Kind(BeatTick, "beat", qos=0, retain=False),
    Kind(EnsembleStatus, "ensemble/status", qos=0, retain=False),
    Kind(NoteAgain, "record/note", qos=0, retain=False, key="source"),
    Kind(HeldNote, "held", qos=0, retain=False, key="source"),
    Kind(NoteAck, "record/ack", qos=0, retain=False, key="agent"),
    Kind(RoleState, "roles", qos=1, retain=True),
)
BY_CLASS: dict[type, Kind] = {k.cls: k for k in KINDS}
BY_ADDRESS: dict[str, Kind] = {k.address: k for k in KINDS}


def kind_of(msg: Any) -> Kind:
    try:
        return BY_CLASS[type(msg)]
    except KeyError:
        raise TypeError(f"message: {type(msg).__name__} is not a bus message") from None


def field_values(msg: Any) -> list[Any]:
    return [getattr(msg, f.name) for f in fields(msg)]


# -- OSC ------------------------------------------------------------------------------------------
def osc_tag(value: Any) -> str:
    if isinstance(value, bool):
        return "i"
    if isinstance(value, int):
        return "i"
    if isinstance(value, float):
        return "d"
    if isinstance(value, str):
        return "s"
    raise TypeError(f"value: cannot send {type(value).__name__} over OSC")


def osc_address(ensemble: str, msg_or_kind: Any) -> str:
    kind = msg_or_kind if isinstance(msg_or_kind, Kind) else kind_of(msg_or_kind)
    return f"{OSC_ROOT}/{ensemble}/{kind.address}"


def to_osc(ensemble: str, msg: Any) -> tuple[str, list[tuple[str, Any]]]:
    """The address and typed arguments; bools go as ints because Max has no boolean type."""
    args = []
    for value in field_values(msg):
        tag = osc_tag(value)
        args.append((tag, int(value) if isinstance(value, bool) else value))
    return osc_address(ensemble, msg), args


def from_osc(ensemble: str, address: str, args: tuple[Any, ...] | list[Any]) -> Any:
    prefix = f"{OSC_ROOT}/{ensemble}/"
    if not address.startswith(prefix):
        raise DecodeError("foreign_address", f"{address!r} is not under {prefix}")
    kind = BY_ADDRESS.get(address[len(prefix) :])
    if kind is None:
        raise DecodeError("unknown_address", f"{address!r}")
    return _build(kind, list(args))


# -- MQTT -----------------------------------------------------------------------------------------
def mqtt_topic(ensemble: str, msg: Any) -> str:
    kind = kind_of(msg)
    base = f"{MQTT_ROOT}/{ensemble}/{kind.address}"
    return f"{base}/{getattr(msg, kind.key)}" if kind.key else base


def mqtt_filters(ensemble: str, who: str | None = None) -> list[str]:
    """Subscription filters that cover every kind (keyed kinds get a `+` level).

    With `who` (an agent's name, or "conductor") clock-sync and recording traffic is narrowed to what
    that process needs: an agent hears only its own pongs and acks, and no pings or notes sent again,
    the conductor no pongs or acks, so a start-up ping burst (or a resend after an outage) from every
    agent is not fanned out to every other process through the broker.
    """
    out = []
    for k in KINDS:
        base = f"{MQTT_ROOT}/{ensemble}/{k.address}"
        if who == "conductor" and k.cls in (SyncPong, NoteAck):
            continue  # its own answers would only echo back
        if who is not None and who != "conductor" and k.cls in (SyncPing, NoteAgain):
            continue
        if who is not None and who != "conductor" and k.cls in (SyncPong, NoteAck):
            out.append(f"{base}/{who}")
            continue
        out.append(base + ("/+" if k.key else ""))
    return out


def to_msgpack(msg: Any) -> bytes:
    return msgpack.packb({f.name: getattr(msg, f.name) for f in fields(msg)}, use_bin_type=True)


def from_mqtt(ensemble: str, topic: str, payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD:
        raise DecodeError("oversize", f"{len(payload)} bytes on {topic}")
    prefix = f"{MQTT_ROOT}/{ensemble}/"
    if not topic.startswith(prefix):
        raise DecodeError("foreign_topic", topic)
    rest = topic[len(prefix) :]
    kind = BY_ADDRESS.get(rest) or BY_ADDRESS.get(rest.rsplit("/", 1)[0])
    if kind is None:
        raise DecodeError("unknown_topic", topic)
    try:
        data = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for garbage
        raise DecodeError("bad_msgpack", f"{topic}: {type(exc).__name__}") from exc
    if not isinstance(data, dict):
        raise DecodeError("bad_msgpack", f"{topic}: payload is {type(data).__name__}, not a map")
    names = [f.name for f in fields(kind.cls)]
    unknown = set(data) - set(names)
    if unknown:
        raise DecodeError(f"{kind.address}.unknown_field", f"{sorted(map(str, unknown))}")
    msg = _build_kw(kind, data)
    if kind.key and rest != f"{kind.address}/{getattr(msg, kind.key)}":
        raise DecodeError(
            f"{kind.address}.topic_mismatch", f"{topic} carries {kind.key}={getattr(msg, kind.key)}"
        )
    return msg


def _build(kind: Kind, args: list[Any]) -> Any:
    names = [f.name for f in fields(kind.cls)]
    required = [f.name for f in fields(kind.cls) if f.default is MISSING and f.default_factory is MISSING]
    if not len(required) <= len(args) <= len(names):
        raise DecodeError(f"{kind.address}.arity", f"expected {len(names)} arguments, got {len(args)}")
    return _build_kw(kind, dict(zip(names, args, strict=False)))


def _build_kw(kind: Kind, data: dict[str, Any]) -> Any:
    try:
        return kind.cls(**data)
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if "required positional argument" in text or "unexpected keyword" in text:
            field = "missing_field"
        else:
            field = text.split(":", 1)[0].split(".")[-1] if ":" in text else "fields"
        raise DecodeError(f"{kind.address}.{field}", str(exc)) from exc
