"""One model serving several agents (agents/model/shared_model.py): batched calls give each agent what
its own runtime would, and an agent's calls never wait on one that is not drawing.

On tiny_v2_lean in float32, where a row's result does not depend on its batch partners.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from support.models import LEAN, TINY, TOL, random_rows

from agents.model.runtime import ModelRuntime
from agents.model.shared_model import SharedModel

ROOT = Path(__file__).resolve().parents[1]

Op = tuple[str, object]


def script(rng: np.random.Generator, prompt: int, events: int, rollback_at: int | None) -> list[Op]:
    """What a decoder does: a prompt, then per event its token calls (some positions skipped, as
    forced ones are) and the event itself; optionally a re-plan's rollback and re-feed."""
    rows = random_rows(rng, prompt)
    ops: list[Op] = [("prefill", rows)]
    for k in range(events):
        event = random_rows(rng, 1)[0]
        for j in (1, 2, 5, 6, 7):
            ops.append(("token", event[:j]))
        ops.append(("prefill", event[None]))
        if k == rollback_at:
            ops += [("rollback", prompt - 4), ("prefill", rows[prompt - 4 :])]
    return ops


def play(rt: ModelRuntime, ops: list[Op], out: list[np.ndarray]) -> None:
    for i, (op, arg) in enumerate(ops):
        if op == "prefill":
            rt.prefill(arg)  # type: ignore[arg-type]
        elif op == "rollback":
            rt.rollback(arg)  # type: ignore[arg-type]
        else:
            logits = rt.token_logits(arg, temperature=0.6 + 0.2 * (i % 3))  # type: ignore[arg-type]
            assert rt.probs is not None
            out += [logits.copy(), rt.probs.copy()]


def test_agents_on_one_model_get_what_each_alone_would() -> None:
    """Three agents at different context lengths, one re-planning mid-way, each with its own
    temperatures: every logit and probability equals its own runtime's, and calls were batched."""
    rng = np.random.default_rng(5)
    scripts = [script(rng, 12 + 7 * s, 12, 4 if s == 1 else None) for s in range(3)]
    expected = []
    for ops in scripts:
        out: list[np.ndarray] = []
        play(ModelRuntime(LEAN, max_events=96), ops, out)
        expected.append(out)
    model = SharedModel(LEAN, slots=3, max_events=96)
    runtimes = [model.runtime() for _ in scripts]
    got: list[list[np.ndarray]] = [[] for _ in scripts]
    start = threading.Barrier(len(scripts))

    def agent(s: int) -> None:
        with model.drawing(runtimes[s]):
            start.wait(timeout=10)  # all drawing before any calls: batching is then certain
            play(runtimes[s], scripts[s], got[s])

    threads = [threading.Thread(target=agent, args=(s,)) for s in range(len(scripts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive()
    for exp, out in zip(expected, got, strict=True):
        assert len(out) == len(exp)
        assert max(float(np.abs(a - b).max()) for a, b in zip(exp, out, strict=True)) <= TOL
    stats = model.batcher.stats
    assert stats.mean_batch("base") > 1.2 and stats.mean_batch("token") > 1.2, stats


def test_an_agent_that_is_not_drawing_holds_nobody_up_and_keeps_its_cache() -> None:
    """Slots 0 and 2 draw while slot 1 has a context but draws nothing: their calls run without
    waiting for it, batched over all three rows, and slot 1's cache is as it was (its row rode along
    on dummy input, writing only past its valid length)."""
    model = SharedModel(LEAN, slots=3, max_events=32)
    first, idle, last = model.runtime(), model.runtime(), model.runtime()
    assert idle.slot == 1
    rng = np.random.default_rng(1)
    idle.prefill(random_rows(rng, 5))
    prefix = random_rows(rng, 1)[0][:4]
    before = idle.token_logits(prefix).copy()
    start = threading.Barrier(2)

    def agent(rt: ModelRuntime, seed: int) -> None:
        with model.drawing(rt):  # type: ignore[arg-type]
            start.wait(timeout=10)
            play(rt, script(np.random.default_rng(seed), 6, 4, None), [])

    threads = [threading.Thread(target=agent, args=(rt, s)) for s, rt in ((2, first), (3, last))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert model.batcher.stats.mean_batch("base") > 1.2
    assert idle.length == 5
    assert np.abs(idle.token_logits(prefix) - before).max() <= TOL
    assert np.abs(idle.token_logits(prefix[:2]) - ModelRuntime(LEAN, max_events=32).full_logits(
        idle.rows[0], prefix[:2])).max() <= TOL


def test_slots_are_claimed_released_and_refused_when_all_are_taken() -> None:
    model = SharedModel(LEAN, slots=2, max_events=16)
    a, b = model.runtime(), model.runtime()
    assert {a.slot, b.slot} == {0, 1}
    with pytest.raises(ValueError, match="serves 2 agents, all taken"):
        model.runtime()
    model.release(a)
    c = model.runtime()
    assert c.slot == a.slot
    c.prefill(random_rows(np.random.default_rng(3), 4))  # a reused slot starts from an empty context
    assert c.length == 4


def test_a_model_that_cannot_share_says_why() -> None:
    """A TorchScript export (a user's SkyTNT files) has no graph the shared cache can run."""
    with pytest.raises(ValueError, match="a shared model needs a lean export"):
        SharedModel(TINY, slots=2, max_events=16)


def test_check_names_a_share_that_cannot_run(tmp_path: Path) -> None:
    """--check (and every launch) refuses engine.share on a model the shared process cannot run (a
    TorchScript export, as SkyTNT's exporter writes) and on an engine with no model, naming the field."""
    import yaml

    from launcher.check import check_file

    data = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    data["human"]["source"]["path"] = str(ROOT / "ensembles" / data["human"]["source"]["path"])
    data["agents"][0]["engine"].update(model=str(TINY), share=True)
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(data))
    _, problems = check_file(path)
    assert [p for p in problems if "agents.0.engine.share: " in p and "not a lean export" in p], problems
    data["agents"][0]["engine"].update(model=str(LEAN))
    path.write_text(yaml.safe_dump(data))
    assert check_file(path)[1] == []
    data["agents"][2]["engine"]["share"] = True  # the drums
    path.write_text(yaml.safe_dump(data))
    _, problems = check_file(path)
    assert any("agents.2.engine" in p and "only an onnx engine has a model to share" in p for p in problems)


def test_an_agent_joining_while_others_play_rides_along_until_it_is_ready() -> None:
    """A restarted agent takes its slot (its runtime is still being made, loading its prompt) while
    the others' batched calls span its row: they run, and its row counts as empty."""
    from agents.model.shared_model import SlotRuntime

    model = SharedModel(LEAN, slots=3, max_events=32)
    first = model.runtime()
    model._runtimes[1] = SlotRuntime.__new__(SlotRuntime)  # claimed, not yet made
    last = model.runtime()
    assert (first.slot, last.slot) == (0, 2)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def agent(rt: ModelRuntime, seed: int) -> None:
        try:
            with model.drawing(rt):  # type: ignore[arg-type]
                start.wait(timeout=10)
                play(rt, script(np.random.default_rng(seed), 6, 3, None), [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(rt, s)) for s, rt in ((4, first), (5, last))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert not errors, errors
    assert model.batcher.stats.mean_batch("base") > 1.2
