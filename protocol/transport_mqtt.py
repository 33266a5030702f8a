"""MQTT transport: one broker session that outlives broker restarts and dead links.

aiomqtt gives one connection per ``async with Client``; a band cannot stop when the broker restarts.
So a reconnect loop (``mqtt-connection``, jittered exponential backoff) makes a fresh client per
connection (which sets the last will every time) and renews subscriptions before ``connected``.
QoS >= 1 goes through a bounded, ordered outbox (protocol/mqtt_outbox.py, sent by ``mqtt-outbox``),
so a plan or control change made while the link is down is sent when it returns; a queued retained
message replaces an older one on its topic (only the latest state matters). QoS 0 (notes) goes at
once or is dropped and counted: a late note is worse than none. Keepalive and dead-link detection
run in paho's misc loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import aiomqtt

from protocol.mqtt_outbox import MqttOutbox, Outgoing

log = logging.getLogger(__name__)

# Refusals no retry fixes (3.1.1 and 5 codes): protocol, client id, credentials, not authorised, banned.
_FATAL_CONNACK = frozenset({1, 2, 4, 5, 132, 133, 134, 135, 138, 140})


class MqttTransportError(Exception):
    """The transport cannot do what was asked (closed, subscription refused)."""


class MqttAuthError(MqttTransportError):
    """The broker refused our credentials or client id, or its TLS certificate failed verification:
    a configuration error that retrying cannot fix (a failed TLS handshake also leaks a socket in paho)."""


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the broker. ``insecure`` skips the host-name check only (like ``mosquitto_sub --insecure``);
    the certificate chain is still verified against ``ca_file`` (system CAs when ``None``)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not os.path.isfile(path):
                raise FileNotFoundError(f"TlsConfig.{name}: no such file {path!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("TlsConfig: cert_file and key_file go together")


@dataclass(frozen=True, slots=True)
class Will:
    """What the broker publishes for us when our link dies without a DISCONNECT."""

    topic: str
    payload: bytes = b""
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class MqttPacket:
    """One received message; ``received_at`` is the transport clock (monotonic by default)."""

    topic: str
    payload: bytes
    retain: bool
    received_at: float
    qos: int = 0


@dataclass(slots=True)
class MqttStats:
    connects: int = 0
    reconnects: int = 0
    published: int = 0
    received: int = 0
    dropped: int = 0  # QoS 0 sent while down, or oldest QoS >= 1 pushed out of a full outbox
    dropped_incoming: int = 0  # oldest received packets discarded because nobody read them
    invalid: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None


def _check(qos: int, topic: str = "/") -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
    # A bad topic must fail here, in the caller: in the outbox it would fail on every reconnect.
    if not isinstance(topic, str) or not topic or any(c in topic for c in "+#\x00"):
        raise ValueError(f"publish topic must be a non-empty str without '+', '#' or NUL: {topic!r}")


class MqttTransport:
    """An ``async with`` broker session moving topics and bytes. Entering returns at once (an agent may
    start before its broker); ``wait_connected`` waits for the link and raises MqttAuthError when the
    broker refuses us (never retried). Leaving sends queued QoS >= 1 messages for up to
    ``flush_timeout`` seconds, then disconnects cleanly, so no last will is published."""

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        tls: TlsConfig | None = None,
        keepalive: int = 5,
        will: Will | None = None,
        outbox_limit: int = 1024,
        max_incoming: int = 10_000,
        max_payload: int = 256 * 1024,
        backoff: tuple[float, float] = (0.05, 5.0),
        op_timeout: float = 5.0,
        flush_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not client_id:
            raise ValueError("client_id must be non-empty: the broker tells clients apart by it")
        if will is not None:
            _check(will.qos, will.topic)
        self._host, self._port, self._client_id = host, int(port), client_id
        self._username, self._password = username, password
        self._tls, self._keepalive, self._will = tls, keepalive, will
        self._outbox = MqttOutbox(outbox_limit)
        self._max_payload = max_payload
        self._backoff = backoff  # (first retry delay, cap), jittered to 50-100 %
        self._op_timeout, self._flush_timeout, self._clock = op_timeout, flush_timeout, clock
        self._subscriptions: dict[str, int] = {}
        self._queue: asyncio.Queue[MqttPacket | None] = asyncio.Queue(maxsize=max_incoming)
        self._client: aiomqtt.Client | None = None
        self._connected, self._closing = asyncio.Event(), asyncio.Event()
        self._fatal: MqttAuthError | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = MqttStats()

    async def __aenter__(self) -> MqttTransport:
        self._task = asyncio.create_task(self._connection_loop(), name=f"mqtt-connection:{self._client_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.connected and self._outbox:
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await self.flush(self._flush_timeout)
        self._closing.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=self._op_timeout)  # a clean DISCONNECT: no will
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._end_incoming()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def queued(self) -> int:
        """QoS >= 1 messages waiting for a link."""
        return len(self._outbox)

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for a live, subscribed session; raise MqttAuthError at once if the broker refused us."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._connected.is_set():  # re-checked: the link may drop again before we wake
            if self._fatal is not None:
                raise self._fatal
            if self._closing.is_set():
                raise MqttTransportError("transport closed before it connected")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"bus.mqtt: cannot connect to {self._host}:{self._port} within {timeout} s: "
                    f"{_reason(self.stats.last_error or 'no answer')}"
                )
            waiters = [asyncio.ensure_future(event.wait()) for event in (self._connected, self._closing)]
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued QoS >= 1 message has been acknowledged by the broker."""
        await asyncio.wait_for(self._outbox.wait_empty(), timeout)

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Returns False if dropped (QoS 0, no link). QoS >= 1 is queued and sent in order: see ``flush``."""
        _check(qos, topic)
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError(f"payload must be bytes, got {type(payload).__name__}")
        if self._fatal is not None:
            raise self._fatal
        if qos == 0:
            client = self._client if self._connected.is_set() else None
            try:
                if client is not None:
                    await client.publish(topic, bytes(payload), 0, retain, timeout=self._op_timeout)
                    self.stats.published += 1
                    return True
            except aiomqtt.MqttError as exc:
                self.stats.last_error = str(exc)
            self.stats.dropped += 1
            return False
        self.stats.dropped += self._outbox.put(Outgoing(topic, bytes(payload), qos, retain))
        return True

    async def subscribe(self, topic_filter: str, qos: int = 0) -> None:
        """Subscribe now if connected, and again after every reconnect."""
        _check(qos)
        self._subscriptions[topic_filter] = qos
        client = self._client
        if client is not None:
            try:
                granted = await client.subscribe(topic_filter, qos, timeout=self._op_timeout)
            except aiomqtt.MqttError as exc:  # link lost mid-call: renewed on reconnect
                self.stats.last_error = str(exc)
                return
            if _refused([topic_filter], granted):
                del self._subscriptions[topic_filter]
                raise MqttTransportError(f"broker refused subscription to {topic_filter!r} (ACL?)")

    def incoming(self) -> AsyncIterator[MqttPacket]:
        """Received packets, across reconnects, until close; cancel-safe: ``wait_for(anext(it), t)``."""
        return self

    def __aiter__(self) -> MqttTransport:
        return self

    async def __anext__(self) -> MqttPacket:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later reader sees the end too
            if self._fatal is not None:
                raise self._fatal
            raise StopAsyncIteration
        return item

    def _make_client(self) -> aiomqtt.Client:
        tls, w = self._tls, self._will
        return aiomqtt.Client(
            self._host,
            self._port,
            identifier=self._client_id,
            username=self._username,
            password=self._password,
            keepalive=self._keepalive,
            will=aiomqtt.Will(w.topic, w.payload, w.qos, w.retain) if w else None,
            tls_params=aiomqtt.TLSParameters(tls.ca_file, tls.cert_file, tls.key_file) if tls else None,
            tls_insecure=tls.insecure if tls else None,
            timeout=self._op_timeout,
            clean_session=True,
        )

    async def _connection_loop(self) -> None:
        attempt = 0
        while not self._closing.is_set():
            started = self._clock()
            was_up = False
            try:
                async with self._make_client() as client:
                    was_up = True
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if self.stats.last_error != str(exc):  # log each new error once, not every retry
                    what = "lost the link to" if was_up else "cannot connect to"
                    log.warning("bus.mqtt: %s %s:%d: %s", what, self._host, self._port, _reason(exc))
                self.stats.last_error = str(exc)
                if not was_up and _is_fatal(exc):
                    self._fatal = MqttAuthError(
                        f"bus.mqtt: cannot connect to {self._host}:{self._port}: {_reason(exc)}"
                    )
                    self._closing.set()
                    self._end_incoming()
                    return
            except Exception as exc:  # a bug here must not end the band's only link for good
                log.exception("MQTT session failed unexpectedly; reconnecting")
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                self._client = None
                self._connected.clear()
            if self._closing.is_set():
                return
            if was_up and self._clock() - started > 2 * self._backoff[1]:
                attempt = 0  # a healthy session earns a fast first retry; a flapping one backs off
            low, high = self._backoff
            delay = min(high, low * 2**attempt) * random.uniform(0.5, 1.0)
            attempt = min(attempt + 1, 30)
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), delay)

    async def _session(self, client: aiomqtt.Client) -> None:
        """Run one connection: renew subscriptions, then receive and drain the outbox until it ends."""
        self._client, client.pending_calls_threshold = client, 1000  # note bursts are normal, not a leak
        # Nagle + the peer's delayed ACK hold a small publish up to 40 ms: a sync leg that late is a
        # 20 ms clock-offset error. Every message here is small and urgent.
        sock = client._client.socket()
        if isinstance(sock, socket.socket):  # TLS too (SSLSocket is one); a websocket wrapper is not
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._subscriptions:
            filters = list(self._subscriptions)
            granted = await client.subscribe([(f, self._subscriptions[f]) for f in filters])
            if refused := _refused(filters, granted):
                log.error("broker refused resubscription to %s (ACL?)", refused)
        self.stats.reconnects += self.stats.connects > 0
        self.stats.connects += 1
        self.stats.last_error = None  # so the next outage's first error is logged again
        self._connected.set()
        log.info("MQTT connected to %s:%d as %s", self._host, self._port, self._client_id)
        receive = asyncio.create_task(self._receive_loop(client), name="mqtt-receive")
        outbox = asyncio.create_task(self._outbox_loop(client), name="mqtt-outbox")
        closing = asyncio.create_task(self._closing.wait(), name="mqtt-closing")
        try:
            await asyncio.wait({receive, outbox, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._connected.clear()
            for task in (receive, outbox, closing):
                task.cancel()
            await asyncio.gather(receive, outbox, closing, return_exceptions=True)
        for task in (receive, outbox):
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _receive_loop(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, (bytes, bytearray)) or len(payload) > self._max_payload:
                self._count_invalid("too_large", f"{message.topic.value}: {len(payload or b'')} bytes")
                continue
            topic, retain, qos = message.topic.value, bool(message.retain), int(message.qos)
            packet = MqttPacket(topic, bytes(payload), retain, self._clock(), qos)
            self.stats.received += 1
            if self._queue.full():
                self._queue.get_nowait()  # fresh state beats stale: shed the oldest
                self.stats.dropped_incoming += 1
            self._queue.put_nowait(packet)

    async def _outbox_loop(self, client: aiomqtt.Client) -> None:
        while True:
            item = await self._outbox.next()
            try:
                await client.publish(*item, timeout=self._op_timeout)
            except (aiomqtt.MqttError, asyncio.CancelledError):
                # at-least-once: resend after reconnect
                self.stats.dropped += self._outbox.put(item, front=True)
                raise
            self.stats.published += 1

    def _count_invalid(self, reason: str, detail: str) -> None:
        if reason not in self.stats.invalid:
            log.warning("dropped MQTT message: %s (%s); further ones counted, not logged", reason, detail)
        self.stats.invalid[reason] = self.stats.invalid.get(reason, 0) + 1

    def _end_incoming(self) -> None:
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


def _refused(filters: list[str], granted: Iterable[object]) -> list[str]:
    codes = [int(getattr(code, "value", code)) for code in granted]  # type: ignore[call-overload]
    return [f for f, code in zip(filters, codes, strict=False) if code >= 0x80]


def _reason(exc: object) -> str:
    """The words of an error without paho's `[Errno 111] ` or `[code:135] ` prefix: the line says where."""
    return re.sub(r"^\[(Errno -?\d+|code:\d+)\] ", "", str(exc))


def _is_fatal(exc: aiomqtt.MqttError) -> bool:
    # aiomqtt turns a TLS verification error into a bare MqttError(str(exc)): only the text is left.
    value = getattr(getattr(exc, "rc", None), "value", getattr(exc, "rc", None))
    return value in _FATAL_CONNACK or "certificate verify failed" in str(exc).lower()
