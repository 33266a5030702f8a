"""The two raw bus transports against real sockets and a real mosquitto, all on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import struct
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.broker import Mosquitto
from support.until import until

from protocol.osc_wire import MalformedDatagramError, decode_datagram, encode_bundle, encode_message
from protocol.transport_mqtt import MqttAuthError, MqttPacket, MqttTransport, TlsConfig
from protocol.transport_osc import OscPacket, OscTransport

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent


AsyncTest = Callable[..., Coroutine[Any, Any, None]]
Brokers = Callable[..., Mosquitto]  # the mosquitto_factory fixture


def asynctest(timeout: float = 30.0) -> Callable[[AsyncTest], Callable[..., None]]:
    """Run an async test with a hard ceiling, so a lost packet fails the test instead of hanging it."""

    def wrap(test: AsyncTest) -> Callable[..., None]:
        @functools.wraps(test)  # keeps the signature, so pytest still injects fixtures
        def run(*args: Any, **kwargs: Any) -> None:
            asyncio.run(asyncio.wait_for(test(*args, **kwargs), timeout))

        return run

    return wrap


async def next_packet(it: AsyncIterator[T], timeout: float = 5.0) -> T:
    return await asyncio.wait_for(it.__anext__(), timeout)


def unique_topic(name: str) -> str:
    return f"barcelona/test-{uuid.uuid4().hex[:8]}/{name}"


def test_encode_message_golden_bytes() -> None:
    assert encode_message("/a", [("i", 1), ("s", "hi")]) == (b"/a\x00\x00,is\x00\x00\x00\x00\x01hi\x00\x00")
    assert encode_message("/t", [("d", 1.5)]) == b"/t\x00\x00,d\x00\x00" + struct.pack(">d", 1.5)
    assert encode_message("/n") == b"/n\x00\x00,\x00\x00\x00"


def test_encode_rejects_bad_args_naming_them() -> None:
    with pytest.raises(TypeError, match=r"args\[1\]"):
        encode_message("/x", [("i", 1), ("i", 1.5)])
    with pytest.raises(ValueError, match=r"args\[0\].*does not fit"):
        encode_message("/x", [("i", 2**31)])
    with pytest.raises(ValueError, match="typetag"):
        encode_message("/x", [("q", 1)])
    with pytest.raises(ValueError, match="address"):
        encode_message("nope", [])


def test_bundle_timetag_round_trips_to_the_microsecond() -> None:
    due = time.time() + 0.25
    decoded = decode_datagram(encode_bundle([("/a", [("i", 1)]), ("/b", [])], due))
    assert [(a, args) for a, args, _ in decoded] == [("/a", (1,)), ("/b", ())]
    assert all(abs(tag - due) < 1e-6 for _, _, tag in decoded)  # type: ignore[operator]
    assert decode_datagram(encode_bundle([("/a", [])], None)) == [("/a", (), None)]


def test_nested_bundles_flatten_in_order_and_depth_is_capped() -> None:
    inner = encode_bundle([("/inner", [("i", 2)])], 1000.0)
    outer = b"#bundle\x00" + b"\x00" * 7 + b"\x01"
    first = encode_message("/first", [("i", 1)])
    outer += struct.pack(">i", len(first)) + first + struct.pack(">i", len(inner)) + inner
    assert decode_datagram(outer) == [("/first", (1,), None), ("/inner", (2,), 1000.0)]
    deep = encode_message("/x")
    for _ in range(3000):  # python-osc would recurse 3000 levels deep here
        deep = b"#bundle\x00" + b"\x00" * 7 + b"\x01" + struct.pack(">i", len(deep)) + deep
    with pytest.raises(MalformedDatagramError) as err:
        decode_datagram(deep)
    assert err.value.reason == "bundle_too_deep"


@settings(max_examples=800, deadline=None)
@given(st.one_of(st.binary(max_size=96), st.binary(max_size=64).map(lambda b: b"/a\x00\x00," + b)))
def test_decoder_never_raises_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedDatagramError):
        decode_datagram(data)


@pytest.mark.network
@asynctest()
async def test_osc_round_trip_with_typed_args() -> None:
    async with OscTransport() as rx, OscTransport((LOOPBACK, 0), [(LOOPBACK, 0)]) as tx:
        tx.remove_peer((LOOPBACK, 0))
        tx.add_peer(rx.address)
        args = [("i", -7), ("h", 2**40), ("d", 0.1), ("f", 0.5), ("s", "bass"), ("b", b"\x00\x01\x02"),
                ("T", True), ("F", False), ("N", None)]  # fmt: skip
        tx.send("/barcelona/test/note", args)
        packet = await next_packet(rx.incoming())
        assert isinstance(packet, OscPacket) and packet.address == "/barcelona/test/note"
        assert packet.args == (-7, 2**40, 0.1, 0.5, "bass", b"\x00\x01\x02", True, False, None)
        assert (packet.sender, packet.timetag) == (tx.address, None)
        assert abs(packet.received_at - time.monotonic()) < 1.0


@pytest.mark.network
@asynctest()
async def test_osc_doubles_keep_full_precision_where_float32_would_not() -> None:
    async with OscTransport() as rx, OscTransport() as tx:
        # a wall-clock time the float32 grid (128 s apart at this size) misses by a minute: time.time()
        # itself lands within a second of a grid point once in sixty-four runs
        now = 1_796_691_840.0 + 64.0 + time.time() % 1.0
        tx.send("/t", [("d", now), ("f", now)], to=rx.address)
        packet = await next_packet(rx.incoming())
        assert packet.args[0] == now  # bit-exact
        assert abs(packet.args[1] - now) > 1.0  # the float32 pitfall: tens of seconds off


@pytest.mark.network
@asynctest()
async def test_osc_bundle_with_timetag_arrives_as_packets() -> None:
    async with OscTransport() as rx, OscTransport() as tx:
        due = time.time() + 0.5
        tx.send_bundle([("/on", [("i", 60)]), ("/off", [("i", 60)])], due, to=rx.address)
        it = rx.incoming()
        first, second = await next_packet(it), await next_packet(it)
        assert (first.address, second.address) == ("/on", "/off")
        assert first.timetag is not None and abs(first.timetag - due) < 1e-6
        assert first.received_at == second.received_at  # one datagram, one arrival


@pytest.mark.network
@asynctest()
async def test_osc_malformed_datagrams_are_counted_and_the_loop_survives() -> None:
    async with OscTransport((LOOPBACK, 0), max_packet=512) as rx:
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind((LOOPBACK, 0))
        bad = {
            "not_osc": b"hello",
            "unknown_typetag": b"/a\x00\x00,x\x00\x00",
            "bad_argument": b"/a\x00\x00,i\x00\x00\x00\x01",  # truncated int
            "bad_string": b"/\xff\xfe\x00",  # address that is not UTF-8
            "bad_bundle": b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 400) + b"/x\x00\x00",
            "too_large": b"/big\x00\x00\x00\x00" + b"\x00" * 600,  # over max_packet
        }
        for datagram in bad.values():
            raw.sendto(datagram, rx.address)
        raw.sendto(encode_message("/alive", [("i", 1)]), rx.address)
        packet = await next_packet(rx.incoming())
        raw.close()
        assert packet.address == "/alive"
        assert rx.stats.invalid == dict.fromkeys(bad, 1)
        assert rx.stats.datagrams_in == len(bad) + 1


@pytest.mark.network
@asynctest()
async def test_osc_fan_out_to_peers_and_to_one() -> None:
    async with OscTransport() as a, OscTransport() as b, OscTransport() as c, OscTransport() as tx:
        for peer in (a, b, c):
            tx.add_peer(peer.address)
        tx.add_peer(a.address)  # adding twice does not send twice
        tx.send("/all", [("i", 1)])
        for peer in (a, b, c):
            assert (await next_packet(peer.incoming())).address == "/all"
        tx.send("/one", [], to=b.address)
        tx.remove_peer(c.address)
        tx.send("/two", [])
        assert (await next_packet(b.incoming())).address == "/one"
        assert (await next_packet(a.incoming())).address == "/two"
        assert (await next_packet(b.incoming())).address == "/two"
        with pytest.raises(asyncio.TimeoutError):
            await next_packet(c.incoming(), timeout=0.1)
        assert tx.peers == (a.address, b.address)
        assert a.stats.messages_in == 2 and tx.stats.datagrams_out == 6


@pytest.mark.network
@asynctest()
async def test_osc_binds_only_what_it_is_told() -> None:
    with pytest.raises(ValueError, match="IP literal"):
        OscTransport(("", 0))
    with pytest.raises(ValueError, match="IP literal"):
        OscTransport((LOOPBACK, 0), [("somehost", 9000)])
    async with OscTransport() as rx:
        assert rx.address[0] == LOOPBACK and rx.address[1] > 0


def mqtt(broker: Mosquitto, name: str, **options: Any) -> MqttTransport:
    options.setdefault("backoff", (0.02, 0.2))
    port = options.pop("port", broker.port)
    return MqttTransport(broker.host, port, client_id=f"{name}-{uuid.uuid4().hex[:6]}", **options)


@pytest.mark.network
@asynctest()
async def test_mqtt_publish_subscribe_both_qos(mosquitto: Mosquitto) -> None:
    topic = unique_topic("notes")
    async with mqtt(mosquitto, "sub") as sub, mqtt(mosquitto, "pub") as pub:
        await sub.subscribe(topic, qos=1)
        await sub.wait_connected(5)
        await pub.wait_connected(5)
        assert await pub.publish(topic, b"\x01\x02", qos=0)
        assert await pub.publish(topic, b"\x03", qos=1)
        first = await next_packet(sub.incoming())
        second = await next_packet(sub.incoming())
        assert isinstance(first, MqttPacket)
        assert (first.topic, first.payload, first.retain) == (topic, b"\x01\x02", False)
        assert (second.payload, second.qos) == (b"\x03", 1)
        await pub.flush(5)
        assert pub.stats.published == 2 and sub.stats.received == 2


@pytest.mark.network
@asynctest()
async def test_mqtt_retained_state_reaches_a_late_subscriber(mosquitto: Mosquitto) -> None:
    topic = unique_topic("timeline")
    async with mqtt(mosquitto, "conductor") as pub:
        await pub.publish(topic, b"tempo=120", qos=1, retain=True)
        await pub.flush(5)
    async with mqtt(mosquitto, "late") as late:
        await late.subscribe(topic, qos=1)
        packet = await next_packet(late.incoming())
        assert (packet.payload, packet.retain) == (b"tempo=120", True)


WILL_CHILD = """
import asyncio, sys
from protocol.transport_mqtt import MqttTransport, Will

async def main() -> None:
    host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    will = Will(topic, b"gone", qos=1)
    async with MqttTransport(host, port, client_id="child-" + topic[-12:].replace("/", "-"), will=will,
                             backoff=(0.02, 0.2)) as t:
        seen = 0
        while True:
            await t.wait_connected(30)
            if t.stats.connects != seen:
                seen = t.stats.connects
                print("connected", seen, flush=True)
            await asyncio.sleep(0.01)  # a poll step: the test ends this loop with a SIGKILL

asyncio.run(main())
"""


@pytest.mark.network
@asynctest(timeout=60)
async def test_mqtt_last_will_is_set_again_after_reconnect_and_fires_on_sigkill(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    topic = unique_topic("agent/bass/status")
    child_log = tmp_path / "child.stderr"

    async def child_says(child: asyncio.subprocess.Process) -> list[bytes]:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 15)
        assert line, f"child exited: {child_log.read_text(errors='replace')}"
        return line.split()

    async with mqtt(mosquitto, "conductor") as watcher:
        await watcher.subscribe(topic, qos=1)
        await watcher.wait_connected(5)
        with open(child_log, "wb") as stderr:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", WILL_CHILD, mosquitto.host, str(mosquitto.port), topic,
                stdout=asyncio.subprocess.PIPE, stderr=stderr, cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        try:
            assert await child_says(child) == [b"connected", b"1"]
            await asyncio.to_thread(mosquitto.restart)
            assert await child_says(child) == [b"connected", b"2"]  # reconnected: will registered anew
            await until(lambda: watcher.stats.connects == 2 and watcher.connected, 10, "watcher back")
            child.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            packet = await next_packet(watcher.incoming(), timeout=10)
            assert (packet.topic, packet.payload) == (topic, b"gone")
            assert packet.received_at - killed_at < 2.0
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()


@pytest.mark.network
@asynctest(timeout=60)
async def test_mqtt_reconnects_after_broker_restart_and_delivers_queued_qos1(mosquitto: Mosquitto) -> None:
    control, plan = unique_topic("control"), unique_topic("plan")
    # The publisher retries slowly (1-2 s) so the subscriber is surely back and subscribed first:
    # a non-retained message published before a subscriber renews its subscription is gone by
    # MQTT's own rules, not by this transport's.
    async with mqtt(mosquitto, "sub") as sub, mqtt(mosquitto, "pub", backoff=(2.0, 2.0)) as pub:
        await sub.subscribe(control, qos=1)
        await sub.subscribe(plan, qos=1)
        await sub.wait_connected(5)
        await pub.wait_connected(5)
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: not pub.connected and not sub.connected, 5, "both to see the broker gone")
        assert not await pub.publish(control, b"note", qos=0)  # notes are not queued
        for i in range(3):
            assert await pub.publish(control, b"mute %d" % i, qos=1)
        await pub.publish(plan, b"Dm7 G7", qos=1, retain=True)
        await pub.publish(plan, b"Cmaj7", qos=1, retain=True)  # supersedes the queued plan
        assert pub.queued == 4 and pub.stats.dropped == 1
        await asyncio.to_thread(mosquitto.start)
        await sub.wait_connected(10)
        it = sub.incoming()
        got = [(await next_packet(it, 10)).payload for _ in range(4)]
        assert got == [b"mute 0", b"mute 1", b"mute 2", b"Cmaj7"]
        await pub.flush(5)
        assert pub.queued == 0 and pub.stats.reconnects == 1 and sub.stats.reconnects == 1


@pytest.mark.network
@asynctest()
async def test_mqtt_outbox_is_bounded(mosquitto: Mosquitto) -> None:
    topic = unique_topic("control")
    async with mqtt(mosquitto, "pub", outbox_limit=2, backoff=(5.0, 5.0)) as pub:
        await pub.wait_connected(5)
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: not pub.connected, 5, "the broker gone")
        for i in range(5):
            await pub.publish(topic, b"%d" % i, qos=1)
        assert pub.queued == 2 and pub.stats.dropped == 3


@pytest.mark.network
@asynctest()
async def test_mqtt_wrong_password_is_refused_at_once_and_not_retried(mosquitto_factory: Brokers) -> None:
    broker = mosquitto_factory(allow_anonymous=False, users={"conductor": "s3cret"})
    async with mqtt(broker, "bad", username="conductor", password="wrong") as bad:
        started = time.monotonic()
        with pytest.raises(MqttAuthError):
            await bad.wait_connected(5)
        assert time.monotonic() - started < 2.0 and bad.stats.connects == 0
        with pytest.raises(MqttAuthError):
            await bad.publish("x/y", b"", qos=1)
    async with mqtt(broker, "anon") as anon:
        with pytest.raises(MqttAuthError):
            await anon.wait_connected(5)
    async with mqtt(broker, "good", username="conductor", password="s3cret") as good:
        await good.wait_connected(5)


@pytest.mark.network
# paho leaves the socket of a failed TLS handshake to the garbage collector (the wrong-CA case below).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@asynctest()
async def test_mqtt_over_tls_with_and_without_client_certificate(mosquitto_factory: Brokers) -> None:
    plain_tls = mosquitto_factory(tls=True)
    mutual_tls = mosquitto_factory(tls=True, require_certificate=True)
    topic = unique_topic("tls")
    tls = TlsConfig(ca_file=plain_tls.ca_file)
    async with mqtt(plain_tls, "tls", port=plain_tls.tls_port, tls=tls) as client:
        await client.subscribe(topic, qos=1)
        await client.wait_connected(10)
        await client.publish(topic, b"secret", qos=1)
        assert (await next_packet(client.incoming())).payload == b"secret"
    cert = TlsConfig(mutual_tls.ca_file, mutual_tls.client_cert, mutual_tls.client_key)
    async with mqtt(mutual_tls, "mtls", port=mutual_tls.tls_port, tls=cert) as client:
        await client.wait_connected(10)
    # The server's own certificate is no CA: verification fails, and retrying cannot fix that.
    wrong = TlsConfig(ca_file=str(plain_tls.dir / "server.crt"))
    async with mqtt(plain_tls, "wrongca", port=plain_tls.tls_port, tls=wrong) as client:
        with pytest.raises(MqttAuthError, match="certificate verify failed"):
            await client.wait_connected(5)
