"""Where each part plays, decided from the whole ensemble the way an arranger would.

Every agent reads the same YAML, so every agent computes the same arrangement without a word on the
bus. One rule today: the bass stays below the band. Each bass part's top is brought under the lowest
note any other pitched agent may play, so no comping or melody part can sound under it, while the
bass keeps at least an octave and a half to move in (a YAML that leaves it less keeps its range,
and the decoder's voicing rules keep the bass lowest note by note instead).
"""

from __future__ import annotations

from protocol.ensemble import AgentConfig, Ensemble

MIN_BASS_SPAN = 18  # semitones a bass line needs: an octave and a half


def working_range(ens: Ensemble, cfg: AgentConfig) -> tuple[int, int]:
    """The pitch range the agent plays in this ensemble (within its own `range`)."""
    lo, hi = cfg.range
    if cfg.role != "bass":
        return lo, hi
    above = [a.range[0] for a in ens.agents if a.name != cfg.name and a.role in ("comp", "melody")]
    if not above:
        return lo, hi
    top = min(hi, min(above) - 1)
    return (lo, top) if top - lo >= MIN_BASS_SPAN else (lo, hi)


def roles(ens: Ensemble) -> dict[str, str]:
    """Every part's role by name; the human's is `melody` until the player is heard otherwise."""
    out = {a.name: a.role or "comp" for a in ens.agents}
    if ens.human is not None:
        out[ens.human.name] = "melody"
    return out


def agent_seed(ens: Ensemble, cfg: AgentConfig, fallback: int) -> int:
    """engine.seed, else the ensemble's seed offset by the agent's place, else ``fallback``."""
    if cfg.engine.seed is not None:
        return cfg.engine.seed
    if ens.seed is not None:
        index = [a.name for a in ens.agents].index(cfg.name)
        return (ens.seed + 101 * (index + 1)) % 2**31
    return fallback


COMMIT_STEP_BEATS = 0.25  # between two parts' commits: far longer than a note takes to cross the bus


def commit_offset(ens: Ensemble, cfg: AgentConfig) -> float:
    """How far ahead of its agent's commit point this part commits: the first pitched part in the
    YAML furthest, each later one a step less, the last at the commit point itself. A part then
    hears what every part before it committed for a beat before it commits its own for that beat."""
    pitched = [a.name for a in ens.agents if a.role != "drums" and a.engine.type == "onnx"]
    if cfg.name not in pitched:
        return 0.0
    return COMMIT_STEP_BEATS * (len(pitched) - 1 - pitched.index(cfg.name))
