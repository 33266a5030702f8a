"""The OSC bus without sockets: a loopback network held in memory, for processes sharing one loop.

`MemoryNetwork` stands for the machine's loopback interface. Each `MemoryTransport` on it is an
`OscTransport` whose datagrams go through the network instead of a UDP socket: the sender encodes
its message to OSC bytes as it would for the wire, and the receiver decodes them with the same
parser, allowlist and counters a socket feeds. So a conductor and its agents (and a control
surface, or a stranger sending garbage) can share one event loop, and with protocol.virtual_time
one clock, while the bus still speaks its wire format: only the kernel is left out.

Like UDP on loopback, a datagram to an address nobody listens on is lost (and counted), and one
sent reaches its receiver on a later turn of the loop, never inside the sender's call. A test can
add a fixed `latency_s` to every datagram. It is chosen in code only (`open_bus(..., network=)`),
never from an ensemble's YAML: a performance always runs on real sockets.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import time
from collections.abc import Callable, Sequence
from typing import Any

from protocol.transport_osc import Address, OscTransport

__all__ = ["MemoryNetwork", "MemoryTransport"]


class MemoryNetwork:
    """Endpoints by address, and the datagrams between them; one per test (or in-process run)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, latency_s: float = 0.0) -> None:
        if latency_s < 0.0:
            raise ValueError(f"latency_s: must be >= 0, got {latency_s}")
        self.clock = clock  # the receivers' clock: `received_at` of each packet
        self.latency_s = latency_s
        self._bound: dict[Address, MemoryTransport] = {}
        self.delivered = 0
        self.lost = 0  # datagrams to an address no endpoint was bound to

    def transport(self, listen: Address, peers: Sequence[Address] = (), **kwargs: Any) -> MemoryTransport:
        """An unopened endpoint, like `OscTransport(listen, peers, ...)`; binds on `async with`."""
        return MemoryTransport(self, listen, peers, **kwargs)

    @property
    def addresses(self) -> list[Address]:
        return sorted(self._bound)

    def bind(self, endpoint: MemoryTransport, setting: str) -> None:
        addr = endpoint.address
        if addr in self._bound:
            err = OSError(f"{setting}: cannot listen on {addr[0]}:{addr[1]}: the port is in use")
            err.errno = errno.EADDRINUSE
            raise err
        self._bound[addr] = endpoint

    def unbind(self, endpoint: MemoryTransport) -> None:
        if self._bound.get(endpoint.address) is endpoint:
            del self._bound[endpoint.address]

    def carry(self, data: bytes, sender: Address, target: Address) -> None:
        """Hand one datagram to whatever is bound at `target` (or at the wildcard on its port)."""
        endpoint = self._bound.get(target)
        if endpoint is None:
            wildcard = "::" if ipaddress.ip_address(target[0]).version == 6 else "0.0.0.0"
            endpoint = self._bound.get((wildcard, target[1]))
        if endpoint is None:
            self.lost += 1
            return
        self.delivered += 1
        loop = asyncio.get_running_loop()
        if self.latency_s > 0.0:
            loop.call_later(self.latency_s, endpoint.receive, bytes(data), sender)
        else:
            loop.call_soon(endpoint.receive, bytes(data), sender)


class MemoryTransport(OscTransport):
    """An OscTransport bound on a MemoryNetwork: the same encoding, parsing and counting, no socket."""

    def __init__(self, network: MemoryNetwork, listen: Address, peers: Sequence[Address] = (),
                 **kwargs: Any) -> None:
        kwargs.setdefault("clock", network.clock)
        super().__init__(listen, peers, **kwargs)
        self._network = network
        self._open = False

    async def __aenter__(self) -> MemoryTransport:
        host, port = self.address
        if port == 0:  # as the kernel would: a free port
            taken = {p for _, p in self._network.addresses}
            self._listen = (host, next(p for p in range(49152, 65536) if p not in taken))
        self._network.bind(self, self._setting)
        self._open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._open:
            self._open = False
            self._network.unbind(self)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)  # ends incoming()

    def send_raw(self, data: bytes, to: Address | None = None) -> None:
        if not self._open:
            raise RuntimeError("MemoryTransport is not open; use it with 'async with'")
        if len(data) > self._max_packet:
            raise ValueError(f"OSC packet of {len(data)} bytes exceeds max_packet={self._max_packet}")
        host, port = self.address
        if ipaddress.ip_address(host).is_unspecified:  # a wildcard socket sends from loopback
            host = "::1" if ":" in host else "127.0.0.1"
        targets = [(to[0], int(to[1]))] if to is not None else self._peers
        for target in targets:
            self._network.carry(data, (host, port), target)
            self.stats.datagrams_out += 1

    def receive(self, data: bytes, sender: Address) -> None:
        """A datagram arriving: the socket callback's path (allowlist, parser, queue)."""
        if self._open:
            self._on_datagram(data, sender)
