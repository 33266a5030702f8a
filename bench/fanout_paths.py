"""The paths a note takes in the fan-out bench, and the sender and receiver processes that time them.

WHY apart from the bench: what travels on each path (our bus or the raw library, OSC or MQTT, which
broker) and how each end stamps it is the measurement itself; the bench (fanout.py) starts the
brokers and receivers, runs ``send_all`` and turns the stamps into tables. The receivers run in
spawned processes, so everything they need is importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.procs import die_with_parent

ENS = "fan"
HOST = "127.0.0.1"
SOURCE = "human"
RAW_TOPIC = f"barcelona/raw/note/{SOURCE}"  # as long as ours, barcelona/fan/note/human
WARMUP = 30  # notes per path before measuring: first-use costs (imports, caches, TCP slow start)
CHUNK = 20  # notes per path before switching paths: noise bursts (100s of ms) hit every path
READY_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Route:
    """One way a note can travel: `kind` is ours/raw, `transport` osc/mqtt, `broker` stock/nodelay/-."""

    kind: str
    transport: str
    broker: str = "-"

    @property
    def name(self) -> str:
        return f"{self.kind} {self.transport}" + (f" {self.broker}" if self.broker != "-" else "")


PATHS = (
    Route("ours", "osc"),
    Route("raw", "osc"),
    Route("ours", "mqtt", "stock"),
    Route("raw", "mqtt", "stock"),
    Route("ours", "mqtt", "nodelay"),
    Route("raw", "mqtt", "nodelay"),
)


def note_for(t: float) -> Any:
    from protocol.messages import Note

    return Note(start_beat=t, duration_beats=1.0, pitch=60, velocity=100, channel=0, source=SOURCE)


def raw_osc_message(t: float) -> Any:
    """The same datagram our codec makes, built the way a python-osc user would."""
    from pythonosc.osc_message_builder import OscMessageBuilder

    b = OscMessageBuilder(f"/barcelona/{ENS}/note")
    for value, tag in ((t, "d"), (1.0, "d"), (60, "i"), (100, "i"), (0, "i"), (SOURCE, "s")):
        b.add_arg(value, tag)
    return b.build()


def raw_payload(t: float, size: int) -> bytes:
    return struct.pack(">d", t).ljust(size, b"\0")


def set_nodelay(sock: Any) -> bool:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True
    except (OSError, AttributeError):
        return False


def paho_client(client_id: str, nodelay: bool) -> Any:
    import paho.mqtt.client as paho

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
    if nodelay:
        c.on_socket_open = lambda _c, _u, sock: set_nodelay(sock)
    return c


# -- receivers ------------------------------------------------------------------------------------
def receiver_main(index: int, brokers: dict[str, int], conn: Connection) -> None:
    """One receiver process: an endpoint per path, each recording (sent, arrived) per note."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; Ctrl-C goes to it
    logging.getLogger("protocol").setLevel(logging.ERROR)  # a broker gone at Ctrl-C is no news here
    try:
        asyncio.run(_receiver(index, brokers, conn))
    finally:
        conn.close()


async def _receiver(index: int, brokers: dict[str, int], conn: Connection) -> None:
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import AsyncIOOSCUDPServer

    from protocol.bus import MqttBus, OscBus
    from protocol.ensemble import MqttBusConfig
    from protocol.messages import Note

    clock = time.monotonic
    rec: dict[str, list[tuple[float, float]]] = {p.name: [] for p in PATHS}
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        ours_osc = await stack.enter_async_context(OscBus(ENS, (HOST, 0), []))

        def on_raw_osc(_address: str, *args: Any) -> None:
            rec["raw osc"].append((args[0], clock()))

        disp = Dispatcher()
        disp.map(f"/barcelona/{ENS}/note", on_raw_osc)
        raw_transport, _ = await AsyncIOOSCUDPServer((HOST, 0), disp, loop).create_serve_endpoint()
        stack.callback(raw_transport.close)
        raw_osc_port = int(raw_transport.get_extra_info("sockname")[1])

        tasks = []

        async def consume(bus: Any, name: str) -> None:
            async for msg, _, _ in bus.messages():
                t = clock()
                if isinstance(msg, Note):
                    rec[name].append((msg.start_beat, t))

        tasks.append(asyncio.create_task(consume(ours_osc, "ours osc")))
        for broker, port in brokers.items():
            bus = MqttBus(ENS, MqttBusConfig(host=HOST, port=port), f"fan-rx{index}-{broker}")
            await stack.enter_async_context(bus)
            tasks.append(asyncio.create_task(consume(bus, f"ours mqtt {broker}")))
            subscribed = threading.Event()
            raw = paho_client(f"fan-rawrx{index}-{broker}", broker == "nodelay")
            name = f"raw mqtt {broker}"

            def on_message(_c: Any, _u: Any, msg: Any, name: str = name) -> None:
                rec[name].append((struct.unpack_from(">d", msg.payload)[0], clock()))

            raw.on_message = on_message
            raw.on_connect = lambda c, *_: c.subscribe(RAW_TOPIC, 0)
            raw.on_subscribe = lambda *_, ev=subscribed: ev.set()
            raw.connect(HOST, port, keepalive=30)
            raw.loop_start()
            stack.callback(raw.loop_stop)
            stack.callback(raw.disconnect)
            if not await loop.run_in_executor(None, subscribed.wait, READY_TIMEOUT_S):
                raise RuntimeError(f"receiver {index}: raw paho never subscribed on {broker}")
        conn.send({"osc_port": ours_osc.raw.address[1], "raw_osc_port": raw_osc_port})
        await loop.run_in_executor(None, conn.recv)  # "stop"
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(rec)


# -- the sender (this process) ------------------------------------------------------------------------
Sent = dict[str, list[float]]


async def send_all(receivers: list[dict[str, Any]], brokers: dict[str, int], paths: list[Route], notes: int,
                   interval_s: float, seed: int, quiet: bool) -> Sent:
    """Send warm-up and measured notes on every path, interleaved; return the measured send stamps."""
    from pythonosc.udp_client import SimpleUDPClient

    from protocol.bus import MqttBus, OscBus
    from protocol.codec import to_msgpack
    from protocol.ensemble import MqttBusConfig

    clock = time.monotonic
    payload_size = len(to_msgpack(note_for(0.0)))
    sent: dict[str, list[float]] = {p.name: [] for p in PATHS}
    async with contextlib.AsyncExitStack() as stack:
        peers = [(HOST, r["osc_port"]) for r in receivers]
        osc_bus = await stack.enter_async_context(OscBus(ENS, (HOST, 0), peers))
        raw_osc = [SimpleUDPClient(HOST, r["raw_osc_port"]) for r in receivers]
        mqtt_bus: dict[str, Any] = {}
        raw_mqtt: dict[str, Any] = {}
        for broker, port in brokers.items():
            bus = MqttBus(ENS, MqttBusConfig(host=HOST, port=port), f"fan-tx-{broker}")
            mqtt_bus[broker] = await stack.enter_async_context(bus)
            raw = paho_client(f"fan-rawtx-{broker}", broker == "nodelay")
            connected = threading.Event()
            raw.on_connect = lambda *_, ev=connected: ev.set()
            raw.connect(HOST, port, keepalive=30)
            raw.loop_start()
            stack.callback(raw.loop_stop)
            stack.callback(raw.disconnect)
            if not connected.wait(READY_TIMEOUT_S):
                raise RuntimeError(f"raw paho sender never connected to the {broker} broker")
            raw_mqtt[broker] = raw

        async def send_one(path: Route) -> float:
            t = clock()
            if path.kind == "ours":
                bus = osc_bus if path.transport == "osc" else mqtt_bus[path.broker]
                await bus.publish(note_for(t))
            elif path.transport == "osc":
                msg = raw_osc_message(t)
                for client in raw_osc:
                    client.send(msg)
            else:
                raw_mqtt[path.broker].publish(RAW_TOPIC, raw_payload(t, payload_size), qos=0)
            return t

        async def burst(path: Route, n: int, keep: bool) -> None:
            due = clock()
            for _ in range(n):
                due += interval_s
                await asyncio.sleep(max(0.0, due - clock()))
                t = await send_one(path)
                if keep:
                    sent[path.name].append(t)

        active = [p for p in paths if p.broker == "-" or p.broker in brokers]
        for path in active:
            await burst(path, WARMUP, keep=False)
        rng = random.Random(seed)
        chunks = math.ceil(notes / CHUNK)
        for k in range(chunks):
            order = active[:]
            rng.shuffle(order)
            n = min(CHUNK, notes - k * CHUNK)
            for path in order:
                await burst(path, n, keep=True)
            if not quiet and (k + 1) % max(1, chunks // 10) == 0:
                done = min((k + 1) * CHUNK, notes)
                print(f"  sent {done}/{notes} notes on each of {len(active)} paths", file=sys.stderr,
                      flush=True)
        await asyncio.sleep(0.5)  # stragglers (a 40 ms delayed ACK is the worst seen)
    return sent
