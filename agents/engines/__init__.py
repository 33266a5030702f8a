"""Engines turn (context, chord plan, window of beats) into notes; the agent owns time and output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from protocol.ensemble import AgentConfig, Ensemble
from protocol.harmony import ChordPlan
from protocol.messages import AgentParams, Note


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What an engine may look at when it plans: the harmony and the agent's live settings."""

    plan: ChordPlan
    beats_per_bar: int
    params: AgentParams


class Engine(Protocol):
    def plan(self, start_beat: float, end_beat: float, ctx: PlanContext) -> list[Note]:
        """Notes that START in [start_beat, end_beat); called with consecutive windows."""
        ...

    def hear(self, note: Note) -> None:
        """A note from another part (human or agent), for engines that listen."""
        ...

    def close(self) -> None:
        """Release what the engine holds (a model process)."""
        ...


def make_engine(ens: Ensemble, cfg: AgentConfig, base_dir: Path, *, in_process: bool = False,
                model_host: str | None = None) -> Engine:
    """`in_process`: an engine with a model draws it in the caller's thread (virtual time only).
    `model_host`: the socket of the shared model process an `onnx` engine with share joins."""
    if cfg.engine.type == "pattern":
        from agents.engines.pattern import PatternEngine

        return PatternEngine(cfg)
    if cfg.engine.type == "drums":
        from agents.engines.drums import DrumsEngine, drum_seed

        return DrumsEngine(cfg, drum_seed(ens, cfg), human=ens.human.name if ens.human else None)
    if cfg.engine.type == "onnx":
        from agents.engines.onnx_engine import OnnxEngine

        return OnnxEngine(ens, cfg, base_dir, in_process=in_process, model_host=model_host)
    raise ValueError(f"engine.type: {cfg.engine.type!r} is not available in this build")
