"""Human-note fan-out latency: one note from a sender to N receiver processes, ours against raw libraries.

What is measured
    The time from a note leaving the sender to its arrival, decoded, in each of N receiver processes
    (3 by default, like three agents). The sender stamps time.monotonic() into the note just before
    it builds and sends it; each receiver stamps time.monotonic() when the decoded note reaches its
    code. Every process on one host reads the same CLOCK_MONOTONIC, so the difference is the latency.
    Paths, all on 127.0.0.1, all in the same processes, interleaved in chunks in a shuffled order so
    the machine's noise falls on every path alike:

      ours osc        protocol.bus.OscBus -> OscBus.messages(): a `Note`, encoded and validated
      raw osc         python-osc SimpleUDPClient -> AsyncIOOSCUDPServer handler, same address and
                      the same typed arguments (so the same datagram size)
      ours mqtt       protocol.bus.MqttBus -> mosquitto -> MqttBus.messages(), QoS 0
      raw mqtt        paho-mqtt publish (loop_start) -> mosquitto -> paho on_message, QoS 0, a payload
                      and topic of the same size

    The MQTT pair runs twice: against mosquitto configured as Debian ships it ("stock": Nagle's
    algorithm on the broker's sockets) and with `set_tcp_nodelay true` ("nodelay"). Our MqttTransport
    always sets TCP_NODELAY on its own socket; the raw paho clients do so only on "nodelay".

How to read it
    Per path: "delivery" is each (note, receiver) latency; "all N" is per note, until the last
    receiver has it (what an ensemble waits for). p50/p99/max in ms; "lost" counts deliveries that
    never came. "ours/raw" divides our p50 and p99 by the raw library's on the same transport and
    broker: near 1 means the bus adds little to what the library costs anyway. The machine is shared
    and noisy: compare within one run, and look at p99 and max with the load average in mind.

    .venv/bin/python -m bench.fanout [--quick] [--notes 2000] [--receivers 3] [--interval-ms 5]
                                     [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import random
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/fanout.py`
    sys.path.insert(0, str(ROOT))

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


# -- shared bits ------------------------------------------------------------------------------------
def die_with_parent() -> None:
    """SIGTERM this process when the bench dies, even by SIGKILL (Linux only): no orphan receivers."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
            async for msg, _ in bus.messages():
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


# -- analysis ----------------------------------------------------------------------------------------
def pct(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}
    p50, p99 = np.percentile(values, (50, 99))
    return {"count": int(values.size), "p50": float(p50), "p99": float(p99), "max": float(values.max())}


def analyse(sent: dict[str, list[float]], records: list[dict[str, list[tuple[float, float]]]]) -> list[dict]:
    rows = []
    for path in PATHS:
        stamps = sent.get(path.name) or []
        if not stamps:
            continue
        wanted = set(stamps)
        per_note: dict[float, list[float]] = {t: [] for t in stamps}
        for rec in records:
            seen: dict[float, float] = {}
            for t_send, t_arr in rec[path.name]:
                if t_send in wanted and t_send not in seen:
                    seen[t_send] = t_arr
            for t_send, t_arr in seen.items():
                per_note[t_send].append((t_arr - t_send) * 1000.0)
        delivery = np.array([x for lat in per_note.values() for x in lat])
        complete = np.array([max(lat) for lat in per_note.values() if len(lat) == len(records)])
        rows.append({
            "path": path.name, "kind": path.kind, "transport": path.transport, "broker": path.broker,
            "notes": len(stamps), "receivers": len(records),
            "lost": len(stamps) * len(records) - int(delivery.size),
            "delivery_ms": pct(delivery), "all_receivers_ms": pct(complete),
        })  # fmt: skip
    by = {r["path"]: r for r in rows}
    for r in rows:
        if r["kind"] != "ours":
            continue
        raw = by.get(r["path"].replace("ours", "raw", 1))
        if raw:
            r["ratio_ours_raw"] = {
                k: r["delivery_ms"][k] / raw["delivery_ms"][k] if raw["delivery_ms"][k] else math.nan
                for k in ("p50", "p99", "max")
            }
    return rows


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def print_table(rows: list[dict], receivers: int, interval_ms: float) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Note fan-out latency to {receivers} receiver processes, ms "
                    f"(one note every {interval_ms:g} ms per path, 127.0.0.1)")  # fmt: skip
    t.add_column("path", no_wrap=True)
    for col in ("notes", "lost", "delivery p50", "p99", "max", f"all {receivers} p50", "p99", "max",
                "ours/raw p50", "p99"):
        t.add_column(col, justify="right")
    for r in rows:
        d, a, ratio = r["delivery_ms"], r["all_receivers_ms"], r.get("ratio_ours_raw")
        t.add_row(r["path"], str(r["notes"]), str(r["lost"]), fmt(d["p50"]), fmt(d["p99"]), fmt(d["max"]),
                  fmt(a["p50"]), fmt(a["p99"]), fmt(a["max"]),
                  f"{ratio['p50']:.2f}x" if ratio else "",
                  f"{ratio['p99']:.2f}x" if ratio else "")  # fmt: skip
    Console(width=max(Console().width, 120)).print(t)


# -- main -------------------------------------------------------------------------------------------
class StopRequestedError(Exception):
    """SIGTERM turned into an exception so the same `finally` cleanup runs as for Ctrl-C."""


def _on_sigterm(_sig: int, _frame: FrameType | None) -> None:
    raise StopRequestedError


def make_broker(nodelay: bool) -> Any:
    """The test helper's mosquitto with `set_tcp_nodelay` as asked (false: as Debian ships it)."""
    from tests.support.broker import Mosquitto

    class Broker(Mosquitto):
        def _configure(self) -> None:
            super()._configure()
            conf = self.dir / "mosquitto.conf"
            lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("set_tcp_nodelay")]
            conf.write_text("\n".join([*lines, f"set_tcp_nodelay {'true' if nodelay else 'false'}"]) + "\n")

    return Broker()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=2000, help="measured notes per path, each to every receiver")
    ap.add_argument("--receivers", type=int, default=3, help="receiver processes (agents)")
    ap.add_argument("--interval-ms", type=float, default=5.0, help="gap between notes on a path")
    ap.add_argument("--no-mqtt", action="store_true", help="OSC paths only (no mosquitto needed)")
    ap.add_argument("--quick", action="store_true", help="1000 notes per path, 3 ms apart (< 60 s)")
    ap.add_argument("--only", metavar="TEXT", help="only the paths whose name contains TEXT, e.g. 'mqtt'")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    notes, interval_ms = (1000, 3.0) if args.quick else (max(args.notes, 1), args.interval_ms)
    paths = [p for p in PATHS if args.only is None or args.only in p.name]
    if not paths:
        names = ", ".join(p.name for p in PATHS)
        print(f"error: --only {args.only!r} matches none of: {names}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _on_sigterm)
    brokers: list[Any] = []
    procs: list[Any] = []
    conns: list[Connection] = []
    records: list[dict[str, list[tuple[float, float]]]] = []

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    try:
        ports: dict[str, int] = {}
        if not args.no_mqtt:
            from tests.support.broker import mosquitto_missing_reason

            if reason := mosquitto_missing_reason():
                print(f"error: {reason} (or pass --no-mqtt)", file=sys.stderr)
                return 1
            for name in ("stock", "nodelay"):
                broker = make_broker(name == "nodelay")
                brokers.append(broker)
                ports[name] = broker.start().port
            progress(f"mosquitto stock on :{ports['stock']}, nodelay on :{ports['nodelay']}")
        ctx = mp.get_context("spawn")
        for i in range(args.receivers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=receiver_main, args=(i, ports, child), daemon=True, name=f"fanout-rx{i}")
            p.start()
            procs.append(p)
            conns.append(parent)
        receivers = []
        for i, c in enumerate(conns):
            if not c.poll(READY_TIMEOUT_S):
                raise RuntimeError(f"receiver {i} not ready after {READY_TIMEOUT_S} s")
            receivers.append(c.recv())
        progress(f"{args.receivers} receivers ready; {notes} notes per path, {interval_ms:g} ms apart")
        sent = asyncio.run(
            send_all(receivers, ports, paths, notes, interval_ms / 1000.0, args.seed, args.quiet)
        )
        for c in conns:
            c.send("stop")
        for i, c in enumerate(conns):
            if not c.poll(10.0):
                raise RuntimeError(f"receiver {i} sent no results")
            records.append(c.recv())
    except (KeyboardInterrupt, StopRequestedError):
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # futures orphaned by the broker's end
        print("\ninterrupted; every process stopped", file=sys.stderr)
        return 130
    except (RuntimeError, EOFError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for p in procs:  # done ones exit by themselves; on an error or Ctrl-C nobody waits for them
            p.join(timeout=1.0 if len(records) == len(procs) else 0.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2.0)
        for b in brokers:
            b.close()
    rows = analyse(sent, records)
    print_table(rows, args.receivers, interval_ms)
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        report = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "platform": platform.platform(), "loadavg_1m": os.getloadavg()[0]},
            "config": {"notes": notes, "receivers": args.receivers, "interval_ms": interval_ms,
                       "warmup": WARMUP, "chunk": CHUNK, "seed": args.seed},
            "paths": rows,
        }  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
