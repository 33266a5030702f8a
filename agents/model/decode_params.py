"""The knobs an agent's decoding takes, checked once where they are made (YAML, OSC, tests), so the
per-token loop can trust them. Defaults are SkyTNT's generate() defaults."""

from __future__ import annotations

from dataclasses import dataclass

from agents.model.checks import finite
from agents.model.sampling import check_sampling

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
        check_sampling(self.temperature, self.top_p, self.top_k)
        if finite("chord_bias", self.chord_bias) < 0:
            raise ValueError(f"chord_bias must be >= 0, got {self.chord_bias}")
        if not 0 <= finite("weak_beat_bias", self.weak_beat_bias) <= 1:
            raise ValueError(f"weak_beat_bias must be in 0..1, got {self.weak_beat_bias}")
        if finite("density", self.density) <= 0:
            raise ValueError(f"density must be > 0, got {self.density}")
        if not isinstance(self.bass, bool):
            raise TypeError(f"bass must be a bool, got {type(self.bass).__name__}")
