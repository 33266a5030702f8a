"""The band plays in the player's key with no plan written: the conductor hears the key and chords
from the player's notes and the agents follow the plan it publishes. In process (tests/support/
inprocess.py): the real conductor, a model bass (the shipped model) and a pattern piano, the
replayed melody transposed away from the YAML's key."""

from __future__ import annotations

from typing import Any

import pytest
from support.inprocess import ENSEMBLES, InProcessEnsemble, ensemble, mixed_data

BARS = 8
MAJOR = (0, 2, 4, 5, 7, 9, 11)


def in_key_share(semitones: int, *, follow: bool) -> float:
    """The share of the bass's and piano's notes from bar 3 on in the major key ``semitones`` above C,
    the melody transposed there; ``follow`` False keeps the YAML's plan, written in C."""
    data: dict[str, Any] = mixed_data(seed=5)
    if follow:
        data.pop("chords", None)  # no plan: the conductor follows the player
    data["human"]["source"]["transpose"] = semitones
    band = InProcessEnsemble(ensemble(data), ENSEMBLES, bars=BARS)
    band.play()
    notes = [p for part in ("bass", "piano") for p in band.played(part) if p.beat >= 8.0]
    assert len(notes) > 30
    return sum((p.pitch - semitones) % 12 in MAJOR for p in notes) / len(notes)


@pytest.mark.parametrize(("name", "semitones"), [("E-flat", 3), ("G", 7), ("A", 9)])
def test_with_no_plan_the_band_plays_in_the_players_key(name: str, semitones: int) -> None:
    share = in_key_share(semitones, follow=True)
    print(f"{name}: {share:.3f} of the band's notes in the player's key")
    # the melody (Ode to Joy) is diatonic: after two bars, nine in ten of the band's notes in its key
    assert share >= 0.9, f"{name}: {share:.2f} of the band's notes in the player's key"


def test_a_plan_written_in_another_key_is_what_the_band_plays() -> None:
    """The control: the same transposed melody over the YAML's plan in C leaves the band in C."""
    share = in_key_share(3, follow=False)
    print(f"E-flat melody over a plan in C: {share:.3f} of the band's notes in E-flat")
    assert share < 0.8
