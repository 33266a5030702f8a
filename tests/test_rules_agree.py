"""One legal range everywhere: each boundary value gets the same verdict from the YAML file, the
control surface, the bus message that carries it and the decoder (or timeline) that uses it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from agents.model.decode_params import DecodeParams
from protocol.controls import BY_NAME
from protocol.ensemble import EnsembleError, parse_ensemble
from protocol.messages import AgentParams
from protocol.rules import RULES, Rule
from protocol.timeline import Timeline


def yaml_agent_engine(name: str, value: Any) -> None:
    text = yaml.safe_dump({"agents": [{"name": "p", "engine": {"type": "onnx", name: value}}]})
    parse_ensemble(yaml.safe_load(text))


def yaml_agent(name: str, value: Any) -> None:
    text = yaml.safe_dump({"agents": [{"name": "p", name: value}]})
    parse_ensemble(yaml.safe_load(text))


def yaml_top(name: str, value: Any) -> None:
    parse_ensemble(yaml.safe_load(yaml.safe_dump({name: value})))


def control(scope: str) -> Callable[[str, Any], None]:
    def send(name: str, value: Any) -> None:
        # surfaces send float32 for every number, as Max and TouchOSC do
        BY_NAME[(scope, name)].coerce([float(value)])
    return send


def message(name: str, value: Any) -> None:
    """The AgentParams the conductor broadcasts after a control or at start from the file."""
    base: dict[str, Any] = {"muted": False, "temperature": 1.0, "density": 1.0, "top_p": 0.98, "top_k": 20}
    AgentParams(agent="p", epoch=0, **{**base, name: value})


def decoder(name: str, value: Any) -> None:
    DecodeParams(**{name: value})


def timeline(name: str, value: Any) -> None:
    Timeline(tempo_bpm=value)


# Every way in that each rule's value has, by rule name.
WAYS: dict[str, tuple[Callable[[str, Any], None], ...]] = {
    "temperature": (yaml_agent_engine, control("agent"), message, decoder),
    "top_p": (yaml_agent_engine, control("agent"), message, decoder),
    "top_k": (yaml_agent_engine, control("agent"), message, decoder),
    "density": (yaml_agent_engine, control("agent"), message, decoder),
    "chord_bias": (yaml_agent_engine, decoder),
    "volume": (yaml_agent, control("agent"), message),
    "pan": (yaml_agent, control("agent"), message),
    "dynamics": (yaml_agent, control("agent"), message),
    "tempo": (yaml_top, control("ensemble"), timeline),
}


def edges(r: Rule) -> list[tuple[Any, bool]]:
    """(value, legal): both bounds, a step past each, and a value with no place on any scale."""
    if r.kind == "int":
        lo, hi = int(r.lo), int(r.hi)
        return [(lo, True), (hi, True), (lo - 1, False), (hi + 1, False)]
    step = 1e-3 * max(1.0, abs(r.lo), abs(r.hi))
    return [(r.lo, True), (r.hi, True), (r.lo - step, False), (r.hi + step, False), (math.nan, False)]


def verdict(way: Callable[[str, Any], None], name: str, value: Any) -> bool:
    try:
        way(name, value)
    except (ValueError, TypeError, EnsembleError):
        return False
    return True


@pytest.mark.parametrize("name", sorted(WAYS))
def test_each_boundary_has_one_verdict_in_every_way_in(name: str) -> None:
    rule = RULES[name]
    for value, legal in edges(rule):
        got = {way.__qualname__: verdict(way, name, value) for way in WAYS[name]}
        assert set(got.values()) == {legal}, f"{name}={value!r}: expected legal={legal}, got {got}"


def test_every_numeric_control_reads_its_range_from_the_table() -> None:
    for (_, name), spec in BY_NAME.items():
        if name in RULES:
            assert (spec.lo, spec.hi) == (RULES[name].lo, RULES[name].hi), name


def test_a_decoder_plays_the_ends_of_every_range() -> None:
    """The ends are not only accepted but playable: top_k 0 keeps every allowed token and density 0
    is the sparsest the part goes, a finite bias, never a crash or a NaN in the draw."""
    import numpy as np

    from agents.model.sampling import Sampler

    sampler = Sampler(64, seed=1)
    logits = np.linspace(-2.0, 2.0, 64).astype(np.float32)
    allowed = np.arange(8, 40, dtype=np.int64)
    drawn = {sampler.sample(logits, allowed, top_k=0, top_p=1.0) for _ in range(400)}
    assert len(drawn) > 20, "top_k 0 must leave every allowed token drawable, not the first k"
    assert drawn <= set(allowed.tolist())
