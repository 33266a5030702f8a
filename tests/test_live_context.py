"""Live context: same order and tokens as the batch tokenizer, and exact change reporting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.model.live_context import Change, LiveContext, LiveNote
from agents.model.prompt import setup_prefix
from agents.model.tokenizer import MidiTokenizer
from agents.model.vocab import VOCAB_V1, VOCAB_V2

TPB = 480


def _first_diff(before: np.ndarray, after: np.ndarray) -> int | None:
    n = min(len(before), len(after))
    differ = np.flatnonzero((before[:n] != after[:n]).any(axis=1))
    if len(differ):
        return int(differ[0])
    return None if len(before) == len(after) else n


# Notes on a 1/32-beat grid so that ticks (at 480 per beat) and beats quantise identically; from 2/32
# on, because 1/32 rounds to the sentinel's slot 0 and the batch setup pass would then dedup it (V1's
# setup key even leaves out the pitch, so a chord there loses notes, which the live context never does).
_notes = st.lists(
    st.builds(
        LiveNote,
        start_beat=st.integers(2, 32 * 40).map(lambda k: k / 32),
        duration_beats=st.integers(1, 32 * 6).map(lambda k: k / 32),
        pitch=st.integers(55, 62),
        velocity=st.integers(1, 127),
        channel=st.integers(0, 2),
        track=st.integers(1, 3),
    ),
    max_size=40,
)
_SENTINEL = LiveNote(0.0, 0.25, 40, 64, 0, 0)  # alone at slot 0: keeps the batch setup pass inert


def _score_of(notes: list[LiveNote]) -> list:
    """MIDI.py score: each track lists its notes at their note-off, as a human's notes arrive."""
    tracks: list[list] = [[] for _ in range(4)]
    for n in notes:
        tracks[n.track].append(["note", round(n.start_beat * TPB), round(n.duration_beats * TPB), n.channel,
                                n.pitch, n.velocity])
    return [TPB, *tracks]


def _by_note_off(notes: list[LiveNote]) -> list[LiveNote]:
    return sorted(notes, key=lambda n: n.start_beat + n.duration_beats)


@pytest.mark.parametrize("version", ["v1", "v2"])
@settings(max_examples=150, deadline=None)
@given(notes=_notes)
def test_live_rows_equal_batch_rows(version: str, notes: list[LiveNote]) -> None:
    arrivals = _by_note_off([_SENTINEL, *notes])
    ctx = LiveContext(version)
    for n in arrivals:
        ctx.add_note(n, owner=n.track)
    batch = MidiTokenizer(version, optimise_midi=False).tokenize(_score_of(arrivals), add_bos_eos=False)
    batch_notes = batch[batch[:, 0] == 3]  # V2 adds detected key signatures; compare the notes
    np.testing.assert_array_equal(ctx.rows[1:], batch_notes)


@settings(max_examples=200, deadline=None)
@given(notes=_notes, data=st.data())
def test_reported_first_row_is_the_first_changed_row(notes: list[LiveNote], data: st.DataObject) -> None:
    ctx = LiveContext("v2")
    for n in notes:
        before = ctx.rows.copy()
        if data.draw(st.booleans()):
            change = ctx.add_note(n, owner=n.track)
            assert change.row is not None
            note = ctx.note_at(change.row)
            assert note is not None and (note.pitch, note.track) == (n.pitch, n.track)
        else:
            change = ctx.truncate_after(n.start_beat, owner=n.track)
        assert change.trimmed == 0
        assert change.first_row == _first_diff(before, ctx.rows)


@settings(max_examples=100, deadline=None)
@given(notes=_notes, seed=st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter_for_distinct_keys(notes: list[LiveNote], seed) -> None:
    # One note per (slot, track): two notes that quantise to one 1/16 slot on one track are a tie the
    # tokenizer breaks by arrival, so only notes at distinct slots have one right order.
    unique = {(round(16 * n.start_beat), n.track): n for n in notes}
    by_key = {(n.track, n.channel, n.pitch): n for n in unique.values()}  # one note per key
    notes = list(by_key.values())
    shuffled = list(notes)
    seed.shuffle(shuffled)
    a, b = LiveContext("v2"), LiveContext("v2")
    for n in sorted(notes, key=lambda n: n.start_beat):
        a.add_note(n)
    for n in shuffled:
        b.add_note(n)
    np.testing.assert_array_equal(a.rows, b.rows)


@settings(max_examples=100, deadline=None)
@given(notes=_notes, nxt=_notes)
def test_decode_note_inverts_add_note(notes: list[LiveNote], nxt: list[LiveNote]) -> None:
    ctx = LiveContext("v1")
    for n in notes:
        ctx.add_note(n)
    end = ctx.beat_of_row(len(ctx) - 1) if len(ctx) > 1 else 0.0
    for owner, n in enumerate(nxt, start=100):
        later = LiveNote(end + n.start_beat, n.duration_beats, n.pitch, n.velocity, n.channel, n.track)
        change = ctx.add_note(later, owner=owner)
        if change.row != len(ctx) - 1:
            continue  # landed before the end (same slot, lower track): not a "next" row
        row = ctx.rows[-1].copy()
        ctx.truncate_after(later.start_beat, owner=owner)
        decoded = ctx.decode_note(row)
        quantised = max(1, round(later.duration_beats * 16)) / 16
        assert decoded == LiveNote(round(later.start_beat * 16) / 16, quantised, later.pitch, later.velocity,
                                   later.channel, later.track)
        assert ctx.add_row(row, owner=owner).row == len(ctx) - 1
        np.testing.assert_array_equal(ctx.rows[-1], row)


def test_late_insertion_reports_its_row_and_fixes_the_next_delta() -> None:
    ctx = LiveContext("v2")
    ctx.add_note(LiveNote(0.0, 1.0, 60, 80, 0, 1))
    ctx.add_note(LiveNote(3.0, 1.0, 64, 80, 1, 2))
    change = ctx.add_note(LiveNote(1.5, 0.5, 62, 80, 0, 1))
    assert change == Change(first_row=2, row=2, trimmed=0)
    t1 = VOCAB_V2.param_base["time1"]
    assert (ctx.rows[1:, 1] - t1).tolist() == [0, 1, 2]  # beat 3 is now 2 beats after beat 1
    assert ctx.rows[2, 2] - VOCAB_V2.param_base["time2"] == 8


def test_same_key_overlap_shortens_the_earlier_note() -> None:
    ctx = LiveContext("v2")
    ctx.add_note(LiveNote(0.0, 4.0, 60, 80, 0, 1))
    ctx.add_note(LiveNote(0.5, 1.0, 67, 80, 0, 1))
    change = ctx.add_note(LiveNote(2.0, 1.0, 60, 90, 0, 1))
    assert change.first_row == 1 and change.row == 3
    assert ctx.note_at(1) == LiveNote(0.0, 2.0, 60, 80, 0, 1)


def test_truncate_after_drops_only_the_owners_uncommitted_rows() -> None:
    ctx = LiveContext("v2")
    for beat, owner in [(0.0, 1), (1.0, 2), (2.0, 1), (3.0, 2), (4.0, 1)]:
        ctx.add_note(LiveNote(beat, 0.5, 60 + owner, 80, owner, owner), owner=owner)
    change = ctx.truncate_after(2.0, owner=1)
    assert change == Change(first_row=3)
    assert ctx.owners.tolist() == [-1, 1, 2, 2]
    assert ctx.truncate_after(10.0, owner=1) == Change(first_row=None)
    assert ctx.truncate_after(0.0).first_row == 1 and len(ctx) == 1


def test_window_trim_keeps_prefix_and_aligns_to_the_bar() -> None:
    prefix = setup_prefix("v2", bpm=120, time_signature=(4, 4))
    ctx = LiveContext("v2", max_events=10, trim_to=6, prefix=prefix)
    changes = [ctx.add_note(LiveNote(float(b), 0.5, 60, 80, 0, 1)) for b in range(8)]
    assert [c.trimmed for c in changes] == [0] * 7 + [5]
    assert changes[-1].rebuild and changes[-1].first_row == 3 and changes[-1].row == 5
    np.testing.assert_array_equal(ctx.rows[:3], prefix)
    assert [ctx.beat_of_row(i) for i in range(3, 6)] == [5.0, 6.0, 7.0]
    assert ctx.rows[3, 1] - VOCAB_V2.param_base["time1"] == 1  # beat 5 counted from bar line 4
    assert ctx.add_note(LiveNote(2.0, 0.5, 61, 80, 0, 1)) == Change(first_row=None)


def test_long_gap_clamps_time1_but_keeps_true_time() -> None:
    ctx = LiveContext("v1")
    ctx.add_note(LiveNote(0.0, 1.0, 60, 80, 0, 1))
    ctx.add_note(LiveNote(300.0, 1.0, 60, 80, 0, 1))
    assert ctx.rows[2, 1] - VOCAB_V1.param_base["time1"] == 127
    assert ctx.beat_of_row(2) == 300.0
    nxt = VOCAB_V1.encode("note", [1, 0, 1, 8, 0, 62, 80])
    assert ctx.decode_note(np.array(nxt)) == LiveNote(301.0, 0.5, 62, 80, 0, 1)


def test_rows_is_a_read_only_view_of_one_buffer() -> None:
    ctx = LiveContext("v2")
    ctx.add_note(LiveNote(0.0, 1.0, 60, 80, 0, 1))
    a, b = ctx.rows, ctx.rows_from(1)
    assert a.dtype == np.int64 and a.flags.c_contiguous and np.shares_memory(a, b)
    with pytest.raises(ValueError):
        a[0, 0] = 5


def test_setup_prefix_layout() -> None:
    rows = setup_prefix("v2", bpm=96, time_signature=(3, 4), key=(2, 0), programs=((1, 0, 33),))
    assert rows.tolist() == [[1, 0, 0, 0, 0, 0, 0, 0], [7, 9, 137, 2201, 3371, 3386, 0, 0],
                             [8, 9, 137, 2201, 3398, 3404, 0, 0], [6, 9, 137, 2201, 3081, 0, 0, 0],
                             [4, 9, 137, 2202, 2329, 2634, 0, 0]]
    with pytest.raises(ValueError, match="time_signature"):
        setup_prefix("v1", time_signature=(4, 4))
    with pytest.raises(ValueError, match="bpm"):
        setup_prefix("v2", bpm=400)


def test_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="pitch"):
        LiveNote(0.0, 1.0, 128, 80, 0, 1)
    with pytest.raises(TypeError, match="velocity"):
        LiveNote(0.0, 1.0, 60, 80.0, 0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration_beats"):
        LiveNote(0.0, 0.0, 60, 80, 0, 1)
    with pytest.raises(ValueError, match="start_beat"):
        LiveContext("v2", origin_beat=4.0).add_note(LiveNote(1.0, 1.0, 60, 80, 0, 1))
    with pytest.raises(ValueError, match="prefix"):
        LiveContext("v2", prefix=np.zeros((1, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="row"):
        LiveContext("v2").add_row(np.array(VOCAB_V2.bos_row()))



def _note_row(beats_on: int, sixteenth: int, pitch: int, track: int = 2, channel: int = 1) -> np.ndarray:
    """A generated note row: time1 counts whole beats on from the context's last row's beat."""
    v = VOCAB_V2
    r = np.zeros(8, np.int64)
    r[0] = v.event_ids["note"]
    r[1], r[2] = v.param_base["time1"] + beats_on, v.param_base["time2"] + sixteenth
    r[3], r[4] = v.param_base["track"] + track, v.param_base["channel"] + channel
    r[5], r[6] = v.param_base["pitch"] + pitch, v.param_base["velocity"] + 80
    r[7] = v.param_base["duration"] + 8
    return r


def test_is_restrike_matches_what_add_row_replaces() -> None:
    """A row that would replace a note of its own key at its own slot, judged from its tokens up to
    the pitch (the decoder asks before drawing velocity and duration); add_row is the referee."""
    notes = [(0.0, 60), (0.0, 64), (1.0, 62), (3.0, 55), (3.5, 57)]  # the last row sits at beat 3.5

    def context() -> LiveContext:
        ctx = LiveContext("v2", prefix=setup_prefix("v2", bpm=120))
        for start, pitch in notes:
            ctx.add_note(LiveNote(start, 0.25, pitch, 90, 1, 2), owner=2)
        return ctx

    cases = [(_note_row(0, 8, 57), True),  # the last row's own slot and key
             (_note_row(0, 0, 55), True),  # an earlier slot of the same beat (the sorted search)
             (_note_row(0, 0, 57), False), (_note_row(0, 8, 58), False), (_note_row(0, 12, 57), False),
             (_note_row(1, 8, 57), False), (_note_row(0, 8, 57, track=3), False),
             (_note_row(0, 8, 57, channel=0), False)]
    def notes_by_slot(ctx: LiveContext) -> list[tuple[float, list[int]]]:
        return [(ctx.beat_of_row(i), ctx.rows[i, 3:6].tolist()) for i in range(ctx.n_prefix, len(ctx))]

    for r, expected in cases:
        ctx = context()
        assert ctx.is_restrike(r) is expected, r
        short = r.copy()
        short[6:] = 0  # only the tokens up to the pitch drawn so far
        assert ctx.is_restrike(short) is expected
        before = notes_by_slot(ctx)
        ctx.add_row(r, owner=2)
        assert (notes_by_slot(ctx) == before) is expected  # the same notes at the same slots
    not_a_note = _note_row(0, 8, 57)
    not_a_note[0] = VOCAB_V2.event_ids["control_change"]
    assert not context().is_restrike(not_a_note)
    assert not LiveContext("v2", prefix=setup_prefix("v2", bpm=120)).is_restrike(_note_row(0, 0, 60))
