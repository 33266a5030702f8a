"""The agent ↔ model-process messages: they cross a real pipe intact, and the model answers a commit
window with the part's own Notes.

WHY a real Pipe and the tiny model: the messages must survive pickling between processes, and what
the model commits is only known by running it (no stub planner)."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace

import pytest
from support.models import TINY

from agents.engines.model_process import handle, ready_message
from agents.engines.model_protocol import (
    Committed,
    CommitWindow,
    Failed,
    Hear,
    Held,
    ParamsChange,
    PlanChange,
    Ready,
    StepFailed,
    Stop,
)
from agents.engines.model_worker import Planner, WorkerConfig
from protocol.harmony import ChordPlan
from protocol.messages import HeldNote, Note


def _config() -> WorkerConfig:
    return WorkerConfig(
        model=str(TINY), track=2, channel=1, pitch_range=(48, 72), programs=((1, 0, 0), (2, 1, 0)),
        tempo=120.0, beats_per_bar=4, key_sharps=0, key_minor=0, plan_text="C | G7", plan_loop=True,
        plan_key="C", horizon_beats=2.0, seed=3, temperature=1.0, top_p=0.98, top_k=20, density=2.0,
        chord_bias=2.0, bass=False, tracks={"player": (1, 0), "piano": (2, 1)}, human="player",
        source="piano",
    )  # fmt: skip


def test_every_message_crosses_a_pipe_unchanged() -> None:
    plan = ChordPlan.parse("Dm7 G7 | Cmaj7", loop=False, key="C")
    messages = [
        Hear(Note(1.0, 0.5, 60, 90, 0, "player")), Held(HeldNote(2.0, 62, 80, 0, "player")),
        CommitWindow(0.0, 1.5), PlanChange(plan), ParamsChange(True, 0.9, 0.95, 12, 1.5, 70), Stop(),
        Ready(("CPUExecutionProvider",), 12, "kv", 192), Failed("FileNotFoundError: model.onnx"),
        Committed((Note(1.0, 0.5, 60, 90, 1, "piano"),), 40, 2, 0.25, 0), StepFailed("ValueError: x"),
    ]  # fmt: skip
    a, b = mp.Pipe()
    try:
        for msg in messages:
            a.send(msg)
            got = b.recv()
            assert got == msg and type(got) is type(msg)
        received = messages[3]
        assert isinstance(received, PlanChange) and received.plan.chord_at(4.0, 4) is not None
    finally:
        a.close()
        b.close()


def test_a_commit_window_is_answered_with_the_parts_notes() -> None:
    planner = Planner(_config())
    ready = ready_message(planner)
    assert ready.providers and ready.max_events > 0
    handle(planner, Hear(Note(0.0, 1.0, 60, 100, 0, "player")), 0.0)
    notes: list[Note] = []
    for i in range(24):
        answer = handle(planner, CommitWindow(i * 0.5, i * 0.5 + 1.0), 0.5)
        assert isinstance(answer, Committed) and answer.load == 0.5
        notes += answer.notes
    assert notes, "eleven beats of a part and not one note"
    assert all(type(n) is Note and n.channel == 1 and n.source == "piano" for n in notes)
    assert all(48 <= n.pitch <= 72 and n.velocity >= 1 for n in notes)
    assert handle(planner, PlanChange(ChordPlan.parse("F | C", key="C")), 0.0) is None
    assert planner.plan.chord_at(0.0, 4).symbol == "F"


def test_a_message_the_model_does_not_know_is_refused_by_name() -> None:
    planner = Planner(_config())
    with pytest.raises(TypeError, match="Ready"):
        handle(planner, Ready((), 0, "", 0), 0.0)


def test_an_engine_restarted_into_a_session_sends_the_plan_and_settings_the_band_has_now() -> None:
    """The model process starts with the YAML's plan and settings; an agent restarted while the band
    plays another plan (a /plan edit) and another density must hand those to its model at once, and
    a first window that matches the YAML sends nothing (no needless re-plan at start)."""
    from pathlib import Path

    from agents.engines import PlanContext, make_engine
    from protocol.ensemble import parse_ensemble
    from protocol.harmony import ChordPlan
    from protocol.messages import AgentParams

    root = Path(__file__).resolve().parents[1]
    engine_cfg = {"type": "onnx", "model": str(root / "models/default")}
    bass = {"name": "bass", "instrument": "bass", "engine": engine_cfg}
    ens = parse_ensemble({"chords": "C | G7", "agents": [bass]})
    cfg = ens.agents[0]
    yaml_params = AgentParams("bass", 0, False, cfg.engine.temperature, cfg.engine.density, cfg.engine.top_p,
                              cfg.engine.top_k, dynamics=82)
    plan = ChordPlan.parse("C | G7", loop=ens.loop, key=ens.key)
    same = make_engine(ens, cfg, root, in_process=True)
    try:
        same.plan(0.0, 1.0, PlanContext(plan, 4, yaml_params))
        assert same.conn.planner.replans == 0
    finally:
        same.close()
    edited = ChordPlan.parse("Am | E7", loop=ens.loop, key=ens.key)
    engine = make_engine(ens, cfg, root, in_process=True)
    try:
        engine.plan(0.0, 1.0, PlanContext(edited, 4, replace(yaml_params, density=2.5)))
        planner = engine.conn.planner
        assert planner.plan == edited and planner.params.density == 2.5
    finally:
        engine.close()
