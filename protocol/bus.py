"""The bus: typed messages over either transport, with every rejected packet counted by reason.

Processes see one interface whichever transport the ensemble uses: `publish(msg)` and an async
stream of `(msg, sender)`. OSC is brokerless (each process sends to the ensemble's fixed peer list);
MQTT goes through mosquitto with retained state topics and a last will. Bad packets never reach the
caller: they are dropped, counted under a precise reason and logged once per reason. An OSC bus port
takes datagrams only from the ensemble's own addresses and `control.allow` (`bus_senders`); the rest
are refused on their sender address before they are parsed, and counted per sender.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from protocol import codec
from protocol.allowlist import Allowlist
from protocol.ensemble import Ensemble

if TYPE_CHECKING:
    from protocol.bus_memory import MemoryNetwork

log = logging.getLogger("barcelona.bus")

CONNECT_WAIT_S = 5.0
# What a process on this machine sends from to a port on a loopback address (the kernel's source for
# 127.0.0.0/8 is 127.0.0.1): the monitor, a test's or bench's socket, a surface on the same laptop.
LOOPBACK = ("127.0.0.1", "::1")


class Bus:
    """Base: counting of rejects shared by both transports."""

    transport_name = "none"

    def __init__(self, ensemble: str) -> None:
        self.ensemble = ensemble
        self.invalid: Counter[str] = Counter()
        self.sent = 0
        self.received = 0

    def reject(self, exc: Exception) -> None:
        reason = exc.reason if isinstance(exc, codec.DecodeError) else type(exc).__name__
        if reason not in self.invalid:
            log.warning("dropped a bad %s message: %s", self.transport_name, exc)
        self.invalid[reason] += 1

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid.values()) + sum(self.transport_invalid().values())

    def transport_invalid(self) -> dict[str, int]:
        """Packets the transport itself refused (not OSC at all, oversize…), by reason; a stranger's,
        turned away on its sender address before parsing, under `refused`."""
        stats = getattr(getattr(self, "_transport", None), "stats", None)
        reasons = dict(getattr(stats, "invalid", None) or {})
        if refused := getattr(stats, "refused", 0):
            reasons["refused"] = reasons.get("refused", 0) + refused
        return reasons

    @property
    def refused(self) -> dict[str, int]:
        """Datagrams refused on their sender address, by sender (none over MQTT: the broker's ACL
        decides who may publish, docs/security.md)."""
        return {}

    async def __aenter__(self) -> Bus:
        raise NotImplementedError

    async def __aexit__(self, *exc: object) -> None:
        raise NotImplementedError

    async def publish(self, msg: Any, to: tuple[str, int] | None = None) -> None:
        raise NotImplementedError

    def messages(self) -> AsyncIterator[tuple[Any, Any, float]]:
        """(message, sender, received_at): the arrival time is the transport's, stamped in its receive
        callback before any queue, so clock sync does not count this process's backlog as network."""
        raise NotImplementedError


class OscBus(Bus):
    transport_name = "osc"

    def __init__(
        self,
        ensemble: str,
        listen: tuple[str, int],
        peers: Sequence[tuple[str, int]],
        setting: str = "listen",
        network: MemoryNetwork | None = None,
        allow: Allowlist | None = None,
    ) -> None:
        super().__init__(ensemble)
        from protocol.transport_osc import OscTransport

        self._allow = allow  # checked on each datagram's sender before the transport parses it
        accept = None if allow is None else allow.allows
        self._transport: OscTransport
        if network is not None:  # the same bus on an in-memory loopback (protocol/bus_memory.py)
            self._transport = network.transport(listen, list(peers), setting=setting, accept=accept)
        else:
            self._transport = OscTransport(listen, list(peers), setting=setting, accept=accept)

    @property
    def refused(self) -> dict[str, int]:
        return {} if self._allow is None else dict(self._allow.refused)

    @property
    def raw(self) -> Any:
        return self._transport

    async def __aenter__(self) -> OscBus:
        await self._transport.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._transport.__aexit__(*exc)

    async def publish(self, msg: Any, to: tuple[str, int] | None = None) -> None:
        address, args = codec.to_osc(self.ensemble, msg)
        self._transport.send(address, args, to=to)
        self.sent += 1

    async def messages(self) -> AsyncIterator[tuple[Any, Any, float]]:
        async for packet in self._transport.incoming():
            try:
                msg = codec.from_osc(self.ensemble, packet.address, packet.args)
            except (codec.DecodeError, TypeError, ValueError) as exc:
                self.reject(exc)
                continue
            self.received += 1
            yield msg, packet.sender, packet.received_at


class MqttBus(Bus):
    transport_name = "mqtt"

    def __init__(
        self, ensemble: str, config: Any, client_id: str, will: Any | None = None, sync_for: str | None = None
    ) -> None:
        super().__init__(ensemble)
        self.sync_for = sync_for
        from protocol.transport_mqtt import MqttTransport, TlsConfig, Will

        tls = None
        if config.tls is not None:
            tls = TlsConfig(
                ca_file=config.tls.ca_file,
                cert_file=config.tls.cert_file,
                key_file=config.tls.key_file,
                insecure=config.tls.insecure,
            )
        mqtt_will = None
        if will is not None:
            kind = codec.kind_of(will)
            mqtt_will = Will(codec.mqtt_topic(ensemble, will), codec.to_msgpack(will), kind.qos, kind.retain)
        self._transport = MqttTransport(
            config.host,
            config.port,
            client_id=client_id,
            username=config.username,
            password=config.password,
            tls=tls,
            keepalive=config.keepalive,
            will=mqtt_will,
        )

    @property
    def raw(self) -> Any:
        return self._transport

    async def __aenter__(self) -> MqttBus:
        await self._transport.__aenter__()
        for topic in codec.mqtt_filters(self.ensemble, self.sync_for):
            await self._transport.subscribe(topic, 1)
        try:
            await self._transport.wait_connected(CONNECT_WAIT_S)
        except TimeoutError as exc:
            # Keep going: the reconnect loop goes on, and state messages are queued until the link is up.
            log.warning("%s; still trying", exc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._transport.__aexit__(*exc)

    async def publish(self, msg: Any, to: tuple[str, int] | None = None) -> None:
        kind = codec.kind_of(msg)
        await self._transport.publish(
            codec.mqtt_topic(self.ensemble, msg), codec.to_msgpack(msg), kind.qos, kind.retain
        )
        self.sent += 1

    async def messages(self) -> AsyncIterator[tuple[Any, Any, float]]:
        async for packet in self._transport.incoming():
            try:
                msg = codec.from_mqtt(self.ensemble, packet.topic, packet.payload)
            except (codec.DecodeError, TypeError, ValueError) as exc:
                self.reject(exc)
                continue
            self.received += 1
            yield msg, packet.topic, packet.received_at


def bus_senders(ens: Ensemble) -> list[str]:
    """Who may send to an OSC bus port (the bus itself, or the sync port beside an MQTT bus): this
    machine's loopback, the conductor's and every agent's `address`, and the `control.allow`
    networks (a surface may send `Control` messages to the conductor's bus port; the conductor
    holds those to `control.allow` again once decoded). Each process sends from the address its
    bus socket is bound to, which the schema makes an IP literal, so no name is looked up here."""
    own = [*LOOPBACK, ens.conductor.address, *(a.address for a in ens.agents)]
    return list(dict.fromkeys([*own, *ens.control.allow]))


def _osc_bus(ens: Ensemble, who: str, peers: Sequence[tuple[str, int]], network: MemoryNetwork | None,
             refused: Counter[str] | None) -> OscBus:
    allow = Allowlist(bus_senders(ens), refused)
    return OscBus(ens.name, ens.osc_endpoint(who), peers, setting=_port_field(ens, who), network=network,
                  allow=allow)


def open_sync_bus(
    ens: Ensemble, who: str, *, network: MemoryNetwork | None = None, refused: Counter[str] | None = None
) -> OscBus | None:
    """The UDP endpoint that carries clock-sync pings beside an MQTT bus (`bus.sync: udp`), or None
    when the bus itself carries them. It listens on the process's OSC address (`osc_endpoint`), the
    same one an OSC bus would use, takes datagrams from the same senders, and has no peers: pings
    name the conductor, pongs their sender. On an in-memory `network` the bus is OSC whatever the
    YAML says, so it carries the pings too. `refused` as for `open_bus`."""
    if ens.bus.transport != "mqtt" or ens.bus.sync != "udp" or network is not None:
        return None
    return _osc_bus(ens, who, [], None, refused)


def open_bus(
    ens: Ensemble,
    who: str,
    *,
    will: Any | None = None,
    network: MemoryNetwork | None = None,
    refused: Counter[str] | None = None,
) -> Bus:
    """The bus for one process of an ensemble; `who` is 'conductor', an agent name or 'monitor'.

    With `network` (tests, in-process runs; never the YAML) it is the OSC bus on that in-memory
    loopback, at the addresses the YAML's OSC bus would use, whichever transport the YAML names.
    An OSC bus counts the strangers it refuses per sender in `refused` when given (the conductor
    passes its control port's table, so its stats name a stranger once, whichever port it tried)."""
    if network is None and ens.bus.transport == "mqtt":
        client_id = f"barcelona-{ens.name}-{who}-{int(time.time() * 1000) % 100000}"
        return MqttBus(ens.name, ens.bus.mqtt, client_id, will, sync_for=None if who == "monitor" else who)
    return _osc_bus(ens, who, ens.osc_peers(who), network, refused)


def _port_field(ens: Ensemble, who: str) -> str:
    """What to call a process's bus port in an error line: the YAML field that places it."""
    if who == "conductor":
        return "bus.osc.base_port (the conductor)"
    names = [a.name for a in ens.agents]
    if who not in names:
        return f"bus port ({who})"
    return f"bus.osc.base_port + {1 + names.index(who)} (agent {who})"
