"""Hostile input against a running ensemble: random and mutated OSC datagrams and MQTT payloads.

What is measured
    A conductor and one agent play (real processes, run_ensemble.py with --stats-dir) while this
    sends them garbage: random bytes and mutations of real, valid messages (bit flips, truncation,
    wrong type tags, NaN/inf/huge values, absurd sizes up to 64 KB, broken or deep bundles, OSC
    arrays nested thousands deep). OSC goes to the conductor's bus port, the agent's bus port and
    the control port on 127.0.0.1; a share of valid, well-formed controls comes from 127.0.0.2, a
    stranger outside `control.allow`. msgpack goes to a private mosquitto on 127.0.0.1, on the
    topics the processes subscribe to (a process is expected to count only what it subscribes to:
    clock-sync pings reach the conductor, pongs their own agent). Every packet is first run through
    the receiver's own decoder here: only packets it must refuse are sent (a mutation that happens to
    be a valid message is skipped and counted as "skipped", as is an empty bundle, which holds nothing
    to refuse), so every packet sent must show up in the receivers' invalid counters. Sending pauses
    at checkpoints until the counters catch up.

How to read it
    sent by kind; rejected by reason (the processes' own counters, summed); "uncounted" = sent minus
    counted minus what the kernel dropped before the process could see it (/proc/net/udp drops;
    should be 0); crashes = processes that died or changed pid, restarts, launcher exit code; state
    diffs = tempo, plan, mix, playing before vs after (should be none); packets/s over the whole run.

    .venv/bin/python -m bench.fuzz [--smoke] [--packets 100000] [--seed 1] [--no-mqtt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "tests"):  # also runnable as `python bench/fuzz.py`; tests/ holds support.*
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench.fuzz_packets import (  # noqa: E402
    Mutator,
    bus_accepts,
    carries_nothing,
    control_accepts,
    mqtt_accepts,
    stranger_controls,
)
from bench.fuzz_targets import Ensemble, Proc, read_json, wait_until  # noqa: E402
from protocol import codec  # noqa: E402

STRANGER = "127.0.0.2"  # loopback, but outside the default allow list (127.0.0.1/32)
SMOKE_PACKETS = 600  # --smoke: a few of every kind on each transport, checkpoints included


@dataclass
class Tally:
    sent: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    stranger: int = 0
    shortfalls: list[str] = field(default_factory=list)
    seconds: float = 0.0


def fuzz_osc(
    ens: Ensemble,
    ensemble_name: str,
    packets: int,
    seed: int,
    *,
    chunk: int = 250,
    stranger_share: float = 0.02,
    catch_up_s: float = 10.0,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[Tally, dict[str, Proc]]:
    """Send `packets` refused datagrams round-robin to the conductor bus, the agent bus and the
    control port, pausing every `chunk` until the receivers' counters account for all of them."""
    import yaml

    data = yaml.safe_load(ens.yaml_path.read_text())
    base, ctl_port = int(data["bus"]["osc"]["base_port"]), int(data["control"]["port"])
    agent = ens.agents[0]
    procs = {
        "conductor": Proc("conductor", ens.stats_dir / "conductor.json", [base, ctl_port]),
        agent: Proc(agent, ens.stats_dir / f"agent-{agent}.json", [base + 1]),
    }
    for p in procs.values():
        p.base_invalid = int(read_json(p.stats).get("invalid_messages", 0))
    mut = Mutator(random.Random(seed), ensemble_name)
    targets = [
        ("conductor bus", base, procs["conductor"], mut.bus_seeds, bus_accepts),
        ("agent bus", base + 1, procs[agent], mut.bus_seeds, bus_accepts),
        ("control", ctl_port, procs["conductor"], mut.control_seeds, control_accepts),
    ]
    strange = stranger_controls(ensemble_name)
    tally = Tally()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind((STRANGER, 0))
    t0 = time.monotonic()
    try:
        n = 0
        while n < packets:
            for _ in range(min(chunk, packets - n)):
                where, port, proc, seeds, accepts = targets[n % len(targets)]
                n += 1
                if mut.rng.random() < stranger_share:
                    # Well-formed steering from outside the allow list, to the control port or as a bus
                    # `Control` to the conductor's bus port: every one must be refused, per address.
                    on_bus = mut.rng.random() < 0.5
                    stranger.sendto(
                        mut.rng.choice(strange[on_bus]), ("127.0.0.1", base if on_bus else ctl_port)
                    )
                    tally.stranger += 1
                    procs["conductor"].expected += 1
                    continue
                kind, datagram = mut.osc(seeds)
                if accepts(ensemble_name, datagram) or carries_nothing(datagram):
                    tally.skipped[f"{where}: {kind}"] += 1
                    continue
                sock.sendto(datagram, ("127.0.0.1", port))
                tally.sent[f"{where}: {kind}"] += 1
                proc.expected += 1
            for p in procs.values():
                if not wait_until(p.caught_up, catch_up_s):
                    tally.shortfalls.append(
                        f"{p.name}: counted {p.invalid()} + dropped {p.dropped()} "
                        f"< sent {p.expected} after packet {n}"
                    )
            progress(f"osc {n}/{packets}")
    finally:
        sock.close()
        stranger.close()
    tally.seconds = time.monotonic() - t0
    return tally, procs


def fuzz_mqtt(ens: Ensemble, ensemble_name: str, host: str, port: int, packets: int, seed: int, *,
              chunk: int = 500, catch_up_s: float = 15.0,
              progress: Callable[[str], None] = lambda _: None) -> tuple[Tally, dict[str, Proc]]:  # fmt: skip
    """Publish `packets` refused payloads (QoS 0) on topics every process subscribes to and counts."""
    import paho.mqtt.client as paho

    procs = {"conductor": Proc("conductor", ens.stats_dir / "conductor.json")}
    procs.update({a: Proc(a, ens.stats_dir / f"agent-{a}.json") for a in ens.agents})
    # Who hears a topic is what each process subscribes to (clock-sync traffic is narrowed per process).
    filters = {name: codec.mqtt_filters(ensemble_name, name) for name in procs}
    for p in procs.values():
        p.base_invalid = int(read_json(p.stats).get("invalid_messages", 0))
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"fuzz-{seed}")
    client.connect(host, port)
    client.loop_start()
    mut = Mutator(random.Random(seed), ensemble_name)
    tally = Tally()
    t0 = time.monotonic()
    try:
        n = 0
        while n < packets:
            infos = []
            for _ in range(min(chunk, packets - n)):
                n += 1
                kind, topic, payload = mut.mqtt()
                if mqtt_accepts(ensemble_name, topic, payload):
                    tally.skipped[kind] += 1
                    continue
                infos.append(client.publish(topic, payload, qos=0))
                tally.sent[kind] += 1
                for p in procs.values():
                    p.expected += any(paho.topic_matches_sub(f, topic) for f in filters[p.name])
            for info in infos:
                info.wait_for_publish(10.0)
            for p in procs.values():
                if not wait_until(p.caught_up, catch_up_s):
                    tally.shortfalls.append(f"{p.name}: counted {p.invalid()} < sent {p.expected} at {n}")
            progress(f"mqtt {n}/{packets}")
    finally:
        client.loop_stop()
        client.disconnect()
    tally.seconds = time.monotonic() - t0
    return tally, procs


def reasons(ens: Ensemble) -> Counter[str]:
    """Rejects by reason, summed over the conductor and every agent (their own counters)."""
    total: Counter[str] = Counter()
    for stats in [ens.conductor(), *(ens.agent(a) for a in ens.agents)]:
        total.update({k: int(v) for k, v in stats.get("invalid_reasons", {}).items()})
    return total


def run_phase(transport: str, packets: int, seed: int, tmp: Path, progress: Callable[[str], None],
              ) -> dict[str, Any]:  # fmt: skip
    """Start an ensemble (conductor + bass) on `transport`, fuzz it, stop it, collect the figures."""
    import yaml
    from support.broker import Mosquitto
    from support.ensembles import DEFAULT, write_ensemble

    bass = next(a for a in yaml.safe_load(DEFAULT.read_text())["agents"] if a["name"] == "bass")
    broker = None
    over: dict[str, Any] = {"agents": [bass]}
    if transport == "mqtt":
        broker = Mosquitto().start()
        over["bus"] = {"transport": "mqtt", "mqtt": {"host": broker.host, "port": broker.port}}
    work = tmp / transport
    work.mkdir()
    ens = Ensemble(write_ensemble(work, over), work / "stats", ("bass",))
    try:
        ens.start()
        before, pids = ens.snapshot(), ens.pids()
        base_reasons = reasons(ens)
        if transport == "osc":
            tally, procs = fuzz_osc(ens, "demo", packets, seed, progress=progress)
        else:
            assert broker is not None
            tally, procs = fuzz_mqtt(ens, "demo", broker.host, broker.port, packets, seed, progress=progress)
        after, pids_after = ens.snapshot(), ens.pids()
        alive = ens.proc is not None and ens.proc.poll() is None
        by_reason = reasons(ens) - base_reasons
        refused = ens.conductor().get("refused", {})
        counted = {p.name: p.invalid() for p in procs.values()}
        rc, err = ens.stop()
    finally:
        ens.stop()
        if broker is not None:
            broker.close()
    report = ens.report()
    restarts = {k: v.get("restarts") for k, v in report.get("parts", {}).items() if v.get("role") == "agent"}
    per_process = {p.name: {"sent": p.expected, "counted": counted[p.name], "dropped_by_kernel": p.dropped()}
                   for p in procs.values()}  # fmt: skip
    return {
        "transport": transport, "sent": dict(tally.sent), "sent_total": sum(tally.sent.values()),
        "stranger": tally.stranger, "skipped_valid": sum(tally.skipped.values()), "per_process": per_process,
        "rejected_by_reason": dict(by_reason.most_common()), "refused": refused,
        "shortfalls": tally.shortfalls,
        "crashes": {"launcher_alive_during": alive, "launcher_rc": rc, "agent_restarts": restarts,
                    "pid_changes": {k: (pids[k], pids_after[k]) for k in pids if pids[k] != pids_after[k]},
                    "tracebacks": err.count("Traceback")},
        "state_diffs": {k: (before[k], after[k]) for k in before if before[k] != after[k]},
        "seconds": round(tally.seconds, 2),
        "packets_per_s": round((sum(tally.sent.values()) + tally.stranger) / max(tally.seconds, 1e-9)),
    }  # fmt: skip


def print_table(results: list[dict[str, Any]]) -> None:
    for r in results:
        print(
            f"\n== {r['transport']}: {r['sent_total']} refused packets sent (+{r['stranger']} from a "
            f"stranger, {r['skipped_valid']} valid mutations skipped), {r['seconds']} s, "
            f"{r['packets_per_s']} packets/s"
        )
        print(f"  {'sent by kind':<40}{'packets':>9}")
        for kind, n in sorted(r["sent"].items()):
            print(f"  {kind:<40}{n:>9}")
        print(f"  {'rejected by reason (all processes)':<40}{'count':>9}")
        for reason, n in r["rejected_by_reason"].items():
            print(f"  {reason:<40}{n:>9}")
        print(f"  refused per address: {r['refused']}")
        print(f"  per process: {r['per_process']}")
        print(f"  shortfalls (uncounted): {r['shortfalls'] or 'none'}")
        print(f"  crashes: {r['crashes']}")
        print(f"  state diffs: {r['state_diffs'] or 'none'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000, help="total, split evenly over the transports")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-mqtt", action="store_true", help="OSC only (no mosquitto needed)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"{SMOKE_PACKETS} packets in all: proves the bench runs, measures nothing")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="also write the results here")
    args = ap.parse_args(argv)
    phases = ["osc"] if args.no_mqtt else ["osc", "mqtt"]
    if args.smoke:
        args.packets = SMOKE_PACKETS

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="barcelona-fuzz-") as tmp:
        results = [run_phase(t, args.packets // len(phases), args.seed, Path(tmp), progress) for t in phases]
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    bad = [r for r in results if r["shortfalls"] or r["state_diffs"] or r["crashes"]["pid_changes"]
           or r["crashes"]["launcher_rc"] or not r["crashes"]["launcher_alive_during"]]  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
