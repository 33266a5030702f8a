"""What a part does on the strong beats: the chord its notes lean to there, and what it plays there
when its model fell behind (the Planner's fallback, agents/engines/model_worker.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents.engines.worker_config import WorkerConfig


def is_strong_beat(beat: float, beats_per_bar: int) -> bool:
    """Beat 1, or the middle of an even bar (beat 3 of 4/4): where the fallback plays the chord."""
    pos = beat % beats_per_bar
    middle = beats_per_bar % 2 == 0 and beats_per_bar > 2 and abs(pos - beats_per_bar / 2) < 1e-6
    return pos < 1e-6 or middle


def fallback_pitches(chord: Any, cfg: WorkerConfig) -> list[int]:
    """What a part plays on a strong beat when its model fell behind: the bass the chord's bass note,
    comping the chord's first three tones (close, low in its range), a melody nothing."""
    if chord is None or chord.is_no_chord or cfg.role in ("melody", "drums"):
        return []
    lo, hi = cfg.pitch_range
    if cfg.role == "bass":
        pitch = lo + (chord.bass - lo) % 12
        return [pitch] if pitch <= hi else []
    centre = lo + (hi - lo) // 3
    out = []
    for pc in chord.tones[: min(3, cfg.polyphony)]:
        pitch = centre + (pc - centre) % 12
        if pitch <= hi:
            out.append(pitch)
    return sorted(set(out))


def strong_beat_chord(plan: Any, beat: float, beats_per_bar: int) -> Any:
    """The chord at a beat; on a strong beat (1 and the middle of an even bar) without its tensions,
    so a note landing there leans to a chord tone as a player's would (tensions colour weak beats)."""
    chord = plan.chord_at(beat, beats_per_bar)
    if chord is None or not chord.tensions:
        return chord
    pos = beat % beats_per_bar
    strong = pos < 1 / 16 or pos > beats_per_bar - 1 / 16
    if beats_per_bar % 2 == 0 and beats_per_bar > 2:
        strong = strong or abs(pos - beats_per_bar / 2) < 1 / 16
    return replace(chord, tensions=()) if strong else chord



def fallback_notes(first: float, last: float, planned: list[Any], plan: Any, cfg: WorkerConfig) -> list[Any]:
    """The notes of the beats from ``first`` to ``last`` (whole beats) that the model did not draw:
    on each strong beat where no note of the plan starts, `fallback_pitches` for a beat."""
    from agents.model.live_context import LiveNote

    bpb = cfg.beats_per_bar
    out = []
    beat = first
    while beat < last:
        drawn = any(beat <= n.start_beat < beat + 1 for n in planned)
        if is_strong_beat(beat, bpb) and not drawn:
            for pitch in fallback_pitches(plan.chord_at(beat, bpb), cfg):
                out.append(LiveNote(beat, 1.0, pitch, 80, cfg.voice, cfg.track))
        beat += 1.0
    return out
