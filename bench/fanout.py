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

    .venv/bin/python -m bench.fanout [--quick|--smoke] [--notes 2000] [--receivers 3] [--interval-ms 5]
                                     [--json out.json]

Layout: this module runs the bench and prints the table; the paths, the receiver processes and the
sender are in bench/fanout_paths.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import signal
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/fanout.py`
    sys.path.insert(0, str(ROOT))

from bench.fanout_paths import CHUNK, PATHS, READY_TIMEOUT_S, WARMUP, receiver_main, send_all  # noqa: E402
from bench.percentiles import pct  # noqa: E402
from bench.procs import StopRequestedError, make_broker, on_sigterm  # noqa: E402

SMOKE_NOTES = 40  # --smoke: one chunk per path after the warm-up, so every path is switched to and timed


# -- analysis ----------------------------------------------------------------------------------------
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
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notes", type=int, default=2000, help="measured notes per path, each to every receiver")
    ap.add_argument("--receivers", type=int, default=3, help="receiver processes (agents)")
    ap.add_argument("--interval-ms", type=float, default=5.0, help="gap between notes on a path")
    ap.add_argument("--no-mqtt", action="store_true", help="OSC paths only (no mosquitto needed)")
    ap.add_argument("--quick", action="store_true", help="1000 notes per path, 3 ms apart (< 60 s)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"{SMOKE_NOTES} notes a path, 2 receivers: proves the bench runs, measures nothing")
    ap.add_argument("--only", metavar="TEXT", help="only the paths whose name contains TEXT, e.g. 'mqtt'")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    notes, interval_ms = (1000, 3.0) if args.quick else (max(args.notes, 1), args.interval_ms)
    if args.smoke:
        notes, interval_ms, args.receivers = SMOKE_NOTES, 2.0, min(args.receivers, 2)
    paths = [p for p in PATHS if args.only is None or args.only in p.name]
    if not paths:
        names = ", ".join(p.name for p in PATHS)
        print(f"error: --only {args.only!r} matches none of: {names}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, on_sigterm)
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
                       "warmup": WARMUP, "chunk": CHUNK, "seed": args.seed, "smoke": args.smoke},
            "paths": rows,
        }  # fmt: skip
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
