"""A part's notes end a little before its next note, as a player's do (agents/articulation.py): a
bass that never lifts a finger and a piano held down like an organ were what the model's lengths,
cut at the next onset, sounded like."""

from __future__ import annotations

import pytest
import yaml
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble

from agents.articulation import GAP, OFFBEAT_STAB, SPREAD, sounding_length


def length(role: str, start: float, to_next: float, together: int = 1) -> float:
    return sounding_length(role, start, to_next, beats_per_bar=4, seed=1, pitch=60, together=together)


@pytest.mark.parametrize("role", sorted(GAP))
def test_a_note_ends_before_the_next_by_a_players_release(role: str) -> None:
    _, least, most = GAP[role]
    for to_next in (0.25, 0.5, 1.0, 2.0, 4.0):
        gap = to_next - length(role, 1.0, to_next)
        assert min(least, to_next / 2) - 1e-9 <= gap <= most + 1e-9, (role, to_next, gap)
    # the release takes about the same time whatever the note's value: a half note is not cut by a
    # fifth of its length
    assert 2.0 - length(role, 1.0, 2.0) <= most


def test_a_comping_chord_off_the_beat_is_a_stab_and_a_single_note_is_not() -> None:
    stab = length("comp", 1.5, 0.5, together=3)
    assert stab == pytest.approx(0.5 * (1 - OFFBEAT_STAB), abs=0.5 * SPREAD + 1e-9)
    assert length("comp", 1.5, 0.5) > 0.4  # a passing note of the line
    assert length("comp", 2.0, 1.0, together=3) > 0.75  # the chord on the beat rings nearly full


def test_drums_and_unknown_roles_keep_their_lengths() -> None:
    assert length("drums", 1.0, 0.5) == 0.5


def test_the_band_lifts_its_fingers() -> None:
    """The default ensemble, 8 bars: most of the bass's and the piano's notes that reach the part's
    next note end before it (83 of the bass's 90 and 156 of the piano's 165 ran into it in 16
    bars), and no note is cut to nothing."""
    data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
    data["seed"] = 2
    band = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=8)
    band.play()
    for part in ("bass", "piano"):
        notes = sorted(band.recorded(part))
        onsets = sorted({s for s, *_ in notes})
        ratios = []
        for s, d, _, _ in notes:
            nxt = next((o for o in onsets if o > s + 1e-9), None)
            if nxt is not None and s + d > nxt - 0.25:
                ratios.append(d / (nxt - s))
        assert len(ratios) > 20, part
        assert sum(r < 0.99 for r in ratios) / len(ratios) > 0.8, part
        assert min(d for _, d, _, _ in notes) >= 1 / 16, part
