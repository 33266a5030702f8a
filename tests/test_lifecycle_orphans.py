"""No process outlives the one it belongs to: a model process ends with its agent (however the agent
ends, SIGKILL included), and the launcher, once it returns, leaves nothing behind that holds its stdout.

WHY real processes: what is checked is what the kernel and the launcher do when a process dies
(SIGKILL leaves no cleanup code to run), which no mock can show. The model is the shipped one where
the brief of the check is "an agent as a user runs it"; the tiny fixture where the model only has to
load and generate. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support.ensembles import (
    ROOT,
    SHIPPED_DEFAULT,
    finish_launcher,
    read_json,
    start_launcher,
    wait_for,
    write_ensemble,
)
from support.models import TINY
from support.procs import Census, alive, children, linux_only

from agents.engines.model_process import model_process
from agents.engines.model_protocol import Committed, CommitWindow, Ready
from agents.engines.model_worker import WorkerConfig


def _model_pids(agent: int) -> list[int]:
    """The model process an onnx agent forked (same command line as the agent: fork, no exec)."""
    return [k for k in children(agent) if alive(k)]


# -- 1. a model process ends with its agent ---------------------------------------------------------
@linux_only
@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize("when", ["loading", "ready"])
def test_model_process_dies_within_1s_of_a_sigkilled_agent(tmp_path: Path, when: str) -> None:
    """`python -m agents` with the shipped model, killed with no chance to clean up; its model
    process must not live on (reparented to init, ~100 MB, holding the launcher's stdout)."""
    yaml_path = write_ensemble(tmp_path, source=SHIPPED_DEFAULT)
    stats = tmp_path / "bass.json"
    agent = subprocess.Popen([sys.executable, "-m", "agents", str(yaml_path), "bass", "--stats", str(stats)],
                             cwd=ROOT, env={**os.environ})  # fmt: skip
    model: list[int] = []
    try:
        model = wait_for(lambda: _model_pids(agent.pid), 30, "the model process to start")
        if when == "ready":  # the agent writes stats once its model has loaded and its loops run
            wait_for(lambda: read_json(stats).get("pid") == agent.pid, 60, "the model to load")
        assert all(alive(m) for m in model)
        os.kill(agent.pid, signal.SIGKILL)
        killed = time.monotonic()
        agent.wait(5)
        wait_for(lambda: not any(alive(m) for m in model), 1.0, "the model process to end", every=0.005)
        print(f"\n{when}: model process gone {time.monotonic() - killed:.3f} s after the agent's SIGKILL")
    finally:
        if agent.poll() is None:
            agent.kill()
        for m in model:
            if alive(m):
                os.kill(m, signal.SIGKILL)


def _tiny_config(horizon_beats: float) -> WorkerConfig:
    return WorkerConfig(
        model=str(TINY), track=2, channel=1, pitch_range=(48, 72), programs=((2, 1, 0),), tempo=120.0,
        beats_per_bar=4, key_sharps=0, key_minor=0, plan_text="C | G7", plan_loop=True, plan_key="C",
        horizon_beats=horizon_beats, seed=3, temperature=1.0, top_p=0.98, top_k=20, density=2.0,
        chord_bias=2.0, bass=False,
    )  # fmt: skip


@pytest.mark.slow
def test_serve_ends_when_the_agent_end_of_the_pipe_closes_mid_generation() -> None:
    """The watch that does not depend on the kernel: between two generation steps a closed pipe
    ends the loop, even while the model has endless work (a horizon it never reaches)."""
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=model_process, args=(child, _tiny_config(horizon_beats=1e6)), daemon=True)
    proc.start()
    child.close()
    try:
        assert conn.poll(60), "the model process did not report"
        assert isinstance(conn.recv(), Ready)
        conn.send(CommitWindow(0.0, 1.0))
        conn.send(CommitWindow(0.0, 1.5))  # now it generates towards the horizon, step after step
        assert conn.poll(10)
        first = conn.recv()
        assert isinstance(first, Committed)

        def generating() -> bool:
            """Its event count grew since the first answer: it is drawing, step after step."""
            conn.send(CommitWindow(0.0, 1.5))  # answered at once, between two generation steps
            assert conn.poll(10), "the model process stopped answering"
            reply = conn.recv()
            return isinstance(reply, Committed) and reply.events > first.events

        wait_for(generating, 10, "the model to be well into generating", every=0.05)
        assert proc.is_alive()
        closed = time.monotonic()
        conn.close()
        proc.join(1.0)
        assert not proc.is_alive(), "still generating 1 s after the agent's end of the pipe closed"
        print(f"\nmodel loop ended {time.monotonic() - closed:.3f} s after the pipe closed")
        assert proc.exitcode == 0
    finally:
        if proc.is_alive():
            proc.kill()


@linux_only
def test_serve_does_not_start_for_a_parent_that_is_already_gone() -> None:
    """The race die_with_parent closes: a parent that died before the child armed the signal."""
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    proc = ctx.Process(target=model_process, args=(child, _tiny_config(8.0), int(gone.stdout)), daemon=True)
    proc.start()
    child.close()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    with pytest.raises(EOFError):  # it died without a word: no model loaded, no `ready`
        conn.recv()


@linux_only
@pytest.mark.slow
@pytest.mark.network
def test_a_sigkilled_agent_mid_generation_leaves_nothing_and_the_launcher_returns(tmp_path: Path) -> None:
    """Through the launcher, with the model busy: the agent's model process is gone within 1 s of
    the agent's SIGKILL, the launcher restarts the part, and at the end nothing holds its stdout."""
    data = yaml.safe_load(SHIPPED_DEFAULT.read_text())
    bass = next(a for a in data["agents"] if a["name"] == "bass")
    yaml_path = write_ensemble(tmp_path, {"agents": [bass]}, source=SHIPPED_DEFAULT)
    stats_dir = tmp_path / "stats"
    proc = start_launcher(yaml_path, "--stats-dir", str(stats_dir), "--report", str(tmp_path / "r.json"))
    census = Census(proc.pid)
    try:
        bass_stats = lambda: read_json(stats_dir / "agent-bass.json")  # noqa: E731
        first = wait_for(lambda: (s := bass_stats()).get("model_events", 0) > 0 and s, 90, "model work")
        agent = int(first["pid"])
        wait_for(lambda: bass_stats().get("model_events", 0) > first["model_events"], 10, "more model work")
        [model] = _model_pids(agent)
        os.kill(agent, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not alive(model), 1.0, "the model process to end", every=0.005)
        print(f"\nmodel process gone {time.monotonic() - killed:.3f} s after the agent's SIGKILL")
        wait_for(lambda: bass_stats().get("pid") not in (None, agent), 60, "the launcher to restart bass")
        proc.send_signal(signal.SIGTERM)
        _, err = finish_launcher(proc)
    finally:
        census.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "agent bass exited with -9; restarting it" in err, err
    assert not census.alive(), census.alive()
    assert json.loads((tmp_path / "r.json").read_text())["ended_by"] == "SIGTERM"


# -- 2. the launcher leaves nothing behind ------------------------------------------------------------
@linux_only
def test_reap_orphans_ends_an_adopted_grandchild_but_leaves_a_daemon(tmp_path: Path) -> None:
    """A subreaper adopts what a dead child left. reap_orphans ends the one still in its process
    group (here a shell's background job that ignores SIGTERM and holds stdout, as a model process
    left by a killed agent would): the caller's `$(...)` returns. One that made itself a daemon
    (setsid, as a JACK server a client auto-starts does) is left running."""
    script, shell, pids = tmp_path / "sub.py", tmp_path / "jobs.sh", tmp_path / "pids"
    daemon = "import os, time; os.setsid(); time.sleep(60)"  # a sleep: the daemon just has to keep running
    # Both background jobs outlive the shell; the first keeps the script's stdout (the test's pipe).
    shell.write_text(f"trap '' TERM\nsleep 60 &\necho $! > {pids}\n"
                     f"{sys.executable} -c '{daemon}' >/dev/null 2>&1 &\necho $! >> {pids}\n")  # fmt: skip
    script.write_text(
        "import os, pathlib, subprocess, sys, time\n"
        "from protocol.process import become_subreaper, child_pids, reap_orphans\n"
        "assert become_subreaper()\n"
        f"subprocess.run(['sh', '{shell}'], check=True)\n"
        f"orphan, daemon = map(int, pathlib.Path('{pids}').read_text().split())\n"
        "deadline = time.monotonic() + 5\n"
        "while not {orphan, daemon} <= set(child_pids()) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "deadline = time.monotonic() + 5\n"
        "while os.getsid(daemon) != daemon and time.monotonic() < deadline:  # the daemon's setsid\n"
        "    time.sleep(0.01)\n"
        "adopted = {orphan, daemon} <= set(child_pids())\n"
        "print(orphan, daemon, adopted, reap_orphans(set()), orphan in child_pids(), flush=True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=15,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    orphan, daemon, adopted, ended, still_child = done.stdout.split()
    try:
        assert (adopted, ended, still_child) == ("True", "1", "False")
        assert not alive(int(orphan))
        assert alive(int(daemon))
    finally:
        if alive(int(daemon)):
            os.kill(int(daemon), signal.SIGKILL)


@linux_only
@pytest.mark.slow
@pytest.mark.network
def test_giving_up_on_a_part_that_cannot_start_leaves_no_process_of_it(tmp_path: Path) -> None:
    """An onnx part whose output can never open: three quick failures, the launcher gives up, and
    neither the agent nor its model process is left; `out=$(run_ensemble.py ... --bars 16)` returns."""
    data = yaml.safe_load(SHIPPED_DEFAULT.read_text())
    bass = next(a for a in data["agents"] if a["name"] == "bass")
    bass["engine"]["model"] = str(TINY)
    garbage = tmp_path / "not-a-soundfont.sf2"  # there and readable (so --check passes), never loads
    garbage.write_bytes(b"RIFF\0\0\0\0junk" * 16)
    bass["output"] = {"type": "fluidsynth", "soundfont": str(garbage)}
    yaml_path = write_ensemble(tmp_path, {"agents": [bass]}, source=SHIPPED_DEFAULT)
    proc = start_launcher(yaml_path, "--bars", "16", "--report", str(tmp_path / "r.json"))
    census = Census(proc.pid)
    try:
        _, err = finish_launcher(proc, timeout=120)
    finally:
        census.close()
    assert proc.returncode == 1, err
    assert "agent bass keeps failing at start; giving up" in err, err
    agents = [p for p, (parent, c) in census.seen.items() if " -m agents " in c and parent == proc.pid]
    # Started by an agent: forked (the agent's command line) or spawned (multiprocessing's).
    models = [p for p, (parent, _) in census.seen.items() if parent in agents]
    assert len(agents) == 3, census.seen  # three starts
    assert models, "the part's model processes were never seen: the check would prove nothing"
    assert not census.alive(), census.alive()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ended_by"] == "giving up: agent bass keeps failing at start"
