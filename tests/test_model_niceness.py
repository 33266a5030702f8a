"""A model process steps back for the processes that keep time only where they cannot pre-empt it.

Under SCHED_FIFO the agents' timing and loop threads pre-empt every normal process, so a niced model
process gives its CPU only to whatever else the machine runs; beside two CPU-bound processes that
made the band's parts hear each other's notes late (docs/band.md). Without SCHED_FIFO the timing
threads are normal threads, and the model steps back for them.

WHY real processes: the nice value is a property of the model process the agent starts, read back
from the kernel; the shipped model is loaded as an agent loads it.
"""

from __future__ import annotations

import os

import pytest
import yaml
from support.ensembles import ROOT

from agents.engines.onnx_engine import OnnxEngine
from protocol.ensemble import parse_ensemble
from protocol.realtime import MODEL_NICE_WITHOUT_FIFO, fifo_permitted, model_niceness


def test_fifo_probe_leaves_the_calling_thread_as_it_found_it() -> None:
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    fifo_permitted()
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before


def test_a_model_steps_back_only_without_sched_fifo() -> None:
    assert model_niceness(False) == MODEL_NICE_WITHOUT_FIFO
    assert model_niceness(True) == (0 if fifo_permitted() else MODEL_NICE_WITHOUT_FIFO)


@pytest.mark.slow
@pytest.mark.parametrize("realtime", [True, False])
def test_the_agent_starts_its_model_process_at_that_niceness(realtime: bool) -> None:
    data = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    data["timing"]["realtime"] = realtime
    ens = parse_ensemble(data, "default.yaml")
    engine = OnnxEngine(ens, ens.agent("bass"), ROOT / "ensembles")
    try:
        engine.wait_ready()
        nice = os.getpriority(os.PRIO_PROCESS, engine.proc.pid) - os.getpriority(os.PRIO_PROCESS, 0)
        assert nice == model_niceness(realtime)
        if realtime and fifo_permitted():
            assert nice == 0, "a model process niced where the timing threads run at SCHED_FIFO"
    finally:
        engine.close()

