"""The band's rules as pure functions: voicing masks, the commit-time move off a clash, the
arrangement of registers and commit turns, dynamics, and the instrument defaults in the YAML."""

from __future__ import annotations

import numpy as np
import pytest

from agents.arrangement import agent_seed, commit_offset, working_range
from agents.dynamics import level_velocity, velocity
from agents.model.voicing import Voicing, pitch_keep, room
from protocol.ensemble import EnsembleError, parse_ensemble

PITCHES = np.arange(36, 80)
BASS, PIANO, HUMAN = 2, 3, 1
COMP = Voicing(role="comp", polyphony=4, span=12, bass_tracks=frozenset({BASS}),
               agent_tracks=frozenset({BASS}))
BASS_V = Voicing(role="bass", polyphony=1, agent_tracks=frozenset({PIANO}))


def sounding(*notes: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(track, pitch, start slot) triples as LiveContext.sounding returns them."""
    arr = np.array(notes or np.zeros((0, 3)), dtype=np.int64).reshape(-1, 3)
    return arr[:, 0], arr[:, 1], arr[:, 2]


def allowed(v: Voicing, track: int, slot: int, *notes: tuple[int, int, int]) -> set[int]:
    keep = pitch_keep(v, track, PITCHES, slot, sounding(*notes))
    return set(PITCHES.tolist()) if keep is None else set(PITCHES[keep].tolist())


def test_nothing_sounding_takes_nothing_away() -> None:
    assert pitch_keep(COMP, PIANO, PITCHES, 16, sounding()) is None


def test_comping_stays_above_the_bass_and_off_other_parts_pitches() -> None:
    ok = allowed(COMP, PIANO, 16, (BASS, 48, 0), (HUMAN, 67, 8))
    assert min(ok) == 49 and 67 not in ok and 79 in ok


def test_the_bass_stays_below_the_band_but_not_below_the_player() -> None:
    ok = allowed(BASS_V, BASS, 16, (PIANO, 55, 0), (HUMAN, 40, 0))
    assert max(ok) == 54 and 40 not in ok  # under the piano; off the player's pitch, not under it
    assert 39 in ok and 41 in ok


def test_a_chord_stays_within_the_hand() -> None:
    ok = allowed(COMP, PIANO, 16, (PIANO, 60, 16), (PIANO, 64, 16))
    assert ok == set(range(52, 73))  # within an octave of both notes already struck


def test_rules_give_way_rather_than_leave_nothing() -> None:
    # the bass sounds at the very top of the piano's range: the register rule yields, the note stays
    keep = pitch_keep(COMP, PIANO, np.arange(40, 49), 16, sounding((BASS, 48, 0)))
    assert keep is None or keep.any()


def test_doubling_allows_unisons() -> None:
    v = Voicing(role="comp", doubling=True)
    assert 67 in allowed(v, PIANO, 16, (HUMAN, 67, 8))


def test_room_moves_a_clash_an_octave_or_to_a_free_chord_tone() -> None:
    assert room(COMP, 64, (48, 79), [(HUMAN, 64)], [], (0, 4, 7)) == 76  # same pitch class, up
    assert room(COMP, 76, (60, 76), [(HUMAN, 76)], [], (0, 4, 7)) == 64  # down when up is out of range
    assert room(COMP, 64, (62, 70), [(HUMAN, 64)], [], (0, 4, 7)) == 67  # else the nearest chord tone
    assert room(COMP, 64, (64, 64), [(HUMAN, 64)], [], (0, 4, 7)) is None  # no room: left out
    assert room(COMP, 50, (48, 79), [(BASS, 52)], [], (0, 4, 7)) == 62  # above the bass
    assert room(BASS_V, 50, (36, 60), [(PIANO, 48)], [], (0, 4, 7)) == 38  # below the piano
    assert room(COMP, 60, (48, 79), [], [60], (0, 4, 7)) == 72  # not twice in its own chord


BAND = {
    "agents": [
        {"name": "bass", "instrument": "bass", "channel": 1, "range": [36, 55], "engine": {"type": "onnx"}},
        {"name": "piano", "instrument": "piano", "channel": 2, "range": [60, 76], "engine": {"type": "onnx"}},
        {"name": "guitar", "instrument": "guitar", "channel": 3, "range": [55, 69],
         "engine": {"type": "onnx"}},
        {"name": "trumpet", "instrument": "trumpet", "channel": 4, "engine": {"type": "onnx"}},
        {"name": "drums", "instrument": "drums"},
    ]
}


def test_instrument_fills_what_the_yaml_leaves_out() -> None:
    ens = parse_ensemble(BAND)
    trumpet, drums = ens.agent("trumpet"), ens.agent("drums")
    assert (trumpet.program, trumpet.range, trumpet.polyphony, trumpet.role) == (56, (58, 79), 1, "melody")
    assert (drums.channel, drums.role) == (9, "drums")
    assert ens.agent("piano").range == (60, 76)  # the YAML's range wins
    with pytest.raises(EnsembleError, match=r"agents\.0\.instrument: .*unknown instrument 'kazoo'"):
        parse_ensemble({"agents": [{"name": "k", "instrument": "kazoo"}]})


def test_arrangement_puts_the_bass_under_the_band_and_orders_overlapping_commits() -> None:
    ens = parse_ensemble(BAND)
    assert working_range(ens, ens.agent("bass")) == (36, 54)
    offsets = {a.name: commit_offset(ens, a) for a in ens.agents}
    assert offsets["bass"] == 0.0 and offsets["drums"] == 0.0  # overlaps nobody after it
    assert offsets["piano"] > offsets["guitar"] > offsets["trumpet"] == 0.0


def test_seeds_come_from_the_yaml() -> None:
    ens = parse_ensemble({**BAND, "seed": 5})
    seeds = {a.name: agent_seed(ens, a, 999) for a in ens.agents}
    assert len(set(seeds.values())) == len(seeds) and 999 not in seeds.values()
    assert agent_seed(parse_ensemble(BAND), ens.agent("bass"), 999) == 999


def test_velocity_has_accents_phrases_and_a_level() -> None:
    def v(beat: float, level: int = 82) -> int:
        return velocity(beat, 60, beats_per_bar=4, level=level, role="comp", seed=1)

    downbeats = [v(4.0 * b) for b in range(16)]
    offbeats = [v(4.0 * b + 1.5) for b in range(16)]
    assert min(downbeats) > max(offbeats)
    assert np.std([v(b / 2) for b in range(128)]) >= 8
    assert v(8.0) == v(8.0)  # the same note always gets the same velocity
    assert np.mean([v(b / 2, level_velocity("pp")) for b in range(64)]) < np.mean(
        [v(b / 2, level_velocity("ff")) for b in range(64)]) - 50
    with pytest.raises(ValueError, match="dynamics"):
        level_velocity("loud")
