"""OSC over UDP: one socket that both listens and sends, moving addresses and typed arguments only.

The bytes themselves are protocol/osc_wire.py's. Every datagram dropped here (malformed, too large,
or over a full queue) is counted by reason and logged once per reason, so a lossy link is observable
instead of silently quiet.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol.osc_wire import (
    MalformedDatagramError,
    OscArg,
    OscItem,
    decode_datagram,
    encode_bundle,
    encode_message,
)

log = logging.getLogger(__name__)

MAX_UDP_PAYLOAD = 65507
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class OscPacket:
    """One received OSC message; a bundle arrives as one packet per message it holds.

    ``timetag`` is the enclosing bundle's time in Unix seconds, or ``None`` for a bare message or an
    "immediately" bundle. ``received_at`` comes from the transport's clock (monotonic by default),
    so it compares with the local timing code, not with wall-clock timetags.
    """

    address: str
    args: tuple[Any, ...]
    sender: Address
    received_at: float
    timetag: float | None = None


@dataclass(slots=True)
class OscStats:
    """Counters that make a lossy UDP link observable instead of silently quiet."""

    datagrams_in: int = 0
    messages_in: int = 0
    datagrams_out: int = 0
    send_errors: int = 0
    dropped: int = 0  # good packets lost because the incoming queue was full
    callback_errors: int = 0
    refused: int = 0  # datagrams from senders `accept` turned away, never parsed
    invalid: dict[str, int] = field(default_factory=dict)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: OscTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" for a peer that is not up yet lands here; it must not stop the loop.
        self._owner._count_send_error(exc)


class _Incoming:
    """Cancel-safe async iterator: ``asyncio.wait_for(anext(it), t)`` can time out and be retried."""

    def __init__(self, owner: OscTransport) -> None:
        self._owner = owner

    def __aiter__(self) -> _Incoming:
        return self

    async def __anext__(self) -> OscPacket:
        item = await self._owner._queue.get()
        if item is None:
            self._owner._queue.put_nowait(None)  # let any other reader see the end too
            raise StopAsyncIteration
        return item


def _check_ip(addr: Address, what: str) -> Address:
    host, port = addr
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} host must be an IP literal (see resolve_peer), got {host!r}") from None
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} port out of range: {port}")
    return (host, int(port))


class OscTransport:
    """An ``async with`` UDP endpoint bound to exactly ``listen`` that fans messages out to peers.

    There are no background loops: the datagram protocol's callback is the receive loop, and UDP has
    no connection to keep alive. ``accept`` (a sender-host predicate, e.g. an allowlist) runs on the
    sender's address before a byte is parsed: a stranger's datagram costs one lookup, not a decode,
    and is counted in ``stats.refused``, never in ``stats.invalid``. Packets go to ``on_packet`` when
    given (lowest latency, called on the event loop; its errors are counted, never raised into the
    loop) or else to ``incoming()``. Sending is synchronous and must happen on the event loop's
    thread (asyncio transports are not thread-safe); from another thread use
    ``loop.call_soon_threadsafe(transport.send, ...)``.
    """

    def __init__(
        self,
        listen: Address = ("127.0.0.1", 0),
        peers: Sequence[Address] = (),
        *,
        max_packet: int = MAX_UDP_PAYLOAD,
        max_queue: int = 4096,
        on_packet: Callable[[OscPacket], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        accept: Callable[[str], bool] | None = None,
        setting: str = "listen",
    ) -> None:
        self._listen = _check_ip(listen, "listen")
        self._accept = accept
        self._setting = setting  # the setting that chose this port, for the error line when it is taken
        if not 0 < max_packet <= MAX_UDP_PAYLOAD:
            raise ValueError(f"max_packet must be in 1..{MAX_UDP_PAYLOAD}, got {max_packet}")
        self._max_packet = max_packet
        self._peers: list[Address] = []
        for peer in peers:
            self.add_peer(peer)
        self._on_packet = on_packet
        self._clock = clock
        self._queue: asyncio.Queue[OscPacket | None] = asyncio.Queue(maxsize=max_queue)
        self._transport: asyncio.DatagramTransport | None = None
        self._logged: set[str] = set()
        self.stats = OscStats()

    async def __aenter__(self) -> OscTransport:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=self._listen
            )
        except OSError as exc:
            host, port = self._listen
            reason = exc.strerror or re.sub(r"^\[Errno -?\d+\] ", "", str(exc))
            if exc.errno == errno.EADDRINUSE:
                reason = "the port is in use (another ensemble still playing?)"
            err = OSError(f"{self._setting}: cannot listen on UDP {host}:{port}: {reason}")
            err.errno = exc.errno  # kept for callers; str() stays the one line without "[Errno 98]"
            raise err from None
        self._transport, bound = transport, transport.get_extra_info("sockname")
        self._listen = (str(bound[0]), int(bound[1]))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)  # ends incoming()

    @property
    def address(self) -> Address:
        """The bound address; with port 0 requested, the port the kernel chose."""
        return self._listen

    @property
    def peers(self) -> tuple[Address, ...]:
        return tuple(self._peers)

    def add_peer(self, peer: Address) -> None:
        """Add a fan-out destination; IP literals only, so sending never blocks on DNS."""
        checked = _check_ip(peer, "peer")
        if ipaddress.ip_address(checked[0]).version != ipaddress.ip_address(self._listen[0]).version:
            raise ValueError(f"peer {checked} is not the same IP version as the listen address")
        if checked not in self._peers:
            self._peers.append(checked)

    def remove_peer(self, peer: Address) -> None:
        """Forget a peer; forgetting one that was never added is not an error (roster churn)."""
        checked = (peer[0], int(peer[1]))
        if checked in self._peers:
            self._peers.remove(checked)

    def send(self, address: str, args: Sequence[OscArg] = (), to: Address | None = None) -> None:
        """Send one message to ``to``, or to every peer."""
        self.send_raw(encode_message(address, args), to)

    def send_bundle(
        self, messages: Sequence[OscItem], timetag: float | None, to: Address | None = None
    ) -> None:
        """Send messages as one bundle due at ``timetag`` (Unix seconds, ``None`` = immediately)."""
        self.send_raw(encode_bundle(messages, timetag), to)

    def send_raw(self, data: bytes, to: Address | None = None) -> None:
        """Send pre-encoded bytes; an oversize packet is the caller's bug, so it raises."""
        if self._transport is None:
            raise RuntimeError("OscTransport is not open; use it with 'async with'")
        if len(data) > self._max_packet:
            raise ValueError(f"OSC packet of {len(data)} bytes exceeds max_packet={self._max_packet}")
        targets = [_check_ip(to, "to")] if to is not None else self._peers
        for target in targets:
            try:
                self._transport.sendto(data, target)
                self.stats.datagrams_out += 1
            except OSError as exc:
                self._count_send_error(exc)

    def incoming(self) -> AsyncIterator[OscPacket]:
        """Iterate received packets until the transport closes."""
        if self._on_packet is not None:
            raise RuntimeError("this transport delivers to on_packet; incoming() would never yield")
        return _Incoming(self)

    def _on_datagram(self, data: bytes, sender: Address) -> None:  # runs in the loop's datagram callback
        received_at = self._clock()
        self.stats.datagrams_in += 1
        if self._accept is not None and not self._accept(sender[0]):
            self.stats.refused += 1
            return
        try:
            if len(data) > self._max_packet:
                raise MalformedDatagramError("too_large", f"{len(data)} bytes")
            decoded = decode_datagram(data)
        except MalformedDatagramError as exc:
            self._count_invalid(exc.reason, exc.detail, sender)
            return
        except Exception as exc:  # a parser bug must cost one packet, never the loop
            self._count_invalid("parser_error", f"{type(exc).__name__}: {exc}", sender)
            return
        for address, args, timetag in decoded:
            self._deliver(OscPacket(address, args, sender, received_at, timetag))

    def _deliver(self, packet: OscPacket) -> None:
        self.stats.messages_in += 1
        if self._on_packet is not None:
            try:
                self._on_packet(packet)
            except Exception as exc:
                self.stats.callback_errors += 1
                self._log_once("callback", "OSC on_packet callback failed: %r", exc)
            return
        if self._queue.full():
            self.stats.dropped += 1
            self._log_once("queue_full", "OSC incoming queue full: dropping packets")
        else:
            self._queue.put_nowait(packet)

    def _count_invalid(self, reason: str, detail: str, sender: Address) -> None:
        self.stats.invalid[reason] = self.stats.invalid.get(reason, 0) + 1
        self._log_once(reason, "dropped malformed OSC datagram from %s: %s %s", sender, reason, detail)

    def _count_send_error(self, exc: Exception) -> None:
        self.stats.send_errors += 1
        self._log_once(f"send:{type(exc).__name__}", "OSC send error: %s", exc)

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(msg + " (further ones are only counted in stats)", *args)


async def resolve_peer(host: str, port: int, *, ipv6: bool = False) -> Address:
    """Resolve a host name once, off the hot path, into the IP literal that ``add_peer`` wants."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)  # raises if none
    sockaddr = infos[0][4]
    return (str(sockaddr[0]), int(sockaddr[1]))
