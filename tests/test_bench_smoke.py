"""Every benchmark in bench/ still runs: its `--smoke` (seconds, tiny sizes, the same code path) as a
real subprocess, which must exit 0, print its table, write its JSON and leave no process running.

WHY: a benchmark is run by hand, rarely, so nothing notices when a change elsewhere breaks it (a new
stats field, a narrower subscription) until someone needs its numbers. Every module in bench/ that is
not listed in HELPERS below is a benchmark, so a new one without `--smoke` fails here.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SMOKE_TIMEOUT_S = 240.0  # a smoke takes seconds; this only bounds a hung one on a loaded machine

# Modules of bench/ that are not benchmarks themselves, and what they are for.
HELPERS = {
    "__init__.py": "package marker",
    "beat_clocks.py": "samples and compares agents' beat clocks for beat_agreement",
    "chorale_truth.py": "Bach chorales and their analysed chords, the ground truth of listening",
    "ensemble_procs.py": "starts and stops an ensemble's processes on free ports",
    "fanout_paths.py": "the note paths and receiver processes of fanout",
    "fuzz_packets.py": "hostile packet generators and the receivers' decoders for fuzz",
    "fuzz_targets.py": "the ensemble fuzz aims at and each receiver's count of what it refused",
    "key_following.py": "a melody modulating from key to key, for listening",
    "link_peers.py": "an Ableton Link peer that bad_network starts inside its namespaces",
    "model_folders.py": "the model folders model_speed times, random exports cached",
    "model_runs.py": "our runtime's loop, a re-plan and an agent, as model_speed times them",
    "note_taps.py": "every note heard on the bus, for faults",
    "percentiles.py": "the p50/p99/max summary",
    "procs.py": "child-process hygiene and a private broker",
    "rig_clocks.py": "beat clocks read from launchers in a namespace rig, for bad_network",
    "skytnt_reference.py": "SkyTNT's own generate loop that model_speed races against",
    "soak_setup.py": "the fault soak's YAML, JACK capture and agent processes",
}


def _mosquitto() -> str | None:
    from support.broker import mosquitto_missing_reason

    return mosquitto_missing_reason()


def _bad_network() -> str | None:
    from bench.bad_network import missing_reason

    return _mosquitto() or missing_reason()


def _torch() -> str | None:
    return None if importlib.util.find_spec("torch") else "needs the train extra (torch) for the free run"


# What a smoke needs beyond the `cpu` and `test` extras: a reason to skip when it is missing, else None.
PREREQUISITES: dict[str, Callable[[], str | None]] = {
    "fanout": _mosquitto,
    "faults": _mosquitto,
    "fuzz": _mosquitto,
    "bad_network": _bad_network,
    "quality": _torch,
}


def benches() -> list[str]:
    return sorted(p.stem for p in BENCH.glob("*.py") if p.name not in HELPERS)


def _flags(path: Path) -> set[str]:
    """The option strings a module passes to add_argument."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            found |= {a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
    return found


def test_helpers_listed_exist_and_benches_are_found() -> None:
    present = {p.name for p in BENCH.glob("*.py")}
    assert set(HELPERS) <= present, f"listed as helpers but gone: {sorted(set(HELPERS) - present)}"
    assert len(benches()) >= 8, benches()
    assert set(PREREQUISITES) <= set(benches())


@pytest.mark.parametrize("name", benches())
def test_every_bench_has_smoke_and_json(name: str) -> None:
    """Checked from the source, so it holds on a machine that must skip the run itself."""
    flags = _flags(BENCH / f"{name}.py")
    missing = {"--smoke", "--json"} - flags
    assert not missing, (f"bench/{name}.py lacks {sorted(missing)}: give it a --smoke run of seconds (or "
                         "list it in HELPERS in this file if it is not a benchmark)")


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("name", benches())
def test_bench_smoke_runs(name: str, tmp_path: Path) -> None:
    reason = PREREQUISITES.get(name, lambda: None)()
    if reason:
        pytest.skip(f"bench/{name}.py: {reason}")
    out = tmp_path / "smoke.json"
    # Under the reaper: a process of the bench's tree that outlives it fails the run (exit 3), so a
    # smoke also checks the project's rule that no process outlives its parent.
    argv = [sys.executable, str(ROOT / "tests" / "support" / "reaper.py"),
            sys.executable, "-m", f"bench.{name}", "--smoke", "--json", str(out)]
    if name == "bad_network" and importlib.util.find_spec("aalink") is None:
        argv.append("--no-link")  # the Link comparison needs the `link` extra; the rest still runs
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)
    tail = f"\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    leftovers = [ln for ln in proc.stderr.splitlines() if ln.startswith("leftover: ")]
    assert not leftovers, f"bench/{name}.py --smoke left processes running:\n" + "\n".join(leftovers)
    assert proc.returncode == 0, f"bench/{name}.py --smoke exited {proc.returncode}{tail}"
    assert len(proc.stdout.strip().splitlines()) >= 3, f"bench/{name}.py --smoke printed no table{tail}"
    assert out.exists(), f"bench/{name}.py --smoke wrote no JSON{tail}"
    data = json.loads(out.read_text())
    assert data, f"bench/{name}.py --smoke wrote empty JSON{tail}"
