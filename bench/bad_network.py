"""Bad networks: beat agreement and rejoin time under delay, jitter and loss, Barcelona beside Link.

What is measured
    A namespace rig (tests/support/netns.py): mosquitto on `broker`, the conductor and the human
    part on `stage`, one agent per host on `band1`..`band3` (pattern engines, so a restart is not
    slowed by a model load). Every host gets the same impairment: an NFQUEUE shim holds each packet
    it sends for normal(mean, sd) ms, and the bridge drops a share of what the host sends and of
    what it receives, the share that compounds over the two to the scenario's. So host to host, one
    way, a packet sees exactly the scenario (5 ± 2 ms and 2 %). Over MQTT each message between agent
    and conductor crosses the broker: two such hops. (The shim holds outgoing packets only: held on
    the way in, Link's multicast discovery never completes, and one hold per hop is the scenario.)

    `spread`: every agent's beat clock (its timeline + clock-offset estimate, from its stats file)
    evaluated at the same instants of the shared kernel clock, max minus min in ms, once settled.
    The true offset between namespaces is 0, so `|off|` (the largest offset estimate seen) is the
    sync error itself. `rejoin`: an agent is SIGKILLed a few times (the launcher restarts it); the
    time from its first beat clock on the bus (it knows the timeline) until it is synced and within
    0.5 ms of every other agent for good; `from kill` adds the restart itself (process start).

    Ableton Link (pip `aalink`) runs in a rig of its own with the same impairment: three peers
    started together (`join` = until all see each other and agree within 0.5 ms), the same spread
    (phase, modulo the quantum), then a peer killed and restarted a few times (`rejoin`).

    Goals (issue "bad networks"): spread p99 <= 0.2 ms at 5 ± 2 ms / 2 %, <= 1 ms at 10 ± 5 ms /
    5 %; a new or restarted agent in time within 0.5 s, every time.

    .venv/bin/python -m bench.bad_network [--quick|--smoke] [--json out.json] [--compare before.json]
        [--scenario a|b|all] [--transport osc|mqtt|all] [--no-link]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/bad_network.py`
    sys.path.insert(0, str(ROOT))

from bench.link_peers import PeerLog, join_time, phase_spread_ms, worst_vs_others_ms  # noqa: E402
from bench.rig_clocks import AgentClocks  # noqa: E402
from tests.support.netns import NetRig, delay_missing_reason, nft_missing_reason  # noqa: E402

PLACEMENT = {"bass": "band1", "piano": "band2", "drums": "band3"}
HOSTS = ("broker", "stage", *PLACEMENT.values())
LINK_HOSTS = ("link1", "link2", "link3")
MQTT_PORT = 1883
IN_TIME_MS = 0.5
REJOIN_GOAL_S = 0.5
STEP_S = 0.01


@dataclass(frozen=True)
class Impairment:
    """One link's impairment, applied to every host's link in both directions."""

    key: str
    mean_ms: float
    sd_ms: float
    loss_pct: float
    goal_p99_ms: float

    @property
    def label(self) -> str:
        return f"{self.mean_ms:g}±{self.sd_ms:g} ms {self.loss_pct:g}%"

    def loss_per_side(self) -> float:
        """The loss % for each host's sending and receiving side, so that the two give the scenario's."""
        return 100.0 * (1.0 - (1.0 - self.loss_pct / 100.0) ** 0.5)


SCENARIOS = {"a": Impairment("a", 5.0, 2.0, 2.0, 0.2), "b": Impairment("b", 10.0, 5.0, 5.0, 1.0)}


@dataclass(frozen=True)
class Durations:
    settle_s: float
    steady_s: float
    restarts: int
    rejoin_window_s: float


QUICK = Durations(settle_s=5.0, steady_s=7.0, restarts=2, rejoin_window_s=2.5)
SMOKE = Durations(settle_s=1.0, steady_s=1.0, restarts=1, rejoin_window_s=1.5)  # runs, measures nothing
FULL = Durations(settle_s=10.0, steady_s=30.0, restarts=6, rejoin_window_s=4.0)


def missing_reason() -> str | None:
    """Why this machine cannot run the bench (no namespaces, nft or NFQUEUE shim), or None."""
    return nft_missing_reason() or delay_missing_reason()


def impair(rig: NetRig, imp: Impairment) -> None:
    for host in rig.hosts:
        rig.set_loss(host, imp.loss_per_side(), "both")
        rig.set_delay(host, imp.mean_ms, imp.sd_ms, "out")


def pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max()),
            "n": len(values)}


# -- Barcelona ----------------------------------------------------------------------------------------


def ensemble_yaml(work: Path, rig: NetRig, transport: str) -> Path:
    """The default ensemble with pattern engines, placed one agent per band host."""
    data = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    src = data["human"]["source"]
    src["path"] = str((ROOT / "ensembles" / src["path"]).resolve())
    stage = rig.host_ip("stage")
    data["bus"] = ({"transport": "mqtt", "mqtt": {"host": rig.host_ip("broker"), "port": MQTT_PORT}}
                   if transport == "mqtt" else {"transport": "osc", "osc": {"base_port": 57400}})
    data["conductor"] = {"host": "stage", "address": stage}
    data["human"].update(host="stage", address=stage)
    data["control"] = {**data["control"], "listen": "127.0.0.1", "allow": ["127.0.0.1/32"]}
    voicing = {"bass": "root_fifth", "piano": "chord"}
    for agent in data["agents"]:
        host = PLACEMENT[agent["name"]]
        agent.update(host=host, address=rig.host_ip(host), output={"type": "null"})
        if agent["name"] in voicing:
            agent["engine"] = {"type": "pattern", "voicing": voicing[agent["name"]],
                               "rhythm": [{"beat": b, "duration": 0.9} for b in range(4)]}
    path = work / "ensemble.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_broker(rig: NetRig, work: Path) -> subprocess.Popen[bytes]:
    """mosquitto on the broker host's address only, with TCP_NODELAY (README: needed for sync)."""
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {MQTT_PORT} {rig.host_ip('broker')}\nallow_anonymous true\n"
                    "set_tcp_nodelay true\npersistence false\nuser root\n")
    proc = rig.popen("broker", ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    rig.wait_tcp("stage", (rig.host_ip("broker"), MQTT_PORT), timeout=15.0)
    return proc


def launch(rig: NetRig, host: str, yaml_path: Path, work: Path) -> subprocess.Popen[bytes]:
    with open(work / f"{host}.log", "wb") as log:
        return rig.popen(host, [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--host", host,
                                "--quiet", "--stats-dir", str(work / f"stats-{host}"),
                                "--report", str(work / f"report-{host}.json")],
                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})


def run_barcelona(imp: Impairment, transport: str, dur: Durations, work: Path,
                  progress: bool = True) -> dict[str, Any]:
    """One ensemble in an impaired rig: settle, measure the spread, then restart agents one by one."""
    work.mkdir(parents=True, exist_ok=True)
    with NetRig(HOSTS) as rig:
        impair(rig, imp)
        if transport == "mqtt":
            start_broker(rig, work)
        yaml_path = ensemble_yaml(work, rig, transport)
        procs = {h: launch(rig, h, yaml_path, work) for h in PLACEMENT.values()}
        procs["stage"] = launch(rig, "stage", yaml_path, work)
        clocks = AgentClocks({n: work / f"stats-{h}" / f"agent-{n}.json" for n, h in PLACEMENT.items()},
                             procs, work)
        t_ready = clocks.wait_all_playing(60.0)
        clocks.poll_for(dur.settle_s)
        t0 = time.monotonic()
        clocks.poll_for(dur.steady_s)
        t1 = time.monotonic()
        kills = []
        for i in range(dur.restarts):
            name = list(PLACEMENT)[i % len(PLACEMENT)]
            pid = clocks.pid(name)
            t_kill = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            clocks.poll_for(dur.rejoin_window_s)
            kills.append((name, pid, t_kill, time.monotonic()))
            if progress:
                print(f"  restart {i + 1}/{dur.restarts}: {name}", file=sys.stderr)
        reports = clocks.stop_all()
    clocks.dump(work / "offsets.json")
    spreads = clocks.spreads(t0, t1, STEP_S)
    rejoins = [clocks.rejoin(name, pid, tk, te, IN_TIME_MS, STEP_S) for name, pid, tk, te in kills]
    got = [r["in_time_s"] for r in rejoins if r["in_time_s"] is not None]
    return {
        "system": "barcelona", "scenario": imp.key, "impairment": imp.label, "transport": transport,
        "ready_s": t_ready, "spread_ms": pct(spreads), "goal_p99_ms": imp.goal_p99_ms,
        "abs_offset_ms_max": clocks.abs_offset_max_ms(t0, t1),
        "rtt_ms": clocks.rtt_ms(),
        "rejoins": rejoins,
        "rejoin_s": pct(got) if got else pct([]),
        "rejoin_within_goal": sum(1 for g in got if g <= REJOIN_GOAL_S), "rejoin_count": len(kills),
        "stuck_notes": sum(int(r.get("stuck_notes", 0)) for r in reports.values()),
        "notes": {n: int(p.get("notes", 0)) for r in reports.values()
                  for n, p in r.get("parts", {}).items() if p.get("role") == "agent"},
    }


# -- Link ---------------------------------------------------------------------------------------------


def run_link(imp: Impairment, dur: Durations, work: Path, progress: bool = True) -> dict[str, Any]:
    """Three Link peers started together in an impaired rig, then one restarted a few times."""
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {h: [] for h in LINK_HOSTS}
    with NetRig(LINK_HOSTS) as rig:
        impair(rig, imp)

        def start(host: str) -> subprocess.Popen[bytes]:
            out = work / f"link-{host}-{len(files[host])}.txt"
            files[host].append(out)
            return rig.popen(host, [sys.executable, "-m", "bench.link_peers", "peer", str(out)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=open(work / f"link-{host}.err", "ab"))

        t_start = time.monotonic()
        peers = {h: start(h) for h in LINK_HOSTS}
        time.sleep(dur.settle_s + dur.steady_s)  # the peers log on their own; nothing to poll
        t0, t1 = t_start + dur.settle_s, time.monotonic()
        kills = []
        for i in range(dur.restarts):
            host = LINK_HOSTS[i % len(LINK_HOSTS)]
            t_kill = time.monotonic()
            peers[host].kill()
            peers[host].wait(5.0)
            peers[host] = start(host)
            time.sleep(dur.rejoin_window_s)  # the new peer logs its own join; nothing to poll
            kills.append((host, len(files[host]) - 1, t_kill, time.monotonic()))
            if progress:
                print(f"  link restart {i + 1}/{dur.restarts}: {host}", file=sys.stderr)
        for p in peers.values():
            p.terminate()
        for p in peers.values():
            p.wait(5.0)
    first = [PeerLog.read(files[h][0]) for h in LINK_HOSTS]
    starts = [g.times[0] for g in first if g.times]
    joined = join_time(first, max(starts), t1, IN_TIME_MS, STEP_S) if len(starts) == 3 else None
    spreads = []
    for t in np.arange(t0, t1, STEP_S):
        if all(g.covers(t) for g in first):
            spreads.append(phase_spread_ms([g.beat_at(t)[0] for g in first]))
    rejoins = []
    for host, k, t_kill, t_end in kills:
        new = PeerLog.read(files[host][k])
        others = [_log_at(files[h], t_kill) for h in LINK_HOSTS if h != host]
        t_first = new.times[0] if new.times else t_end
        got = join_time(others, t_first, t_end, IN_TIME_MS, STEP_S, newcomer=new)
        worst = [worst_vs_others_ms(new.beat_at(t)[0], [o.beat_at(t)[0] for o in others])
                 for t in np.arange(t_end - 1.0, t_end, STEP_S)
                 if new.covers(t) and all(o.covers(t) for o in others)]
        rejoins.append({"agent": host, "start_after_kill_s": t_first - t_kill, "in_time_s": got,
                        "from_kill_s": None if got is None else got + t_first - t_kill,
                        "last_s_worst_ms": max(worst) if worst else None})
    got_all = [r["in_time_s"] for r in rejoins if r["in_time_s"] is not None]
    return {
        "system": "link", "scenario": imp.key, "impairment": imp.label, "transport": "link",
        "join_together_s": joined, "spread_ms": pct(spreads), "goal_p99_ms": imp.goal_p99_ms,
        "rejoins": rejoins, "rejoin_s": pct(got_all),
        "rejoin_within_goal": sum(1 for g in got_all if g <= REJOIN_GOAL_S), "rejoin_count": len(kills),
    }


def _log_at(paths: list[Path], t: float) -> PeerLog:
    """The log of whichever of a host's peer processes was running at t."""
    for p in reversed(paths):
        g = PeerLog.read(p)
        if g.times and g.times[0] <= t:
            return g
    return PeerLog.read(paths[0])


# -- report -------------------------------------------------------------------------------------------


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def print_table(results: list[dict[str, Any]], title: str = "bad networks") -> None:
    print(f"\n{title}: spread = max-min of beats at common instants (ms); in-time = within {IN_TIME_MS} ms")
    head = (f"{'system':<10} {'network':<16} {'bus':<5} {'p50':>7} {'p99':>7} {'max':>7} {'goal':>5} "
            f"{'|off|':>6} {'join s':>7} {'rejoin p50':>10} {'max':>6} {'<=0.5s':>7}")
    print(head)
    print("-" * len(head))
    for r in results:
        s, rj = r["spread_ms"], r["rejoin_s"]
        off = max(r.get("abs_offset_ms_max", {}).values(), default=None)
        join = r.get("join_together_s")
        ok = "ok" if s["p99"] <= r["goal_p99_ms"] else "MISS"
        print(f"{r['system']:<10} {r['impairment']:<16} {r['transport']:<5} {fmt(s['p50'])} {fmt(s['p99'])} "
              f"{fmt(s['max'])} {ok:>5} {fmt(off, 2):>6} {fmt(join, 2):>7} {fmt(rj['p50'], 2):>10} "
              f"{fmt(rj['max'], 2):>6} {r['rejoin_within_goal']:>3}/{r['rejoin_count']:<3}")


def print_compare(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    """Before/after side by side for the rows both runs have (same scenario, transport, system)."""
    old = {(r["system"], r["scenario"], r["transport"]): r for r in before}
    print("\nbefore -> after: spread p99 ms, max ms; rejoin max s; rejoins in time")
    for r in after:
        b = old.get((r["system"], r["scenario"], r["transport"]))
        if b is None:
            continue
        print(f"{r['system']:<10} {r['impairment']:<16} {r['transport']:<5} "
              f"p99 {fmt(b['spread_ms']['p99'])} -> {fmt(r['spread_ms']['p99'])}  "
              f"max {fmt(b['spread_ms']['max'])} -> {fmt(r['spread_ms']['max'])}  "
              f"rejoin {fmt(b['rejoin_s']['max'], 2)} -> {fmt(r['rejoin_s']['max'], 2)}  "
              f"{b['rejoin_within_goal']}/{b['rejoin_count']} -> "
              f"{r['rejoin_within_goal']}/{r['rejoin_count']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (under 3 minutes in all)")
    ap.add_argument("--smoke", action="store_true",
                    help="scenario a over OSC (and Link) unless told otherwise, a second or two each, one "
                         "restart: proves the bench runs, measures nothing")
    ap.add_argument("--scenario", choices=["a", "b", "all"], default="all")
    ap.add_argument("--transport", choices=["osc", "mqtt", "all"], default="all")
    ap.add_argument("--no-link", action="store_true", help="skip the Ableton Link comparison")
    ap.add_argument("--json", type=Path, help="write every result here")
    ap.add_argument("--compare", type=Path, help="an earlier --json to show before/after beside this run")
    ap.add_argument("--keep", action="store_true", help="keep the logs and stats (their folder is printed)")
    args = ap.parse_args(argv)
    reason = missing_reason()
    if reason is not None:
        print(f"bad_network: cannot run here: {reason}", file=sys.stderr)
        return 2
    dur = SMOKE if args.smoke else QUICK if args.quick else FULL
    scenarios = list(SCENARIOS.values()) if args.scenario == "all" else [SCENARIOS[args.scenario]]
    transports = ["osc", "mqtt"] if args.transport == "all" else [args.transport]
    if args.smoke:
        scenarios = scenarios[:1]
        transports = transports[:1]
    work = Path(tempfile.mkdtemp(prefix="bcn-badnet-"))
    results: list[dict[str, Any]] = []
    for imp in scenarios:
        for transport in transports:
            print(f"barcelona {transport} {imp.label} ...", file=sys.stderr)
            results.append(run_barcelona(imp, transport, dur, work / f"{imp.key}-{transport}"))
        if not args.no_link:
            print(f"link {imp.label} ...", file=sys.stderr)
            results.append(run_link(imp, dur, work / f"{imp.key}-link"))
    print_table(results)
    if args.compare is not None:
        print_compare(json.loads(args.compare.read_text())["results"], results)
    if args.json is not None:
        args.json.write_text(json.dumps({"durations": asdict(dur), "results": results}, indent=2))
    if args.keep:
        print(f"logs and stats: {work}", file=sys.stderr)
    else:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
