"""Where each part plays, decided from the whole ensemble the way an arranger would.

Every agent reads the same YAML, so every agent computes the same arrangement without a word on the
bus. One rule today: the bass stays below the band. Each bass part's top is brought under the lowest
note any other pitched agent may play, so no comping or melody part can sound under it, while the
bass keeps at least an octave and a half to move in (a YAML that leaves it less keeps its range,
and the decoder's voicing rules keep the bass lowest note by note instead).
"""

from __future__ import annotations

from protocol.ensemble import AgentConfig, Ensemble
from protocol.form import ending_voicing
from protocol.harmony import Chord

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


def commit_distance(ens: Ensemble, tempo: float) -> float:
    """How far ahead of now (in beats, at ``tempo``) an agent commits its notes: `timing.commit_beats`,
    or the output's latency where that is longer (a note committed sooner would leave late). The
    agent's clock and its model's re-plans both reckon from it, so they must agree."""
    timing = ens.timing
    return max(timing.commit_beats, timing.latency_ms / 1000.0 * tempo / 60.0)


def roles(ens: Ensemble) -> dict[str, str]:
    """Every part's role by name; the human's is `melody` until the player is heard otherwise."""
    out: dict[str, str] = {a.name: a.role or "comp" for a in ens.agents}
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


COMMIT_STEP_BEATS = 0.4  # between two parts' commits: a note crosses the loopback bus in about a
# millisecond, and a model process answers a commit after the window it is drawing (tens of ms here)


def commit_offset(ens: Ensemble, cfg: AgentConfig) -> float:
    """How far ahead of its agent's commit point this part commits.

    Of two model parts whose registers overlap, the one earlier in the YAML commits a step ahead of
    the later one, so the later one hears what the earlier committed for a beat before it commits
    its own for that beat (and stays off its pitches). A part that overlaps no later part commits
    at the commit point itself, so it answers the player as soon as it can."""
    pitched = [a for a in ens.agents if a.role != "drums" and a.engine.type == "onnx"]
    names = [a.name for a in pitched]
    if cfg.name not in names:
        return 0.0
    ranges = [working_range(ens, a) for a in pitched]
    steps = [0] * len(pitched)
    for i in range(len(pitched) - 1, -1, -1):
        later = [steps[j] for j in range(i + 1, len(pitched))
                 if ranges[j][0] <= ranges[i][1] and ranges[i][0] <= ranges[j][1]]
        steps[i] = 1 + max(later) if later else 0
    return COMMIT_STEP_BEATS * steps[names.index(cfg.name)]


def ending_range(ens: Ensemble, cfg: AgentConfig, chord: Chord, player_last: int | None) -> tuple[int, int]:
    """Where a part may voice the final chord: under the note the player ends on (the chord tone
    nearest their last note, ``player_last``, as the conductor ends a replayed player), so the last
    thing heard has no part doubling the player's top note or over it; the part's own range where
    that leaves less than an octave for a chord (a fifth for a melody part's one note), and for the
    bass and drums, which sit under everything anyway."""
    low, high = cfg.range
    human = ens.human
    if human is None or player_last is None or cfg.role in ("bass", "drums"):
        return low, high
    top = ending_voicing("melody", human.range, 1, chord, player_last)
    ceiling = min(high, top[0] - 1) if top else high
    room = 7 if cfg.role == "melody" else 12
    return (low, ceiling) if ceiling - low >= room else (low, high)


def ending_pitches(ens: Ensemble, cfg: AgentConfig, chord: Chord, player_last: int | None) -> list[int]:
    """This part's share of the final chord (protocol.form.ending_voicing), with no pitch another
    part holds. Each agent voices its own share, so the parts agree the way they agree on their
    ranges: every pitched part voices it, the bass and the comping parts first, then the melody
    parts, each in the YAML's order, keeping off the pitches of those before it and off the player's
    last note (``player_last``), which every agent works out alike. A comping part plays a thinner
    chord rather than a unison. A melody part (a horn) holds a free chord tone near the upper third
    of its reach, not the one nearest its own last note, which the others cannot know; where the
    comping parts hold every chord tone in its reach, it doubles one of theirs, as a horn section
    doubles the piano, rather than add a colour the chord does not have. Without this, a piano and a
    guitar voicing the chord in the middle of overlapping ranges ended on the same C, and the two
    horns on one A."""
    taken: set[int] = set()
    if ens.human is not None and player_last is not None:
        taken.update(ending_voicing("melody", ens.human.range, 1, chord, player_last))
    pitched = [a for a in ens.agents if (a.role or "comp") != "drums"]
    pitched.sort(key=lambda a: (a.role or "comp") == "melody")  # stable: the YAML's order within
    for part in pitched:
        pitches = ending_voicing(part.role or "comp", ending_range(ens, part, chord, player_last),
                                 part.polyphony or 1, chord, None, frozenset(taken))
        if part.name == cfg.name:
            return pitches
        taken.update(pitches)
    return ending_voicing(cfg.role or "comp", ending_range(ens, cfg, chord, player_last), cfg.polyphony or 1,
                          chord, None, frozenset(taken))
