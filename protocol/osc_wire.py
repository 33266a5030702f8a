"""OSC on the wire: messages and bundles as bytes, and bytes back into messages.

A message here is an address plus ``(typetag, value)`` pairs; typed messages live above
(protocol/codec.py). Typetags are explicit because python-osc guesses ``'f'`` (float32) for a Python
float, and a float32 timestamp is off by about a minute: times go as ``'d'`` or as a bundle timetag.
Encoding is done here rather than with OscMessageBuilder, whose ``build()`` re-parses every datagram
it makes and refuses empty blobs. For receiving, python-osc parses leaf messages only: bundles are
walked here iteratively with a depth cap (python-osc recurses once per level, and a 64 KiB datagram
can nest ~3000), and a datagram that is not OSC raises MalformedDatagramError with a short reason
the transport counts (protocol/transport_osc.py), where python-osc drops silently.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence
from typing import Any

from pythonosc.osc_message import OscMessage, ParseError
from pythonosc.parsing import osc_types
from pythonosc.parsing.ntp import IMMEDIATELY as _NTP_IMMEDIATELY

OscArg = tuple[str, Any]  # (typetag, value)
OscItem = tuple[str, Sequence[OscArg]]  # (address, args): one message of a bundle

_BUNDLE_HEADER = b"#bundle\x00"
_NTP_DELTA = 2_208_988_800  # seconds from 1900-01-01 (NTP epoch) to 1970-01-01
_KNOWN_RECEIVE_TAGS = frozenset("ihfdsbrmtTFN[]")
MAX_ARRAY_DEPTH = 8  # str()/repr() of a value recurse per level: 3000 '[' raised RecursionError upstream


class MalformedDatagramError(ValueError):
    """A datagram that is not valid OSC; ``reason`` is the short key counted in ``stats.invalid``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


_PACK = {
    "i": struct.Struct(">i"),
    "h": struct.Struct(">q"),
    "f": struct.Struct(">f"),
    "d": struct.Struct(">d"),
}


def _encode_arg(index: int, tag: str, value: Any) -> bytes:
    """Check and encode one argument, naming it on error (python-osc's BuildError names nothing)."""
    where = f"args[{index}] ({tag!r})"
    if tag in ("i", "h", "f", "d"):
        if isinstance(value, bool) or not isinstance(value, int if tag in "ih" else (int, float)):
            raise TypeError(f"{where} must be {'an int' if tag in 'ih' else 'a number'}, not {value!r}")
        try:
            return _PACK[tag].pack(value)
        except (struct.error, OverflowError):
            raise ValueError(f"{where} = {value} does not fit") from None
    if tag == "s":
        if not isinstance(value, str) or "\x00" in value:
            raise TypeError(f"{where} must be a str without NUL, not {value!r}")
        return osc_types.write_string(value)
    if tag == "b":
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeError(f"{where} must be bytes, not {type(value).__name__}")
        raw = bytes(value)
        return struct.pack(">i", len(raw)) + raw + b"\x00" * (-len(raw) % 4)
    if tag in ("T", "F", "N"):
        return b""
    raise ValueError(f"{where}: unsupported typetag, use one of i h f d s b T F N")


def encode_message(address: str, args: Sequence[OscArg] = ()) -> bytes:
    """Encode one OSC message; pure, so codecs above can test it against golden bytes."""
    if not isinstance(address, str) or not address.startswith("/"):
        raise ValueError(f"address must be a str starting with '/', got {address!r}")
    tags = []
    body = []
    for index, pair in enumerate(args):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)):
            raise TypeError(f"args[{index}] must be a (typetag, value) pair, got {pair!r}")
        tags.append(pair[0])
        body.append(_encode_arg(index, *pair))
    return osc_types.write_string(address) + osc_types.write_string("," + "".join(tags)) + b"".join(body)


def _encode_timetag(timetag: float | None) -> bytes:
    if timetag is None:
        return _NTP_IMMEDIATELY
    if not math.isfinite(timetag) or timetag < -_NTP_DELTA:
        raise ValueError(f"timetag must be finite Unix seconds after 1900, got {timetag}")
    whole = math.floor(timetag)
    fraction = min(int((timetag - whole) * 2**32), 2**32 - 1)
    return struct.pack(">II", (whole + _NTP_DELTA) & 0xFFFFFFFF, fraction)


def encode_bundle(messages: Sequence[OscItem], timetag: float | None) -> bytes:
    """Encode a bundle of messages due at ``timetag`` (Unix seconds; ``None`` means immediately)."""
    parts = [_BUNDLE_HEADER, _encode_timetag(timetag)]
    for address, args in messages:
        encoded = encode_message(address, args)
        parts.append(struct.pack(">i", len(encoded)))
        parts.append(encoded)
    return b"".join(parts)


def _decode_message(data: bytes) -> tuple[str, tuple[Any, ...]]:
    # python-osc skips unknown typetags with a warning and misreads what follows, so check them first.
    try:
        address, index = osc_types.get_string(data, 0)
        tags = osc_types.get_string(data, index)[0] if index < len(data) else ","
    except (osc_types.ParseError, UnicodeDecodeError) as exc:
        raise MalformedDatagramError("bad_string", str(exc)) from None
    if not address.startswith("/"):
        raise MalformedDatagramError("bad_address", repr(address[:40]))
    if not tags.startswith(","):
        raise MalformedDatagramError("bad_typetags", repr(tags[:40]))
    unknown = set(tags[1:]) - _KNOWN_RECEIVE_TAGS
    if unknown:
        raise MalformedDatagramError("unknown_typetag", "".join(sorted(unknown)))
    if "[" in tags and max(itertools.accumulate((t == "[") - (t == "]") for t in tags)) > MAX_ARRAY_DEPTH:
        raise MalformedDatagramError("array_too_deep", f"OSC arrays nested over {MAX_ARRAY_DEPTH} levels")
    try:
        message = OscMessage(data)
    except (ParseError, UnicodeDecodeError, ValueError, OverflowError, IndexError) as exc:
        raise MalformedDatagramError("bad_argument", f"{type(exc).__name__}: {exc}") from None
    return address, tuple(message.params)


def decode_datagram(data: bytes, *, max_depth: int = 8) -> list[tuple[str, tuple[Any, ...], float | None]]:
    """Turn one datagram into ``(address, args, timetag)`` triples, or raise MalformedDatagramError.

    Bundles are flattened in order; nested bundles keep their own timetag. The walk is iterative and
    refuses nesting deeper than ``max_depth`` so a hostile datagram cannot exhaust the stack.
    """
    out: list[tuple[str, tuple[Any, ...], float | None]] = []
    # Stack of (bytes, timetag, depth) still to visit; popped in order so output keeps datagram order.
    pending: list[tuple[bytes, float | None, int]] = [(data, None, 0)]
    while pending:
        chunk, timetag, depth = pending.pop()
        if chunk.startswith(b"/"):
            address, args = _decode_message(chunk)
            out.append((address, args, timetag))
            continue
        if not chunk.startswith(_BUNDLE_HEADER):
            reason = "not_osc" if depth == 0 else "bad_bundle_element"
            raise MalformedDatagramError(reason, repr(chunk[:16]))
        if depth >= max_depth:
            raise MalformedDatagramError("bundle_too_deep", f"more than {max_depth} levels")
        if len(chunk) < 16:
            raise MalformedDatagramError("bad_bundle", "truncated timetag")
        seconds, fraction = struct.unpack_from(">II", chunk, 8)
        inner_tag = None if chunk[8:16] == _NTP_IMMEDIATELY else seconds - _NTP_DELTA + fraction / 2**32
        children = []
        index = 16
        while index < len(chunk):
            if index + 4 > len(chunk):
                raise MalformedDatagramError("bad_bundle", "truncated element size")
            (size,) = struct.unpack_from(">i", chunk, index)
            index += 4
            if size <= 0 or size % 4 or index + size > len(chunk):
                raise MalformedDatagramError("bad_bundle", f"element size {size} at byte {index - 4}")
            children.append((chunk[index : index + size], inner_tag, depth + 1))
            index += size
        pending.extend(reversed(children))
    return out
