"""Each part reaches the model on the channel of the voice it learnt that register on (agents/voices.py),
and a comping part keeps under the player's tune (agents/model/voicing.py)."""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from support.models import TINY

from agents.arrangement import roles
from agents.engines.model_worker import Planner, WorkerConfig
from agents.engines.onnx_engine import OnnxEngine
from agents.model.voicing import TUNE_STEP, Voicing, pitch_keep, room
from agents.voices import learnt_voices, model_channels
from protocol.ensemble import load_ensemble, parse_ensemble
from protocol.messages import Note

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "default"


def test_the_default_ensemble_has_a_soprano_an_alto_and_a_bass() -> None:
    ens = load_ensemble(ROOT / "ensembles" / "default.yaml")
    assert model_channels(ens, roles(ens)) == {"melody": 0, "piano": 1, "bass": 3, "drums": 9}


def test_a_band_bigger_than_a_chorale_keeps_its_own_channels() -> None:
    ens = load_ensemble(ROOT / "ensembles" / "band.yaml")
    assert model_channels(ens, roles(ens)) == {p.name: p.channel for p in ens.parts()}


def test_only_a_model_trained_here_has_voices() -> None:
    assert learnt_voices(SHIPPED)
    assert not learnt_voices(TINY)  # a SkyTNT-format export: its channels say nothing of register


def _worker_config(agent: str, human_role: str | None = None) -> WorkerConfig:
    """The config an agent of the default ensemble hands its model (its engine on virtual time)."""
    data = yaml.safe_load((ROOT / "ensembles" / "default.yaml").read_text())
    if human_role is not None:
        data["human"]["role"] = human_role
    ens = parse_ensemble(data, "default.yaml")
    cfg = next(a for a in ens.agents if a.name == agent)
    return OnnxEngine(ens, cfg, ROOT / "ensembles", in_process=True).worker_cfg


@pytest.mark.parametrize(("human_role", "heard_as", "tune"), [
    ("auto", "melody", True), ("none", "melody", True), ("melody", "melody", True),
    ("bass", "bass", False), ("comp", "comp", False), ("piano", "comp", False),  # an agent's part
])
def test_a_players_fixed_role_is_how_the_band_hears_them(human_role: str, heard_as: str, tune: bool) -> None:
    """A player the YAML sets on the bass line is a bass to voice above, not a tune to keep under."""
    cfg = _worker_config("piano", human_role)
    human_track = cfg.tracks["melody"][0]
    assert dict(cfg.roles)[human_track] == heard_as
    assert bool(Planner(cfg).voicing.tune_tracks) is tune


def _draw(cfg: WorkerConfig, beats: float) -> list[Note]:
    """What the part commits over ``beats`` beside a player's half-note tune in the fifth octave,
    driven as the agent drives it."""
    planner, notes = Planner(cfg), []
    tune = [(float(b), 72 + (b // 2) % 5) for b in range(0, int(beats), 2)]
    for i in range(int(beats / 0.05)):
        now = i * 0.05
        for start, pitch in tune:
            if now - 0.05 < start <= now:
                planner.hear_held("melody", start, pitch, 90, 0)
            if now - 0.05 < start + 2.0 <= now:
                planner.hear("melody", start, 2.0, pitch, 90, 0)
        notes += planner.commit(now, now + 1.0)
        while planner.wants_work():
            planner.work()
    return notes


def test_the_bass_is_heard_as_the_bass_voice_and_its_notes_keep_its_channel() -> None:
    worker = _worker_config("bass")
    assert worker.channel == 1 and worker.voice == 3  # the YAML's channel 1, the model's bass voice
    assert worker.tracks["bass"][1] == 3 and worker.tracks["melody"][1] == 0
    notes = _draw(worker, 8.0)
    assert notes and {n.channel for n in notes} == {1}


@pytest.mark.parametrize("seed", [3, 11])
def test_the_model_draws_a_lower_line_on_the_bass_voice_than_on_the_alto(seed: int) -> None:
    """Why the voices matter: with no range or chord to steer it, the shipped model places a part by
    its channel. Drawn as the bass voice, the same part sits well below where it sits as the alto."""
    base = replace(_worker_config("bass"), pitch_range=(24, 96), chord_bias=0.0, seed=seed)

    def median_pitch(voice: int) -> float:
        tracks = {**base.tracks, "bass": (base.track, voice)}
        notes = _draw(replace(base, model_channel=voice, tracks=tracks), 16.0)
        return statistics.median(n.pitch for n in notes)

    assert median_pitch(3) <= median_pitch(1) - 5


COMP = Voicing(role="comp", polyphony=4, tune_tracks=frozenset({1}))
PITCHES = np.arange(55, 80)  # a comping piano's range


def _sounding(*notes: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tracks, pitches = zip(*notes, strict=True)
    return np.array(tracks), np.array(pitches), np.zeros(len(notes), dtype=int)


def test_a_comping_part_keeps_under_the_players_tune() -> None:
    keep = pitch_keep(COMP, 3, PITCHES, 0, _sounding((1, 76)))
    assert keep is not None
    assert PITCHES[keep].max() == 76 - TUNE_STEP - 1
    assert room(COMP, 76, (55, 79), [(1, 76)], [], (0, 4, 7)) == 64  # the octave below
    assert room(COMP, 74, (55, 79), [(1, 76)], [], (0, 4, 7)) == 62


def test_a_player_below_the_parts_middle_is_no_tune_and_other_roles_have_none() -> None:
    assert pitch_keep(COMP, 3, PITCHES, 0, _sounding((1, 50))) is None
    assert room(COMP, 76, (55, 79), [(1, 50)], [], (0, 4, 7)) == 76
    bass = replace(COMP, role="bass")
    assert pitch_keep(bass, 3, PITCHES, 0, _sounding((1, 76))) is not None  # only the unison
    assert room(bass, 77, (55, 79), [(1, 76)], [], (0, 4, 7)) == 77


def test_a_horn_beside_the_tune_keeps_under_it() -> None:
    """A melody part beside the player's tune plays a second voice under it, not a line over it."""
    horn = replace(COMP, role="melody", polyphony=1)
    keep = pitch_keep(horn, 3, PITCHES, 0, _sounding((1, 76)))
    assert keep is not None and PITCHES[keep].max() == 76 - TUNE_STEP - 1
    assert room(horn, 77, (55, 79), [(1, 76)], [], (0, 4, 7)) == 65  # an octave down, under the tune


def test_a_comping_part_keeps_under_the_tune_it_has_just_heard_while_the_tune_rests() -> None:
    """Nothing of the tune sounds at the slot (the tune rests, or its next note is not played yet):
    the notes of the last bar still set the ceiling."""
    empty = (np.array([], dtype=int), np.array([], dtype=int), np.array([], dtype=int))
    assert pitch_keep(COMP, 3, PITCHES, 0, empty) is None
    keep = pitch_keep(COMP, 3, PITCHES, 0, empty, np.array([79, 74]))
    assert keep is not None and PITCHES[keep].max() == 74 - TUNE_STEP - 1
    assert room(COMP, 76, (55, 79), [], [], (0, 4, 7), recent_tune=[74]) == 64
    assert room(COMP, 76, (55, 79), [], [], (0, 4, 7)) == 76
    assert room(COMP, 76, (55, 79), [], [], (0, 4, 7), recent_tune=[50]) == 76  # no tune: a bass line


def test_the_default_pianos_right_hand_stays_under_the_tune() -> None:
    """default.yaml in-process, 16 bars, two seeds: the piano's notes that sound above a note of the
    tune sounding at the same moment, as a listener hears a right hand over the melody (3 % of them
    when only the tune's sounding note set the ceiling)."""
    import yaml
    from support.busy_band import play
    from support.inprocess import ENSEMBLES

    above = total = 0
    for seed in (1, 2):
        data = yaml.safe_load((ENSEMBLES / "default.yaml").read_text())
        data["seed"] = seed
        band, _ = play(data, ENSEMBLES, 16, busy=False)
        tune = band.recorded("melody")
        for s, d, p, _ in band.recorded("piano"):
            total += 1
            above += any(ts < s + d - 1e-6 and s < ts + td - 1e-6 and p > tp for ts, td, tp, _ in tune)
    assert total > 200  # it played: some six notes a bar or more
    assert above <= 0.01 * total, (above, total)
