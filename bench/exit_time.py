"""How long an agent and a conductor take to exit after SIGTERM, with and without `freeze_heap`.

A stop must have every process gone within 2 s, and a part that crashed must play again within 2 s of
its exit; both wait on processes exiting. Most of an exit after the cleanup is the interpreter's own
teardown, which walks every object the imports made (pydantic's schemas, numpy) once more.
`protocol.process.freeze_heap` (gc.freeze after the imports) takes those out of the collector's
sight. Each run starts a real `python -m agents` (pattern engine, null output, no conductor) or
`python -m conductor --no-autostart` on free loopback ports, waits until it writes its stats, sends
SIGTERM and times the exit; the two variants alternate run by run, so both see the same machine.

    .venv/bin/python -m bench.exit_time [--runs 8] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.ensemble_procs import free_port, free_udp_block
from bench.procs import die_with_parent

ROOT = Path(__file__).resolve().parents[1]

# The same entry point either way; "off" replaces freeze_heap with a no-op before the import.
DRIVER = """
import sys
import protocol.process as process
if sys.argv[1] == "off":
    process.freeze_heap = lambda: None
role = sys.argv[2]
main = __import__(role + ".__main__", fromlist=["main"]).main
sys.exit(main(sys.argv[3:]))
"""


def write_yaml(directory: Path) -> Path:
    data = yaml.safe_load((ROOT / "ensembles" / "patterns.yaml").read_text())
    data["bus"] = {"transport": "osc", "osc": {"base_port": free_udp_block(len(data["agents"]) + 2)}}
    data["control"] = {**data["control"], "port": free_port()}
    data["human"]["source"]["path"] = str((ROOT / "ensembles" / data["human"]["source"]["path"]).resolve())
    path = directory / "ensemble.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def exit_time(role: str, freeze: bool, yaml_path: Path, stats: Path) -> float:
    """Seconds from SIGTERM to the process's exit, once it is up (its stats file written)."""
    stats.unlink(missing_ok=True)
    args = [str(yaml_path), "bass"] if role == "agents" else [str(yaml_path), "--no-autostart"]
    argv = [sys.executable, "-c", DRIVER, "on" if freeze else "off", role, *args, "--stats", str(stats)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 60
        while not stats.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{role} did not start (exit {proc.returncode})")
            time.sleep(0.01)
        time.sleep(0.5)  # past its first stats: every loop running
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        return time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.exit_time", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=8, help="runs per role and variant")
    ap.add_argument("--quick", action="store_true", help="3 runs each")
    ap.add_argument("--smoke", action="store_true", help="1 run each: seconds")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    runs = 1 if args.smoke else 3 if args.quick else args.runs
    times: dict[str, dict[str, list[float]]] = {
        r: {"freeze_heap": [], "without": []} for r in ("agent", "conductor")
    }
    with tempfile.TemporaryDirectory(prefix="bench-exit-") as tmp:
        for i in range(runs):
            for role, key in (("agents", "agent"), ("conductor", "conductor")):
                for freeze in ((True, False) if i % 2 == 0 else (False, True)):
                    yaml_path = write_yaml(Path(tmp))  # fresh ports: a shared machine's are not ours
                    t = exit_time(role, freeze, yaml_path, Path(tmp) / f"{key}.json")
                    times[key]["freeze_heap" if freeze else "without"].append(t)
    result: dict[str, Any] = {"runs": runs, "load": os.getloadavg(), "cpus": os.cpu_count(), "seconds": times}
    print(f"exit after SIGTERM, {runs} runs each (load {result['load'][0]:.1f} on {result['cpus']} CPUs)")
    print(f"{'process':<10} {'variant':<12} {'median s':>9} {'max s':>7}")
    for key, variants in times.items():
        for variant, ts in variants.items():
            print(f"{key:<10} {variant:<12} {statistics.median(ts):>9.3f} {max(ts):>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
