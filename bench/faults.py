"""Fault soak: the default ensemble plays on while its agents are SIGKILLed and its broker restarts.

What is done
    `run_ensemble.py ensembles/default.yaml` (free loopback ports, `--stats-dir`, `--report`) plays
    for `--seconds` (120; `--quick` 40) over MQTT through a private mosquitto on 127.0.0.1, or over
    the OSC bus (`--transport osc`). Every `--kill-every` seconds (10) a random agent gets SIGKILL,
    found among the launcher's children by its command line, as the OOM killer would pick it. Over
    MQTT the broker is stopped once in the middle, between two kills, for `--outage` seconds (1), then
    started again on the same port. With jackd installed every agent plays into one JACK MIDI capture
    port (a private `jackd -d dummy`), so stuck notes are counted where a synth would hold them.

What is measured (WHY each: these are what a listener notices)
    stuck notes   the launcher's report (each agent's output at exit) plus, with JACK, keys still held
                  at the capture port after the stop: a drone that outlives the band.
    rejoin        kill -> the first note the restarted agent commits (heard on the bus: a BusMonitor
                  on the OSC monitor port, a plain paho subscriber to `barcelona/<ens>/note/+` on
                  MQTT), and kill -> when that note sounds. The gap a listener hears is the second.
    outage        notes each agent committed while the broker was down (from its stats file), and
                  broker start -> that agent's first note heard again (includes the subscriber's own
                  reconnect, so an upper bound).
    beat spread   every 20 ms, each live agent's beat clock (its stats file's timemap: timeline +
                  clock offset) evaluated at the same instant; the spread in ms at the playing tempo
                  is how far apart their notes would sound. On one host the offset is exactly 0, so
                  this shows whether every agent, the restarted ones included, holds the same timeline.
    restarts      per agent from the report, against the kills made.
    recording     per part, notes played (the agents' own counts) against notes the recorder holds
                  (the report's `recorded`): what a fault took from the recording. A SIGKILLed agent
                  dies with the notes it had committed but not played, which may be recorded.

    .venv/bin/python -m bench.faults [--quick|--smoke] [--seconds 120] [--transport mqtt|osc]
                                     [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python bench/faults.py`
    sys.path.insert(0, str(ROOT))

from bench.beat_agreement import read_json  # noqa: E402
from bench.note_taps import MqttNotes, OscNotes  # noqa: E402
from bench.soak_setup import agent_pid, pid_alive, start_jack, write_yaml  # noqa: E402
from protocol.messages import Note  # noqa: E402
from protocol.timeline import LocalTimeMap, Timeline  # noqa: E402

SAMPLE_S = 0.02
START_TIMEOUT_S = 30.0


# -- measuring --------------------------------------------------------------------------------------
def sample_spread(stats_dir: Path, agents: list[str]) -> float | None:
    """The beat spread (ms) across the agents alive now, each read at this same instant."""
    t = time.monotonic()
    beats, tempo = [], 0.0
    for name in agents:
        s = read_json(stats_dir / f"agent-{name}.json")
        tm = s.get("timemap")
        if not tm or not pid_alive(int(s.get("pid", 0))):
            continue
        m = LocalTimeMap(Timeline(**tm["timeline"]), float(tm["offset_s"]))
        if not m.timeline.playing:
            continue
        beats.append(m.beat_at(t))
        tempo = m.timeline.tempo_at_beat(beats[-1])
    if len(beats) < 2 or tempo <= 0:
        return None
    return (max(beats) - min(beats)) * 60_000.0 / tempo


def pct(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p99": p99, "max": ordered[-1], "n": len(ordered)}


def soak(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    broker = None
    if args.transport == "mqtt":
        from tests.support.broker import Mosquitto

        broker = Mosquitto().start()
    jack = start_jack()
    yaml_path, data = write_yaml(work, args.transport, broker.port if broker else None, jack is not None)
    agents = [a["name"] for a in data["agents"]]
    stats_dir, report_path = work / "stats", work / "report.json"
    log = open(work / "launcher.log", "wb")  # closed in finally
    launcher = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet",
         "--stats-dir", str(stats_dir), "--report", str(report_path)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ}, start_new_session=True,
    )  # fmt: skip
    tap: MqttNotes | OscNotes | None = None
    kills: list[dict[str, Any]] = []
    outage: dict[str, Any] = {}
    spreads: list[float] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(read_json(stats_dir / f"agent-{a}.json").get("notes", 0) > 0 for a in agents):
            if time.monotonic() > deadline or launcher.poll() is not None:
                raise RuntimeError(f"ensemble did not start:\n{(work / 'launcher.log').read_text()[-3000:]}")
            time.sleep(0.05)  # polling a condition with a deadline
        tap = (MqttNotes(broker.port, data["name"]) if broker
               else OscNotes(data["bus"]["osc"]["monitor_port"], data["name"]))  # fmt: skip
        t0 = time.monotonic()
        kill_times = [t0 + k for k in range(args.kill_every, int(args.seconds), args.kill_every)]
        broker_at = t0 + (args.seconds // 2 // args.kill_every + 0.5) * args.kill_every if broker else None
        while (now := time.monotonic()) < t0 + args.seconds:
            if launcher.poll() is not None:
                raise RuntimeError(f"launcher exited:\n{(work / 'launcher.log').read_text()[-3000:]}")
            if kill_times and now >= kill_times[0]:
                kill_times.pop(0)
                name = rng.choice(agents)
                pid = agent_pid(launcher.pid, name)
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    kills.append({"agent": name, "t": time.monotonic(), "pid": pid})
                    progress(f"{now - t0:6.1f} s  SIGKILL {name} ({pid})", args.quiet)
            if broker is not None and broker_at is not None and now >= broker_at:
                broker_at = None
                outage = broker_outage(broker, stats_dir, agents, args.outage)
                progress(f"{now - t0:6.1f} s  broker down for {outage['down_s']:.2f} s", args.quiet)
            spread = sample_spread(stats_dir, agents)
            if spread is not None:
                spreads.append(spread)
            time.sleep(SAMPLE_S)  # the sampling period, not a wait for a condition
        # The last kill's agent must get its chance to rejoin before the stop (a failure shows below).
        deadline = time.monotonic() + 10.0
        while tap and kills and not tap.notes(kills[-1]["agent"], kills[-1]["t"] + 0.002):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            launcher.wait(10)
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        log.close()
        held = None
        if jack is not None:
            server, cap = jack
            deadline = time.monotonic() + 1.0
            while cap.stuck_notes() and time.monotonic() < deadline:
                time.sleep(0.01)  # note-offs are in flight through JACK for a period or two
            held = sorted(cap.stuck_notes())
            cap.close()
            server.stop()
        if tap is not None:
            tap.close()
        if broker is not None:
            broker.close()
    report = read_json(report_path)
    parts: dict[str, Any] = report.get("parts", {})
    port_stuck = None if held is None else len(held)
    for k in kills:
        first = tap.notes(k["agent"], k["t"] + 0.002) if tap else []
        k["rejoin_commit_s"] = first[0][0] - k["t"] if first else None
        k["rejoin_sound_s"] = sound_delay(stats_dir, k, first[0][1]) if first else None
        k["t"] = round(k["t"] - t0, 3)
    if outage:
        back = outage.pop("back_t")
        outage["first_note_after_s"] = (
            {a: (round(n[0][0] - back, 3) if (n := tap.notes(a, back)) else None) for a in agents}
            if tap
            else {}
        )
    return {
        "transport": args.transport,
        "smoke": args.smoke,
        "seconds": args.seconds,
        "jack": jack is not None,
        "stuck_notes": {"report": report.get("stuck_notes"), "midi_port": port_stuck, "held": held},
        "kills": kills,
        "rejoin_commit_s": pct([k["rejoin_commit_s"] for k in kills if k["rejoin_commit_s"] is not None]),
        "rejoin_sound_s": pct([k["rejoin_sound_s"] for k in kills if k["rejoin_sound_s"] is not None]),
        "never_rejoined": [k["agent"] for k in kills if k["rejoin_commit_s"] is None],
        "restarts": {a: p.get("restarts") for a, p in parts.items() if p["role"] == "agent"},
        "notes": {a: p.get("notes") for a, p in parts.items()},
        "recording": {a: {"played": p.get("notes"), "recorded": p.get("recorded")} for a, p in parts.items()},
        "beat_spread_ms": pct(spreads),
        "broker_outage": outage,
    }


def broker_outage(broker: Any, stats_dir: Path, agents: list[str], seconds: float) -> dict[str, Any]:
    """Stop the broker for `seconds`; count what each agent committed meanwhile (its stats file)."""
    before = {a: read_json(stats_dir / f"agent-{a}.json").get("committed", 0) for a in agents}
    t = time.monotonic()
    broker.stop()
    time.sleep(seconds)  # the outage itself
    # Stats files are written every 0.5 s: read them before the broker is back for an honest count.
    after = {a: read_json(stats_dir / f"agent-{a}.json").get("committed", 0) for a in agents}
    broker.start()
    back = time.monotonic()
    return {"down_s": round(back - t, 3), "back_t": back,
            "committed_while_down": {a: max(0, after[a] - before[a]) for a in agents}}  # fmt: skip


def sound_delay(stats_dir: Path, kill: dict[str, Any], note: Note) -> float | None:
    """Kill -> when the restarted agent's first note sounds, on its own beat clock."""
    tm = read_json(stats_dir / f"agent-{kill['agent']}.json").get("timemap")
    if not tm:
        return None
    due = LocalTimeMap(Timeline(**tm["timeline"]), float(tm["offset_s"])).time_at(note.start_beat)
    return None if due is None else due - kill["t"]


def progress(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr, flush=True)


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def print_table(r: dict[str, Any]) -> None:
    print(f"\nfault soak: {r['transport']} bus, {r['seconds']:.0f} s, {len(r['kills'])} kills, "
          f"JACK capture {'on' if r['jack'] else 'off (jackd not installed)'}")  # fmt: skip
    print(f"  stuck notes: report {r['stuck_notes']['report']}, MIDI port {r['stuck_notes']['midi_port']}")
    print(f"  {'t (s)':>7}  {'agent':<6} {'commit (s)':>10} {'sound (s)':>10}")
    for k in r["kills"]:
        commit, sound = fmt(k["rejoin_commit_s"]), fmt(k["rejoin_sound_s"])
        print(f"  {k['t']:7.1f}  {k['agent']:<6} {commit:>10} {sound:>10}")
    for key, label in (
        ("rejoin_commit_s", "rejoin to first commit (s)"),
        ("rejoin_sound_s", "rejoin to first sound (s)"),
    ):
        p = r[key]
        print(f"  {label:<30} p50 {fmt(p['p50'])}  p99 {fmt(p['p99'])}  max {fmt(p['max'])}  n {p['n']}")
    b = r["beat_spread_ms"]
    print(f"  {'beat spread (ms)':<30} p50 {fmt(b['p50'], 4)}  p99 {fmt(b['p99'], 4)}  "
          f"max {fmt(b['max'], 4)}  n {b['n']}")  # fmt: skip
    print(f"  restarts {r['restarts']}  (kills: "
          f"{ {a: sum(k['agent'] == a for k in r['kills']) for a in r['restarts']} })")  # fmt: skip
    if r["never_rejoined"]:
        print(f"  NEVER REJOINED: {r['never_rejoined']}")
    rec = r["recording"]
    print("  recording (played/recorded): "
          + ", ".join(f"{a} {v['played']}/{v['recorded']}" for a, v in rec.items()))  # fmt: skip
    if r["broker_outage"]:
        o = r["broker_outage"]
        print(
            f"  broker down {o['down_s']} s: committed meanwhile {o['committed_while_down']}; "
            f"first note heard after restart (s) {o['first_note_after_s']}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--quick", action="store_true", help="40 s")
    ap.add_argument("--smoke", action="store_true",
                    help="4 s, one kill, a 0.5 s broker outage: proves the bench runs, measures nothing")
    ap.add_argument("--transport", choices=("mqtt", "osc"), default="mqtt")
    ap.add_argument("--kill-every", type=int, default=10)
    ap.add_argument("--outage", type=float, default=1.0, help="seconds the broker stays down")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 40.0
    if args.smoke:
        args.seconds, args.kill_every, args.outage = 4.0, 2, 0.5
    with tempfile.TemporaryDirectory(prefix="barcelona-faults-") as tmp:
        result = soak(args, Path(tmp))
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    bad = result["stuck_notes"]["report"] or result["stuck_notes"]["midi_port"] or result["never_rejoined"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
