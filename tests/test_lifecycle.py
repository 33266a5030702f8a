"""No process outlives the one it belongs to, a stop ends a `--bars` run, and a loop that fails ends
its process so that the launcher brings the part back.

WHY real processes: what is checked is what the kernel and the launcher do when a process dies
(SIGKILL leaves no cleanup code to run), which no mock can show. The model is the shipped one where
the brief of the check is "an agent as a user runs it"; the tiny fixture where the model only has to
load and generate. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from support.ensembles import ROOT, SHIPPED_DEFAULT, read_json, wait_for, write_ensemble
from support.models import TINY
from support.monitor import BusMonitor
from support.net_fixtures import free_port
from support.procs import alive, children, cmdline

from agents.engines.model_process import model_process
from agents.engines.model_protocol import Committed, CommitWindow, Ready
from agents.engines.model_worker import WorkerConfig
from agents.faults import ENV as FAULT_ENV
from agents.faults import InjectedFaultError, PlanFault
from protocol.messages import Note
from protocol.process import EXIT_LOOP_FAILED
from protocol.tasks import LoopFailedError, TaskGroup

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")


# -- helpers ----------------------------------------------------------------------------------------
def _launch(yaml_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """run_ensemble.py with its stdout on a pipe, as `out=$(python run_ensemble.py ...)` has it."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[str, str]:
    """Wait for a launcher and for EOF on its stdout: a process left holding it would hang here."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        what = f"the launcher, or a process it left, kept stdout open for {timeout} s"
        raise AssertionError(f"{what}\n{err}") from None
    return out, err


class Census:
    """Every process seen under a launcher during a run, polled from /proc (pid -> (ppid, cmdline))."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.seen: dict[int, tuple[int, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            todo = [self.root]
            while todo:
                parent = todo.pop()
                for k in children(parent):
                    # Read again each poll: a child caught between fork and exec still shows its
                    # parent's command line.
                    line = cmdline(k)
                    if line or k not in self.seen:
                        self.seen[k] = (parent, line)
                    todo.append(k)
            self._stop.wait(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def alive(self) -> list[str]:
        return [f"{p} ({c[1][:80]})" for p, c in self.seen.items() if alive(p) and cmdline(p) == c[1]]


def _model_pids(agent: int) -> list[int]:
    """The model process an onnx agent forked (same command line as the agent: fork, no exec)."""
    return [k for k in children(agent) if alive(k)]


def _stop(port: int, sender: str = "127.0.0.1") -> tuple[str, int]:
    """/stop to the control surface from `sender`, as a surface's button sends it; returns the source."""
    b = OscMessageBuilder("/barcelona/demo/stop")
    b.add_arg(1.0, "f")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((sender, 0))
        s.sendto(b.build().dgram, ("127.0.0.1", port))
        return s.getsockname()


def _onsets(path: Path, track: str) -> list[float]:
    mid = mido.MidiFile(str(path))
    for t in mid.tracks:
        if any(m.type == "track_name" and m.name == track for m in t):
            beats, now = [], 0
            for m in t:
                now += m.time
                if m.type == "note_on" and m.velocity > 0:
                    beats.append(now / mid.ticks_per_beat)
            return beats
    raise AssertionError(f"no track {track} in {path}")


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
        assert conn.poll(10) and isinstance(conn.recv(), Committed)
        time.sleep(0.3)  # well into generating
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
    proc = _launch(yaml_path, "--stats-dir", str(stats_dir), "--report", str(tmp_path / "r.json"))
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
        _, err = _finish(proc)
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
    daemon = "import os, time; os.setsid(); time.sleep(60)"
    # Both background jobs outlive the shell; the first keeps the script's stdout (the test's pipe).
    shell.write_text(f"trap '' TERM\nsleep 60 &\necho $! > {pids}\n"
                     f"{sys.executable} -c '{daemon}' >/dev/null 2>&1 &\necho $! >> {pids}\n")  # fmt: skip
    script.write_text(
        "import pathlib, subprocess, sys, time\n"
        "from protocol.process import become_subreaper, child_pids, reap_orphans\n"
        "assert become_subreaper()\n"
        f"subprocess.run(['sh', '{shell}'], check=True)\n"
        f"orphan, daemon = map(int, pathlib.Path('{pids}').read_text().split())\n"
        "deadline = time.monotonic() + 5\n"
        "while not {orphan, daemon} <= set(child_pids()) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "time.sleep(0.5)  # the daemon's setsid\n"
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
    proc = _launch(yaml_path, "--bars", "16", "--report", str(tmp_path / "r.json"))
    census = Census(proc.pid)
    try:
        _, err = _finish(proc, timeout=120)
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


# -- 3. a stop ends a --bars run ------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.network
def test_stop_from_the_surface_ends_a_bars_run_within_2s_and_says_who(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path)
    control = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    stats_dir, rep, rec = tmp_path / "stats", tmp_path / "r.json", tmp_path / "out.mid"
    proc = _launch(yaml_path, "--bars", "8", "--stats-dir", str(stats_dir), "--report", str(rep),
                   "--record", str(rec))  # fmt: skip
    try:
        cond = lambda: read_json(stats_dir / "conductor.json")  # noqa: E731
        wait_for(lambda: cond().get("playing") and cond().get("beat", 0) >= 5, 60, "bar 2 to be under way")
        # A sender the YAML does not allow is refused and changes nothing.
        _stop(control, sender="127.0.0.2")
        wait_for(lambda: cond().get("refused", {}).get("127.0.0.2"), 5, "the stranger's stop to be refused")
        assert cond()["playing"] and proc.poll() is None
        sender = _stop(control)
        stopped = time.monotonic()
        proc.wait(timeout=10)
        took = time.monotonic() - stopped
        _, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nlauncher exited {took:.3f} s after the /stop")
    assert proc.returncode == 0, err
    assert took < 2.0
    who = f"/stop from the control surface ({sender[0]}:{sender[1]})"
    assert f"run stopped by {who}" in err, err
    report = json.loads(rep.read_text())
    assert report["ended_by"] == who
    assert report["stuck_notes"] == 0
    assert 1 <= report["conductor"]["bar"] < 7, report["conductor"]
    onsets = _onsets(rec, "piano")
    assert onsets and max(onsets) < 4 * (report["conductor"]["bar"] + 1), onsets


@pytest.mark.slow
@pytest.mark.network
def test_without_bars_stop_pauses_and_play_resumes(tmp_path: Path) -> None:
    yaml_path = write_ensemble(tmp_path)
    control = int(yaml.safe_load(yaml_path.read_text())["control"]["port"])
    stats_dir = tmp_path / "stats"
    proc = _launch(yaml_path, "--stats-dir", str(stats_dir))
    try:
        cond = lambda: read_json(stats_dir / "conductor.json")  # noqa: E731
        wait_for(lambda: cond().get("playing") and cond().get("beat", 0) >= 1, 60, "the ensemble to play")
        _stop(control)
        wait_for(lambda: cond().get("playing") is False, 5, "the stop")
        time.sleep(1.0)  # long enough for an ended run to have exited
        assert proc.poll() is None and cond()["playing"] is False
        b = OscMessageBuilder("/barcelona/demo/play")
        b.add_arg(1.0, "f")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b.build().dgram, ("127.0.0.1", control))
        wait_for(lambda: cond().get("playing"), 5, "play to resume")
        proc.send_signal(signal.SIGTERM)
        _, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err


# -- 4. supervised loops ----------------------------------------------------------------------------------
def test_task_group_ends_on_the_first_loop_that_raises_and_names_it() -> None:
    async def main() -> tuple[str, bool, bool]:
        stop = asyncio.Event()
        cancelled = asyncio.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                cancelled.set()

        async def fails() -> None:
            await asyncio.sleep(0.01)
            raise KeyError("bar 3")

        async def done_at_once() -> None:  # a task allowed to end (nothing to do) is not a failure
            return

        async with TaskGroup() as tg:
            tg.start(forever(), "heartbeat")
            tg.start(done_at_once(), "link", may_end=True)
            tg.start(fails(), "plan")
            try:
                await asyncio.wait_for(tg.wait(stop), 5)
            except LoopFailedError as exc:
                message = str(exc)
                assert isinstance(exc.__cause__, KeyError)
        return message, cancelled.is_set(), stop.is_set()

    message, cancelled, stopped = asyncio.run(main())
    assert message == "the plan loop failed: KeyError: 'bar 3'"
    assert cancelled and not stopped


def test_a_loop_that_ends_when_it_should_run_on_is_a_failure() -> None:
    """A receive loop whose stream ended would leave a deaf process that still looks alive."""

    async def main() -> str:
        async def stream_ended() -> None:
            await asyncio.sleep(0.01)

        async with TaskGroup() as tg:
            tg.start(stream_ended(), "receive")
            with pytest.raises(LoopFailedError) as failed:
                await asyncio.wait_for(tg.wait(asyncio.Event()), 5)
        return str(failed.value)

    assert asyncio.run(main()).startswith("the receive loop failed: RuntimeError: it ended")


def test_task_group_returns_on_stop_and_cancels_its_loops() -> None:
    async def main() -> bool:
        stop = asyncio.Event()
        async with TaskGroup() as tg:
            task = tg.start(asyncio.sleep(3600), "stats")
            asyncio.get_running_loop().call_later(0.01, stop.set)
            await asyncio.wait_for(tg.wait(stop), 5)
        return task.cancelled()

    assert asyncio.run(main())


@pytest.mark.network
def test_a_conductor_loop_that_raises_ends_the_conductor_with_its_state_saved(tmp_path: Path) -> None:
    """In process, on real sockets: the broadcast loop raises, run() ends with LoopFailedError (which
    the conductor's main turns into one line and exit 70) and close() has saved state and stats."""
    from conductor.conductor import Conductor
    from protocol.ensemble import load_ensemble

    yaml_path = write_ensemble(tmp_path)
    state, stats = tmp_path / "state.json", tmp_path / "conductor.json"
    cond = Conductor(load_ensemble(yaml_path), base_dir=tmp_path, state_path=state, stats_path=stats,
                     wait_agents_s=0.0)  # fmt: skip

    async def broken() -> None:
        await asyncio.sleep(0.3)
        raise ZeroDivisionError("tempo 0")

    cond._broadcast_loop = broken  # type: ignore[method-assign]
    with pytest.raises(LoopFailedError, match="the broadcast loop failed: ZeroDivisionError: tempo 0"):
        asyncio.run(asyncio.wait_for(cond.run(), 10))
    assert read_json(state)["timeline"]["playing"]  # it had started: a restart resumes from here
    assert read_json(stats)["role"] == "conductor"


def test_plan_fault_fires_once_across_processes(tmp_path: Path) -> None:
    marker = tmp_path / "fired"
    env = {FAULT_ENV: f"piano:8:{marker}"}
    assert PlanFault.from_env("bass", env) is None
    fault = PlanFault.from_env("piano", env)
    assert fault is not None
    fault.check(7.9)
    with pytest.raises(InjectedFaultError):
        fault.check(8.0)
    fault.check(9.0)  # spent
    again = PlanFault.from_env("piano", env)  # a restarted agent finds the marker
    assert again is not None
    again.check(12.0)
    with pytest.raises(ValueError, match=FAULT_ENV):
        PlanFault.from_env("piano", {FAULT_ENV: "piano:soon:x"})


@pytest.mark.slow
@pytest.mark.network
def test_a_plan_loop_that_raises_ends_the_agent_and_the_part_plays_again_within_2s(tmp_path: Path) -> None:
    """The injected fault (agents/faults.py) raises in the piano's planning loop at beat 8: the agent
    must exit (notes released), and the launcher's restart must have it sounding again within 2 s."""
    monitor_port = free_port()
    yaml_path = write_ensemble(tmp_path, {"bus": {"osc": {"monitor_port": monitor_port}}})
    data = yaml.safe_load(yaml_path.read_text())
    piano = next(a for a in data["agents"] if a["name"] == "piano")
    # Eighths, held past the fault's moment: notes sound when it strikes, and the first note after
    # the restart comes from the restart itself, not from a gap in the pattern.
    piano["engine"]["rhythm"] = [{"beat": b / 2, "duration": 0.45, "velocity": 70} for b in range(8)]
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False))
    stats_dir, rep, rec = tmp_path / "stats", tmp_path / "r.json", tmp_path / "out.mid"
    marker = tmp_path / "fault-fired"
    mon = BusMonitor("demo", monitor_port)
    proc = _launch(yaml_path, "--bars", "8", "--stats-dir", str(stats_dir), "--report", str(rep),
                   "--record", str(rec), env={FAULT_ENV: f"piano:8:{marker}"})  # fmt: skip
    try:
        stats = lambda: read_json(stats_dir / "agent-piano.json")  # noqa: E731
        first = wait_for(lambda: stats().get("pid"), 60, "the piano to start")
        wait_for(marker.exists, 60, "the injected fault")
        wait_for(lambda: not alive(first), 2.0, "the failing agent to exit", every=0.002)
        exited = time.monotonic()
        tl = mon.timeline()
        assert tl is not None and tl.playing
        resumed: list[Note] = mon.wait(lambda: mon.notes("piano", after=exited), 10, "piano notes again")
        committed = mon.of(Note, lambda m: m.source == "piano" and m is resumed[0])[0][0]
        sounds = tl.time_at(resumed[0].start_beat)
        print(f"\npiano exited at beat {tl.beat_at(exited):.2f}; the new one committed a note "
              f"{committed - exited:.3f} s later, sounding {sounds - exited:.3f} s after the exit")
        assert sounds - exited <= 2.0
        _, err = _finish(proc, timeout=60)
    finally:
        mon.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    line = "error: agent piano: the plan loop failed: InjectedFaultError: injected by BARCELONA_FAULT_PLAN"
    assert line in err, err
    assert f"agent piano exited with {EXIT_LOOP_FAILED}; restarting it" in err, err
    report = json.loads(rep.read_text())
    assert report["parts"]["piano"]["restarts"] == 1
    assert report["stuck_notes"] == 0 and report["parts"]["piano"]["stuck_notes"] == 0
    onsets = _onsets(rec, "piano")
    assert [b for b in onsets if b < 8] and [b for b in onsets if b > 12], onsets
