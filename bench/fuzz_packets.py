"""Hostile packets for fuzzing: random bytes and mutations of real, valid Barcelona messages.

WHY mutations of real messages: random bytes die at the first check (not OSC, bad msgpack); a valid
datagram with one bit flipped, a wrong type tag or a NaN where a tempo goes reaches the deeper
checks (type, range, topic, arity), which is where a decoder can crash. Each generator returns the
kind of mutation with the packet so a fuzz run can report what it sent. The `*_accepts` functions
run the receiver's own decoder, so a run can send only what must be refused and then demand that
every packet sent shows up in the receivers' invalid counters.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import fields
from typing import Any

import msgpack
from pythonosc.parsing import osc_types

from conductor.control import HUMAN_NOTE, parse_control, strip_prefix
from protocol import codec
from protocol.messages import AgentParams, Control, Note, PlanState, SyncPing, SyncPong
from protocol.osc_wire import MalformedDatagramError, decode_datagram, encode_bundle
from protocol.status_messages import AgentStatus, BeatTick, Roster
from protocol.timeline import Timeline
from protocol.transport_osc import MAX_UDP_PAYLOAD

SAMPLES: tuple[Any, ...] = (
    Timeline(3, 97.5, 12.25, 1234.5678901234, 3, True, 140.0, 16.0),
    PlanState(2, "Dm7 G7 | Cmaj7", True, "C"),
    Roster(4, "bass,piano"),
    AgentParams("bass", 7, True, 0.9, 1.5, 0.95, 12),
    Note(8.5, 0.25, 36, 100, 9, "drums"),
    AgentStatus("piano", 5, "playing", 4242, 10, 1, 2, 0.5, 1.25, 150.0, -0.01, 0.2),
    SyncPing("bass", 1, 5000.123456789),
    SyncPong("bass", 1, 5000.123456789, 5000.2, 5000.2001),
    Control("tempo", 132.0),
    Control("mute", 1.0, "bass"),
    BeatTick(3, 2, "G7", 120.0),
)
# What Max/MSP and TouchOSC send to the control surface: floats for ints, patterns, bare addresses.
CONTROL_SAMPLES: tuple[tuple[str, list[tuple[str, Any]]], ...] = (
    ("/barcelona/{ens}/tempo", [("f", 96.0)]),
    ("/barcelona/{ens}/stop", []),
    ("/barcelona/{ens}/play", [("i", 1)]),
    ("/barcelona/{ens}/plan", [("s", "Dm7 G7 | Cmaj7")]),
    ("/barcelona/{ens}/bar", [("f", 2.0), ("s", "Dm7"), ("s", "G7")]),
    ("/barcelona/{ens}/agent/*/mute", [("f", 1.0)]),
    ("/barcelona/{ens}/agent/bass/temperature", [("f", 0.8)]),
    ("/barcelona/{ens}/agent/{{bass,piano}}/top_k", [("f", 12.0)]),
    ("/tempo", [("d", 140.0)]),
    ("/barcelona/{ens}/human/note", [("i", 60), ("i", 100)]),
)
HOSTILE_FLOATS = (math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0, 3.4e38, 1e19)
HOSTILE_INTS = (2**31 - 1, -(2**31), 0, -1, 2**63 - 1, -(2**63))
TAGS = "ihfdsbrmtTFN[]xyz,"
OSC_KINDS = {
    "random": 10,
    "bitflip": 20,
    "truncate": 12,
    "type_tags": 14,
    "bad_values": 20,
    "oversize": 6,
    "bundle": 10,
    "deep_array": 3,
    "extra_args": 5,
}
MQTT_KINDS = {
    "random": 10,
    "bitflip": 18,
    "truncate": 12,
    "wrong_types": 18,
    "bad_values": 18,
    "extra_field": 6,
    "missing_field": 6,
    "not_a_map": 4,
    "oversize": 4,
    "topic_mismatch": 4,
}


def _osc(address: str, args: list[tuple[str, Any]]) -> bytes:
    """Encode with any tags (python-osc's builder would refuse the odd ones)."""
    body = b"".join(_arg(t, v) for t, v in args)
    return osc_types.write_string(address) + osc_types.write_string("," + "".join(t for t, _ in args)) + body


def _arg(tag: str, value: Any) -> bytes:
    if tag == "i":
        return struct.pack(">i", max(-(2**31), min(2**31 - 1, int(value))))
    if tag == "h":
        return struct.pack(">q", max(-(2**63), min(2**63 - 1, int(value))))
    if tag == "f":
        return struct.pack(">f", value if not math.isfinite(value) or abs(value) < 3.4e38 else math.inf)
    if tag == "d":
        return struct.pack(">d", value)
    if tag == "s":
        return osc_types.write_string(str(value).replace("\x00", ""))
    if tag == "b":
        raw = bytes(value)
        return struct.pack(">i", len(raw)) + raw + b"\x00" * (-len(raw) % 4)
    return b""  # T F N [ ]: no payload


def bus_datagram(ensemble: str, msg: Any) -> bytes:
    address, args = codec.to_osc(ensemble, msg)
    return _osc(address, list(args))


class Mutator:
    """Draws hostile packets from a seeded RNG, so a failing run can be replayed."""

    def __init__(self, rng: random.Random, ensemble: str = "demo") -> None:
        self.rng, self.ensemble = rng, ensemble
        self.bus_msgs = [(codec.to_osc(ensemble, m)[0], list(codec.to_osc(ensemble, m)[1])) for m in SAMPLES]
        self.ctl_msgs = [(a.format(ens=ensemble), args) for a, args in CONTROL_SAMPLES]
        self.bus_seeds = [_osc(a, args) for a, args in self.bus_msgs]
        self.control_seeds = [_osc(a, args) for a, args in self.ctl_msgs]
        # dataclasses.fields, not __dataclass_fields__: that also holds the SPEC ClassVar.
        self.msgpack_seeds = [(codec.mqtt_topic(ensemble, m), {f.name: getattr(m, f.name) for f in fields(m)})
                              for m in SAMPLES]  # fmt: skip

    def _pick(self, weights: dict[str, int]) -> str:
        return self.rng.choices(list(weights), list(weights.values()))[0]

    def _size(self) -> int:
        """Mostly small, sometimes absurd: up to the largest UDP datagram."""
        r = self.rng.random()
        return (
            self.rng.randint(0, 64)
            if r < 0.6
            else self.rng.randint(64, 2048)
            if r < 0.95
            else self.rng.randint(2048, MAX_UDP_PAYLOAD)
        )

    def _bytes(self, n: int) -> bytes:
        return self.rng.randbytes(n)

    def _bitflip(self, data: bytes) -> bytes:
        out = bytearray(data)
        for _ in range(self.rng.randint(1, 8)):
            i = self.rng.randrange(len(out))
            out[i] ^= 1 << self.rng.randrange(8)
        return bytes(out)

    def _hostile_value(self) -> tuple[str, Any]:
        r = self.rng.random()
        if r < 0.45:
            return self.rng.choice("dfd"), self.rng.choice(HOSTILE_FLOATS)
        if r < 0.7:
            return self.rng.choice("ih"), self.rng.choice(HOSTILE_INTS)
        if r < 0.85:
            return "s", self.rng.choice(["", "x" * self.rng.randint(65, 9000), "é\u202e", "/barcelona/*"])
        return self.rng.choice("bTFN"), self._bytes(self.rng.randint(0, 64))

    # -- OSC ---------------------------------------------------------------------------------------
    def osc(self, seeds: list[bytes]) -> tuple[str, bytes]:
        """One hostile datagram built from `seeds` (valid datagrams for the target): (kind, bytes)."""
        kind = self._pick(OSC_KINDS)
        rng = self.rng
        seed = rng.choice(seeds)
        address, args = _split(seed)
        if kind == "random":
            head = rng.choice([b"", b"", b"/", b"#bundle\x00", seed[: rng.randrange(len(seed))]])
            data = head + self._bytes(self._size())
        elif kind == "bitflip":
            data = self._bitflip(seed)
        elif kind == "truncate":
            data = seed[: rng.randrange(len(seed))]
        elif kind == "type_tags":
            tags = "".join(rng.choice(TAGS) for _ in range(rng.randint(0, 12)))
            data = (
                osc_types.write_string(address)
                + osc_types.write_string(rng.choice([",", ""]) + tags)
                + seed[
                    len(osc_types.write_string(address)) + len(osc_types.write_string("," + _tags(seed))) :
                ]
            )
        elif kind == "bad_values":
            i = rng.randrange(max(1, len(args)))
            new = list(args) or [("d", 0.0)]
            new[i] = self._hostile_value()
            data = _osc(address, new)
        elif kind == "oversize":
            filler = "x" * rng.randint(8192, MAX_UDP_PAYLOAD - len(seed) - 64)
            data = (
                _osc(address, [*args, ("s", filler)])
                if rng.random() < 0.5
                else seed + self._bytes(rng.randint(8192, MAX_UDP_PAYLOAD - len(seed)))
            )
        elif kind == "extra_args":
            data = _osc(address, list(args) + [("i", 1)] * rng.randint(1, 3000))
        elif kind == "deep_array":
            n = rng.randint(100, 20000)
            data = osc_types.write_string(address) + osc_types.write_string("," + "[" * n + "]" * n)
        else:
            data = self._bundle(seeds)
        return kind, data[:MAX_UDP_PAYLOAD]

    def _bundle(self, seeds: list[bytes]) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.4:  # well-formed bundle of broken messages
            inner = [self._bitflip(rng.choice(seeds)) for _ in range(rng.randint(1, 4))]
            return (
                b"#bundle\x00"
                + b"\x00" * 7
                + b"\x01"
                + b"".join(
                    struct.pack(">i", len(m) + (-len(m) % 4)) + m + b"\x00" * (-len(m) % 4) for m in inner
                )
            )
        if r < 0.7:  # nested deeper than any receiver allows
            data = rng.choice(seeds)
            for _ in range(rng.randint(9, 40)):
                data = b"#bundle\x00" + struct.pack(">II", 0, 1) + struct.pack(">i", len(data)) + data
            return data
        # element sizes that lie
        good = encode_bundle([("/x", [("i", 1)])], None)
        return good[:16] + struct.pack(">i", rng.choice([-4, 0, 3, 1 << 30, len(good)])) + good[20:]

    # -- MQTT --------------------------------------------------------------------------------------
    def mqtt(self) -> tuple[str, str, bytes]:
        """One hostile MQTT message on a topic the ensemble's processes subscribe to."""
        kind = self._pick(MQTT_KINDS)
        rng = self.rng
        topic, fields = rng.choice(self.msgpack_seeds)
        data = dict(fields)
        packed = msgpack.packb(data, use_bin_type=True)
        if kind == "random":
            return kind, topic, self._bytes(rng.randint(0, 600))
        if kind == "bitflip":
            return kind, topic, self._bitflip(packed)
        if kind == "truncate":
            return kind, topic, packed[: rng.randrange(len(packed))]
        if kind == "oversize":
            data[rng.choice(list(data))] = "x" * rng.randint(8192, 65000)
        elif kind == "not_a_map":
            return kind, topic, msgpack.packb(rng.choice([list(data.values()), 7, "tempo", None, b"\x00"]))
        elif kind == "topic_mismatch" and topic.count("/") > 2:
            return kind, topic.rsplit("/", 1)[0] + "/someone_else", packed
        else:
            name = rng.choice(list(data))
            if kind == "wrong_types":
                data[name] = rng.choice([[1, 2], {"a": 1}, b"\xff", None, "120", True, [[[[]]]]])
            elif kind == "bad_values":
                data[name] = rng.choice([*HOSTILE_FLOATS, 2**64 - 1, -(2**63), "x" * 5000, ""])
            elif kind == "extra_field":
                data["zz_" + str(rng.randint(0, 99))] = 1
            else:
                data.pop(name)
        return kind, topic, msgpack.packb(data, use_bin_type=True)


def _tags(datagram: bytes) -> str:
    _, i = osc_types.get_string(datagram, 0)
    return osc_types.get_string(datagram, i)[0][1:] if i < len(datagram) else ""


def _split(datagram: bytes) -> tuple[str, list[tuple[str, Any]]]:
    """A valid seed back into (address, [(tag, value)]): the mutations re-encode from it."""
    ((address, args, _),) = decode_datagram(datagram)
    return address, list(zip(_tags(datagram), args, strict=False))


def stranger_controls(ensemble: str) -> tuple[list[bytes], list[bytes]]:
    """Valid, well-formed steering (stop, tempo, mute) as a stranger would send it: for the control
    port, and as bus `Control` messages for the conductor's bus port."""
    ctl = [
        _osc(f"/barcelona/{ensemble}/stop", []),
        _osc(f"/barcelona/{ensemble}/tempo", [("f", 300.0)]),
        _osc(f"/barcelona/{ensemble}/agent/*/mute", [("f", 1.0)]),
    ]
    bus = [
        bus_datagram(ensemble, Control("stop", 1.0)),
        bus_datagram(ensemble, Control("tempo", 300.0)),
        bus_datagram(ensemble, Control("mute", 1.0, "bass")),
    ]
    return ctl, bus


# -- would the receiver take it? --------------------------------------------------------------------
def _decoded(data: bytes) -> list[tuple[str, tuple[Any, ...], float | None]] | None:
    if len(data) > MAX_UDP_PAYLOAD:
        return None
    try:
        return decode_datagram(data)
    except MalformedDatagramError:
        return None
    except Exception:  # the transport counts a parser bug as `parser_error`: refused too
        return None


def carries_nothing(data: bytes) -> bool:
    """A well-formed datagram that holds no message (an empty bundle, legal OSC): a receiver has
    nothing to deliver and nothing to refuse, so it cannot show up in any counter."""
    return _decoded(data) == []


def bus_accepts(ensemble: str, data: bytes) -> bool:
    """True when the OSC bus would deliver any message of this datagram (so it could change state)."""
    for address, args, _ in _decoded(data) or ():
        try:
            codec.from_osc(ensemble, address, args)
        except Exception:  # whatever the bus would drop (or die on) counts as refused: send it
            continue
        return True
    return False


def control_accepts(ensemble: str, data: bytes) -> bool:
    """True when the control surface could act on any message (an allowed sender's control)."""
    for address, args, _ in _decoded(data) or ():
        try:
            if strip_prefix(ensemble, address) == HUMAN_NOTE:
                return True  # depends on the ensemble's human source: never count on a refusal
            parse_control(ensemble, address, args)
        except Exception:
            continue
        return True
    return False


def mqtt_accepts(ensemble: str, topic: str, payload: bytes) -> bool:
    try:
        codec.from_mqtt(ensemble, topic, payload)
    except (codec.DecodeError, TypeError, ValueError):
        return False
    return True
