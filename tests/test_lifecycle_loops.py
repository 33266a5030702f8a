"""A loop that fails ends its process, so that the launcher brings the part back: the TaskGroup that
supervises a process's loops (protocol/tasks.py), the conductor's state saved on the way out, and an
injected fault in an agent's plan loop that ends in the part sounding again within 2 s.

WHY: a loop that died quietly would leave a process that answers pings but no longer plays or steers;
ending the process turns that into a restart the launcher already knows how to do.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import yaml
from support.ensembles import (
    finish_launcher,
    read_json,
    recorded_onsets,
    start_launcher,
    wait_for,
    write_ensemble,
)
from support.monitor import BusMonitor
from support.net_fixtures import free_port
from support.procs import alive

from agents.faults import ENV as FAULT_ENV
from agents.faults import InjectedFaultError, PlanFault
from protocol.messages import Note
from protocol.process import EXIT_LOOP_FAILED
from protocol.tasks import LoopFailedError, TaskGroup


# -- 4. supervised loops ----------------------------------------------------------------------------------
def test_task_group_ends_on_the_first_loop_that_raises_and_names_it() -> None:
    async def main() -> tuple[str, bool, bool]:
        stop = asyncio.Event()
        cancelled = asyncio.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)  # a sleep: a loop that runs until it is cancelled
            finally:
                cancelled.set()

        async def fails() -> None:
            await asyncio.sleep(0.01)  # a sleep: it fails a moment in, while the other loops run
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
            await asyncio.sleep(0.01)  # a sleep: a receive loop that runs a moment, then its stream ends

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
            task = tg.start(asyncio.sleep(3600), "stats")  # a sleep: a loop that runs until stopped
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
        """Raises once the conductor plays (the state a restart must resume from), within 5 s."""
        deadline = asyncio.get_running_loop().time() + 5.0
        while not cond.state.timeline.playing:
            assert asyncio.get_running_loop().time() < deadline, "the conductor never started playing"
            await asyncio.sleep(0.01)  # the poll interval of a wait with a deadline
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
    proc = start_launcher(yaml_path, "--bars", "8", "--stats-dir", str(stats_dir), "--report", str(rep),
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
        _, err = finish_launcher(proc, timeout=60)
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
    onsets = recorded_onsets(rec, "piano")
    assert [b for b in onsets if b < 8] and [b for b in onsets if b > 12], onsets
