"""The bus: typed messages over either transport, with every rejected packet counted by reason.

Processes see one interface whichever transport the ensemble uses: `publish(msg)` and an async
stream of `(msg, sender)`. OSC is brokerless (each process sends to the ensemble's fixed peer list);
MQTT goes through mosquitto with retained state topics and a last will. Bad packets never reach the
caller: they are dropped, counted under a precise reason and logged once per reason.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from protocol import codec
from protocol.ensemble import Ensemble

log = logging.getLogger("barcelona.bus")

CONNECT_WAIT_S = 5.0


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
        """Packets the transport itself refused (not OSC at all, oversize…), by reason."""
        stats = getattr(getattr(self, "_transport", None), "stats", None)
        return dict(getattr(stats, "invalid", None) or {})

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
    ) -> None:
        super().__init__(ensemble)
        from protocol.transport_osc import OscTransport

        self._transport = OscTransport(listen, list(peers), setting=setting)

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


def open_sync_bus(ens: Ensemble, who: str) -> OscBus | None:
    """The UDP endpoint that carries clock-sync pings beside an MQTT bus (`bus.sync: udp`), or None
    when the bus itself carries them. It listens on the process's OSC address (`osc_endpoint`), the
    same one an OSC bus would use, and has no peers: pings name the conductor, pongs their sender."""
    if ens.bus.transport != "mqtt" or ens.bus.sync != "udp":
        return None
    return OscBus(ens.name, ens.osc_endpoint(who), [], setting=_port_field(ens, who))


def open_bus(ens: Ensemble, who: str, *, will: Any | None = None) -> Bus:
    """The bus for one process of an ensemble; `who` is 'conductor', an agent name or 'monitor'."""
    if ens.bus.transport == "mqtt":
        client_id = f"barcelona-{ens.name}-{who}-{int(time.time() * 1000) % 100000}"
        return MqttBus(ens.name, ens.bus.mqtt, client_id, will, sync_for=None if who == "monitor" else who)
    return OscBus(ens.name, ens.osc_endpoint(who), ens.osc_peers(who), setting=_port_field(ens, who))


def _port_field(ens: Ensemble, who: str) -> str:
    """What to call a process's bus port in an error line: the YAML field that places it."""
    if who == "conductor":
        return "bus.osc.base_port (the conductor)"
    names = [a.name for a in ens.agents]
    if who not in names:
        return f"bus port ({who})"
    return f"bus.osc.base_port + {1 + names.index(who)} (agent {who})"
