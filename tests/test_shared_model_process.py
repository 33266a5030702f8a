"""engine.share for real: the launcher starts one model process for two agents, both play from it, and
each fault stays where it belongs (an agent's crash, the model process's crash).

The default ensemble with bass and piano sharing the shipped model, several processes, the OSC bus; the
faults are SIGKILLs, as the OOM killer sends them. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.ensembles import ROOT, read_json, wait_for, write_ensemble
from support.monitor import BusMonitor
from support.net_fixtures import free_port
from support.procs import alive, children, cmdline

pytestmark = [pytest.mark.network, pytest.mark.slow]

SHARING = ("bass", "piano")
SOURCE = ROOT / "ensembles" / "default.yaml"


def shared_ensemble(tmp_path: Path, monitor_port: int) -> Path:
    agents = yaml.safe_load(SOURCE.read_text())["agents"]
    for a in agents:
        if a["name"] in SHARING:
            a["engine"] = {**a["engine"], "model": str(ROOT / "models" / "default"), "share": True}
    return write_ensemble(tmp_path, {"agents": agents, "bus": {"osc": {"monitor_port": monitor_port}}},
                          source=SOURCE)


def pids(launcher: int, needle: str) -> list[int]:
    return [k for k in children(launcher) if needle in cmdline(k) and alive(k)]


def agent_pid(launcher: int, name: str) -> int:
    [pid] = [k for k in pids(launcher, " -m agents ") if f" {name} " in cmdline(k) + " "]
    return pid


def host_stats(stats_dir: Path) -> dict[str, Any]:
    return read_json(stats_dir / "model-0.json") if (stats_dir / "model-0.json").exists() else {}


def test_two_agents_play_from_one_model_process_and_faults_stay_contained(tmp_path: Path) -> None:
    monitor_port = free_port()
    yaml_path = shared_ensemble(tmp_path, monitor_port)
    stats_dir, report = tmp_path / "stats", tmp_path / "report.json"
    mon = BusMonitor("demo", monitor_port)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", "--bars", "40",
         "--report", str(report), "--stats-dir", str(stats_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        mon.wait(lambda: all(len(mon.notes(a)) >= 4 for a in SHARING), 60, "bass and piano playing")
        [host] = pids(proc.pid, "agents.engines.model_host")
        assert not [k for k in children(agent_pid(proc.pid, "bass")) if alive(k)]  # no model of its own
        stats = wait_for(lambda: (s := host_stats(stats_dir)).get("agents") == list(SHARING) and s, 10,
                         "the model process to report both agents")
        assert stats["slots"] == 3  # a spare for a restart's overlap
        joins = stats["joins"]

        # 1. an agent dies: the other plays on from the same model process; the restart joins again
        piano = agent_pid(proc.pid, "piano")
        os.kill(piano, signal.SIGKILL)
        killed = time.monotonic()
        mon.wait(lambda: len(mon.notes("bass", after=killed)) >= 3, 10, "bass playing on")
        assert pids(proc.pid, "agents.engines.model_host") == [host]
        mon.wait(lambda: len(mon.notes("piano", after=killed + 0.5)) >= 2, 30, "the restarted piano playing")
        assert agent_pid(proc.pid, "piano") != piano
        wait_for(lambda: host_stats(stats_dir).get("joins") == joins + 1, 10, "the piano's second join")

        # 2. the model process dies: it is restarted, and both agents restart and join it again
        os.kill(host, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: pids(proc.pid, "agents.engines.model_host") not in ([], [host]), 20,
                 "a new model process")
        mon.wait(lambda: all(len(mon.notes(a, after=killed + 0.5)) >= 2 for a in SHARING), 60,
                 "bass and piano playing again")
        wait_for(lambda: host_stats(stats_dir).get("joins") == 2, 10, "both agents joining the new process")
        assert host_stats(stats_dir)["mean_rows"]["base"] > 1.0  # their calls batch
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        mon.close()
        print(err)  # the launcher's account (restarts and why), shown if the test fails
    rep = read_json(report)
    assert rep["stuck_notes"] == 0
    assert rep["parts"]["piano"]["restarts"] >= 2 and rep["parts"]["bass"]["restarts"] >= 1
    assert rep["model_processes"]["model-0"]["restarts"] == 1
    assert not pids(proc.pid, "agents.engines.model_host")


def test_only_agents_that_have_a_model_in_common_share_a_process(tmp_path: Path) -> None:
    """A model only one of the launcher's agents uses gets no shared process: the agent loads its own."""
    from agents.engines.model_host import shared_groups
    from protocol.ensemble import load_ensemble

    path = shared_ensemble(tmp_path, free_port())
    ens = load_ensemble(path)
    assert [[a.name for a in g] for g in shared_groups(ens, path.parent)] == [list(SHARING)]
    assert shared_groups(ens, path.parent, {"bass", "drums"}) == []  # one sharer here: nothing to share
