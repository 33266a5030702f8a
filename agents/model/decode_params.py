"""The knobs an agent's decoding takes, checked once where they are made (YAML, OSC, tests), so the
per-token loop can trust them. Defaults are SkyTNT's generate() defaults."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.rules import RULES

__all__ = ["DecodeParams"]


@dataclass(frozen=True, slots=True)
class DecodeParams:
    """Per-agent, live-tunable decoding knobs; defaults are SkyTNT's generate() defaults."""

    temperature: float = 1.0
    top_p: float = 0.98
    top_k: int = 20
    chord_bias: float = 0.0
    density: float = 1.0
    bass: bool = False
    # The share of chord_bias off the strong beats (0..1): lighter there, so passing tones stay
    # possible; no effect while chord_bias is 0, so SkyTNT's defaults are still SkyTNT's.
    weak_beat_bias: float = 0.5

    def __post_init__(self) -> None:
        # The rule table's ranges, as the YAML and the control surface use: a value either of them
        # accepts never stops the model process.
        for name in ("temperature", "top_p", "top_k", "chord_bias", "density", "weak_beat_bias"):
            object.__setattr__(self, name, RULES[name].check(getattr(self, name)))
        if not isinstance(self.bass, bool):
            raise TypeError(f"bass must be a bool, got {type(self.bass).__name__}")
