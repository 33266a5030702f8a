"""Batch tokenizer: token-exact agreement with SkyTNT's reference arrays, and the spec's edge rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.model.score import midi_to_score, score_to_midi
from agents.model.tokenizer import MidiTokenizer
from agents.model.vocab import VOCAB_V1, VOCAB_V2, vocab_for

FIXTURES = Path(__file__).parent / "fixtures" / "skytnt"
PIECES = ["bach_bwv66_6", "synthetic_multitrack"]
APP = {"remap_track_channel": True, "add_default_instr": True, "remove_empty_channels": False}
SETTINGS = {
    "v2o_default": ("v2", True, {}),
    "v2_plain": ("v2", False, {}),
    "v2o_app_defaults": ("v2", True, APP),
    "v1o_default": ("v1", True, {}),
}
SCORE_TYPES = {"note", "patch_change", "control_change", "set_tempo", "time_signature", "key_signature",
               "pitch_wheel_change"}


def _score(piece: str) -> list:
    return json.loads((FIXTURES / f"{piece}.score.json").read_text())


def _expected(piece: str, setting: str) -> np.ndarray:
    return np.load(FIXTURES / f"{piece}.{setting}.npy")


def _tokenize(setting: str, score: list) -> np.ndarray:
    version, optimise, kwargs = SETTINGS[setting]
    return MidiTokenizer(version, optimise).tokenize(score, **kwargs)


def _only(score: list, types: set[str]) -> list:
    return [score[0], *([e for e in tr if e[0] in types] for tr in score[1:])]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("piece", PIECES)
def test_tokenize_matches_skytnt_reference(piece: str, setting: str) -> None:
    got = _tokenize(setting, _score(piece))
    expected = _expected(piece, setting)
    assert got.dtype == np.int64
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("piece", PIECES)
def test_tokenize_midi_file_matches_reference(piece: str, setting: str) -> None:
    score = midi_to_score(FIXTURES / f"{piece}.mid")
    np.testing.assert_array_equal(_tokenize(setting, score), _expected(piece, setting))


@pytest.mark.parametrize("piece", PIECES)
def test_midi_to_score_matches_midi_py(piece: str) -> None:
    from_bytes = midi_to_score((FIXTURES / f"{piece}.mid").read_bytes())
    assert _only(from_bytes, SCORE_TYPES) == _only(_score(piece), SCORE_TYPES)


@pytest.mark.parametrize("setting", ["v2o_default", "v1o_default"])
@pytest.mark.parametrize("piece", PIECES)
def test_detokenize_matches_reference(piece: str, setting: str) -> None:
    version, optimise, _ = SETTINGS[setting]
    got = MidiTokenizer(version, optimise).detokenize(_expected(piece, setting))
    assert got == json.loads((FIXTURES / f"{piece}.{setting}.detok.json").read_text())


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("piece", PIECES)
def test_score_survives_a_midi_file_round_trip(piece: str, setting: str) -> None:
    score = _only(_score(piece), SCORE_TYPES - {"pitch_wheel_change"})
    again = midi_to_score(score_to_midi(score))
    np.testing.assert_array_equal(_tokenize(setting, again), _expected(piece, setting))


@pytest.mark.parametrize("setting", ["v2o_default", "v1o_default"])
@pytest.mark.parametrize("piece", PIECES)
def test_detokenized_score_is_a_fixed_point(piece: str, setting: str) -> None:
    version, optimise, _ = SETTINGS[setting]
    tok = MidiTokenizer(version, optimise)
    once = tok.detokenize(_expected(piece, setting))
    assert tok.detokenize(tok.tokenize(once)) == tok.detokenize(tok.tokenize(tok.detokenize(
        tok.tokenize(once))))
    reread = midi_to_score(score_to_midi(once))  # MIDI.py order: notes at their note-off
    assert [sorted(tr) for tr in reread[1:]] == [sorted(tr) for tr in once[1:]]


def test_vocabulary_layout() -> None:
    assert VOCAB_V2.vocab_size == 3406 and VOCAB_V1.vocab_size == 3239
    assert VOCAB_V2.param_base["duration"] == 153 and VOCAB_V2.param_base["mi"] == 3404
    assert VOCAB_V1.param_base["bpm"] == 2983 and VOCAB_V1.column("note", "duration") == 4
    assert VOCAB_V2.encode("note", [0, 0, 0, 0, 60, 100, 8]) == [3, 9, 137, 2201, 2329, 2405, 2573, 161]


@given(st.sampled_from(["v1", "v2"]), st.data())
def test_row_encode_decode_round_trip(version: str, data: st.DataObject) -> None:
    vocab = vocab_for(version)
    event = data.draw(st.sampled_from(sorted(vocab.events)))
    params = [data.draw(st.integers(0, vocab.param_size[p] - 1)) for p in vocab.events[event]]
    row = vocab.encode(event, params)
    assert row is not None and len(row) == 8
    assert vocab.decode(row) == [event, *params]


def test_out_of_range_row_is_rejected() -> None:
    assert VOCAB_V2.encode("note", [128, 0, 0, 0, 60, 100, 8]) is None
    assert VOCAB_V2.decode([3, 9, 137, 2201, 2329, 2405, 2573, 0]) is None  # pad as duration
    assert VOCAB_V2.decode([1, 0, 0, 0, 0, 0, 0, 0]) is None


def _plain(version: str = "v2") -> MidiTokenizer:
    return MidiTokenizer(version, optimise_midi=False)


def _note_rows(rows: np.ndarray) -> list[list[int]]:
    return [r for r in rows.tolist() if r[0] == 3]


def test_quantisation_rounds_half_to_even() -> None:
    score = [96, [["note", 99, 96, 0, 60, 90], ["note", 105, 96, 0, 62, 90]]]
    rows = _note_rows(_plain().tokenize(score))
    assert [(r[1] - 9, r[2] - 137) for r in rows] == [(1, 0), (0, 2)]  # slots 16 and 18


def test_gap_over_127_beats_truncates_the_rest() -> None:
    score = [480, [["note", 0, 480, 0, 60, 90], ["note", 480 * 200, 480, 0, 62, 90],
                   ["note", 480 * 201, 480, 0, 64, 90]]]
    rows = _note_rows(_plain().tokenize(score))
    assert [r[5] - 2345 for r in rows] == [60]


def test_long_note_and_small_first_cc_are_dropped() -> None:
    score = [480, [["control_change", 0, 0, 7, 3], ["control_change", 0, 0, 10, 64],
                   ["note", 0, 480 * 128, 0, 60, 90], ["note", 480, 480, 0, 62, 90]]]
    rows = _plain().tokenize(score).tolist()
    assert [r[0] for r in rows] == [1, 5, 3, 2]
    assert rows[1][5] - 2729 == 10 and rows[2][5] - 2345 == 62


def test_same_key_overlap_is_trimmed_like_skytnt() -> None:
    score = [480, [["note", 0, 960, 0, 60, 90], ["note", 480, 480, 0, 60, 91]]]
    rows = _note_rows(_plain().tokenize(score))
    assert [r[7] - 153 for r in rows] == [16, 16]


def test_detokenize_ignores_specials_but_reads_past_eos() -> None:
    tok = _plain()
    note = VOCAB_V2.encode("note", [1, 4, 2, 0, 60, 100, 8])
    rows = [VOCAB_V2.bos_row(), VOCAB_V2.eos_row(), note, [0] * 8]
    assert tok.detokenize(rows) == [480, [["note", 600, 240, 0, 60, 100]]]


def test_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="version"):
        MidiTokenizer("v3")
    with pytest.raises(TypeError, match="optimise_midi"):
        MidiTokenizer("v2", optimise_midi=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ticks_per_beat"):
        _plain().tokenize([480.0, []])
    with pytest.raises(ValueError, match="ticks_per_beat"):
        _plain().tokenize([0, []])
    with pytest.raises(TypeError, match="source"):
        midi_to_score(42)  # type: ignore[arg-type]


def test_remap_keeps_channel_9_for_drums() -> None:
    chans = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]
    score = [480, *[[["note", 0, 480, c, 60 + i, 90]] for i, c in enumerate(chans)]]
    rows = _note_rows(MidiTokenizer("v2", optimise_midi=True).tokenize(score))
    got = {(r[3] - 2201, r[4] - 2329) for r in rows}
    assert got == {(i + 1, c) for i, c in enumerate([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11])}
