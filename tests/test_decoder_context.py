"""Where the decoder places its notes in the live context (agents/model/decoder.py on the tiny export):
masks that hold with late human notes, a re-struck slot closed, density, an onset grid, own time, and
the KV cache rolled back and refed after a late note exactly as a fresh prefill.

These are the rules that keep a generated part on its track, channel, range and grid while the
player's notes arrive late and out of order.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.models import TINY
from support.tiny_generator import CHANNEL, HUMAN, TRACK, V, make

from agents.model.decoder import RESTRIKES_TO_CLOSE, DecodeParams
from agents.model.live_context import _RANKS, LiveNote
from agents.model.runtime import ModelRuntime


def test_a_note_struck_again_at_its_slot_closes_the_slot() -> None:
    # One allowed pitch: a second note at a slot can only be the same key again, a re-strike. It is
    # a rejected draw: dropped at its pitch token, context unchanged. The part must then move on,
    # not keep re-striking an unchanged context. The busiest density at a low temperature makes the
    # earliest allowed slot (the last note's own) the likeliest.
    gen, ctx, _ = make(seed=4, pitch_range=(60, 60))
    dense = DecodeParams(density=4.0, temperature=0.3)
    closed, in_a_row, at = 0, 0, -1
    for _ in range(200):
        before = ctx.rows.copy()
        note = gen.step(dense)
        if not gen.restruck:  # a new note
            assert note is not None and len(ctx) == len(before) + 1
            in_a_row = 0
            continue
        assert note is None and np.array_equal(ctx.rows, before)  # nothing changed
        assert gen.last_row[6] == gen.last_row[7] == 0  # stopped before velocity and duration
        slot = ctx.slot_of_next(gen.last_row)
        assert ctx.is_restrike(gen.last_row) and slot == ctx.slot_of(ctx.beat_of_row(len(ctx) - 1))
        in_a_row = in_a_row + 1 if slot == at else 1
        at = slot
        if in_a_row == RESTRIKES_TO_CLOSE:
            closed += 1
            following = gen.step(dense)
            assert following is not None and ctx.slot_of(following.start_beat) > slot, (slot, following)
            in_a_row = 0
        assert in_a_row < RESTRIKES_TO_CLOSE
    assert closed >= 3, "the dense tiny model should close slots now and then, or this test shows nothing"
    # A change from outside (a heard note) reopens the slot: the next event may land there again.
    last = ctx.note_at(len(ctx) - 1)
    gen.step(dense)  # whatever it is, it may close the slot again
    gen.apply(ctx.add_note(LiveNote(last.start_beat, 1.0, 48, 80, 0, HUMAN), owner=HUMAN))
    last_slot = ctx.slot_of(ctx.beat_of_row(len(ctx) - 1))
    assert gen._min_slot(_RANKS["note"], ctx.slot_of_next(gen._probe), None) == last_slot


def test_masks_hold_over_many_events_with_late_human_notes() -> None:
    gen, ctx, rt = make(seed=5, pitch_range=(48, 60), allow_cc=True)
    rng = np.random.default_rng(1)
    params = DecodeParams(temperature=1.2, top_p=1.0, top_k=128)
    notes, end = 0, 0.0
    for k in range(300):
        not_before = end + 0.25 if k % 7 == 0 else None
        n_before = len(ctx)
        note = gen.step(params, not_before_beat=not_before)
        if gen.restruck:  # a rejected draw: nothing placed
            assert note is None and len(ctx) == n_before
            continue
        row = gen.last_row
        event = V.decode(row)
        assert event is not None and event[0] in ("note", "control_change")
        assert event[3] == TRACK and event[4] == CHANNEL
        if note is not None:
            notes += 1
            assert 48 <= note.pitch <= 60 and note.channel == CHANNEL and note.track == TRACK
        # appended at the end (an overlap cut may shorten or drop an earlier note of the same key)
        assert len(ctx) >= n_before and ctx.owners[-1] == TRACK
        start = ctx.beat_of_row(len(ctx) - 1)
        assert note is None or note.start_beat == start
        assert start >= end  # never before the end of the context
        if not_before is not None:
            assert start >= not_before
        end = ctx.beat_of_row(len(ctx) - 1)
        if k % 10 == 5:  # a human note that ended late lands a few beats back
            ctx.add_note(LiveNote(max(0.0, end - float(rng.integers(0, 8))), 1.0, int(rng.integers(30, 90)),
                                  80, 0, 1), owner=HUMAN)
    assert 50 < notes < 300  # both event types were drawn
    gen.sync()
    assert np.array_equal(rt.rows[0], ctx.rows)
    assert (ctx.owners == TRACK).sum() + (ctx.owners == HUMAN).sum() == len(ctx) - ctx.n_prefix


def test_density_shortens_gaps() -> None:
    def mean_gap(density: float) -> float:
        gen, _, _ = make(seed=8)
        starts = [n.start_beat for n in (gen.step(DecodeParams(density=density)) for _ in range(80)) if n]
        return float(np.mean(np.diff(starts)))

    sparse, dense = mean_gap(0.7), mean_gap(3.0)
    assert dense < sparse / 4


def test_density_moves_onsets_within_a_beat_on_any_grid() -> None:
    """The density leans on both time tokens: which beat a note falls in, and where in it. On the
    model's own grid (sixteenths) the time2 lean was dropped, so a busier part there took the model's
    plain odds within the beat while its odds of which beat assumed the lean."""
    def position_in_beat(density: float) -> float:
        gen, ctx, _ = make(seed=6)
        ctx.add_note(LiveNote(0.0, 1.0, 60, 90, 0, HUMAN), owner=HUMAN)
        gen.sync()
        at = []
        for _ in range(300):
            got = gen.step(DecodeParams(density=density, top_p=1.0, top_k=0), not_before_beat=0.0625)
            if got is not None:
                at.append(got.start_beat % 1.0)
                gen.apply(ctx.truncate_after(0.0625, owner=TRACK))
        return float(np.mean(at))

    assert position_in_beat(4.0) < position_in_beat(1.0) - 0.03  # 0.44 against 0.51 (0.51 without)


def test_rollback_and_refeed_after_a_late_note_matches_a_fresh_prefill() -> None:
    gen, ctx, rt = make(seed=2)
    rng = np.random.default_rng(4)
    while len(ctx) < 256:
        note = LiveNote(float(len(ctx)) * 0.5, 0.5, int(rng.integers(40, 80)), 90, 0, 1)
        gen.apply(ctx.add_note(note, owner=HUMAN))
        if len(ctx) % 3 == 0:
            gen.step(DecodeParams(density=4.0))
    gen.sync()
    end = ctx.beat_of_row(len(ctx) - 1)
    change = ctx.add_note(LiveNote(end - 2.0, 0.25, 61, 100, 0, 1), owner=HUMAN)
    assert change.first_row is not None and change.first_row < rt.length
    gen.apply(change)
    assert rt.length == change.first_row
    assert gen.sync() == len(ctx) - change.first_row
    fresh = ModelRuntime(TINY)
    fresh.prefill(ctx.rows)
    prefix = np.array([V.event_ids["note"], V.param_base["time1"]], np.int64)
    for j in (0, 1, 2):
        got = rt.token_logits(prefix[:j]).copy()
        assert np.abs(got - fresh.token_logits(prefix[:j])).max() <= 1e-4
        assert np.abs(got - rt.full_logits(ctx.rows, prefix[:j])).max() <= 1e-4


def test_onset_grid_keeps_every_onset_on_it() -> None:
    """A part on eighths never starts a note between them, also after a closed slot and with late
    human notes and a commit point off the grid; without the grid the same model does."""
    def onsets(grid: int) -> list[int]:
        gen, ctx, _ = make(seed=9, pitch_range=(60, 62), onset_grid=grid)
        dense = DecodeParams(density=4.0, temperature=1.3)
        slots = []
        for k in range(300):
            late = k % 11 == 0 and len(ctx) > ctx.n_prefix  # a commit point off the grid
            not_before = ctx.beat_of_row(len(ctx) - 1) + 0.3 if late else None
            note = gen.step(dense, not_before_beat=not_before)
            if note is not None:
                slots.append(ctx.slot_of(note.start_beat))
            if k % 17 == 0:
                end = ctx.beat_of_row(len(ctx) - 1)
                gen.apply(ctx.add_note(LiveNote(end - 0.4375, 0.5, 70, 90, 0, HUMAN), owner=HUMAN))
        return slots

    free = onsets(1)
    assert any(s % 8 for s in free), "the tiny model should play off the eighths, or this test shows nothing"
    eighths = onsets(8)
    assert len(eighths) > 50 and all(s % 8 == 0 for s in eighths), [s for s in eighths if s % 8]
    # one pitch, the busiest density, a low temperature: re-strikes close slots, and the next onset
    # must skip to the next eighth, not the next sixteenth of the beat
    gen, ctx, _ = make(seed=4, pitch_range=(60, 60), onset_grid=8)
    closed = 0
    for _ in range(300):
        was_closed = gen._restrikes >= RESTRIKES_TO_CLOSE
        note = gen.step(DecodeParams(density=4.0, temperature=0.3))
        if note is not None:
            assert ctx.slot_of(note.start_beat) % 8 == 0, note
            closed += was_closed
    assert closed >= 3
    with pytest.raises(ValueError, match="onset_grid"):
        make(onset_grid=3)


def test_own_time_rejects_a_time_the_model_gives_a_later_part_and_adds_nothing() -> None:
    """own_time: the model draws when the next note of the whole band falls; where it names a later
    track first there, this part does not play then, so the draw is rejected (``elsewhere``) and the
    context is left as it was. Without it the part takes that time (every part played the band's
    onsets: the shipped model's bass in eighths and sixteenths)."""
    params = DecodeParams()
    gen, ctx, _ = make(seed=3, own_time=(1, 2, 3, 4, 5))  # track 2 of a band of five
    ctx.add_note(LiveNote(0.0, 1.0, 60, 90, 0, HUMAN), owner=HUMAN)
    rejected = placed = 0
    for _ in range(60):
        before = len(ctx)
        gen.step(params)
        if gen.elsewhere:
            rejected += 1
            assert len(ctx) == before
        elif len(ctx) != before:
            placed += 1
    assert rejected and placed
    plain, pctx, _ = make(seed=3)
    pctx.add_note(LiveNote(0.0, 1.0, 60, 90, 0, HUMAN), owner=HUMAN)
    for _ in range(20):
        plain.step(params)
        assert not plain.elsewhere
    duo, dctx, _ = make(seed=3, own_time=(1, 2))  # only the player's track below: never another's time
    dctx.add_note(LiveNote(0.0, 1.0, 60, 90, 0, HUMAN), owner=HUMAN)
    for _ in range(20):
        duo.step(params)
        assert not duo.elsewhere


def test_own_time_asks_only_where_the_stream_keeps_skytnts_order() -> None:
    """At a slot where a later track's note already sits (or before any note: the setup rows name every
    track at the start), the model expects only later tracks there, which says nothing about this
    part: no rejection there. After the last event, or at its slot behind an earlier track, it asks."""
    gen, ctx, _ = make(own_time=(1, 2, 3))  # track 2
    row = np.array([V.event_ids["note"], V.param_base["time1"], V.param_base["time2"], 0, 0, 0, 0, 0])
    assert not gen._ordered(row)  # no event yet
    ctx.add_note(LiveNote(1.0, 1.0, 60, 90, 0, 3), owner=3)  # track 3 at beat 1
    assert not gen._ordered(row)  # time1 0, time2 0: beat 1, behind track 3
    row[2] = V.param_base["time2"] + 8
    assert gen._ordered(row)  # beat 1.5: after it
    ctx.add_note(LiveNote(2.0, 1.0, 62, 90, 0, 1), owner=1)  # track 1 at beat 2
    row[1], row[2] = V.param_base["time1"], V.param_base["time2"]
    assert gen._ordered(row)  # beat 2, behind an earlier track


def test_an_onset_the_rules_push_inside_a_beat_keeps_the_models_odds() -> None:
    """A commit point inside a beat (or a slot closed to re-strikes, or one the model gave a later
    track) lets the part's next onset start only there. The model's odds of that beat still hold its
    wish for the slots before; masking the beat's own position to the rest of it crammed that wish
    into the first free slot (the default piano put an eighth on nearly every off-beat). Drawn now as
    rejecting every earlier onset would: the share of notes on the first free eighth is the model's
    own P(that slot | not before it), measured here from the model's logits: not the crammed one, nor
    one with the slot's odds taken out before the sampler's temperature instead of after it."""
    params = DecodeParams(top_p=1.0, top_k=0, density=4.0, temperature=0.5)  # a busy part: onsets soon
    gen, ctx, rt = make(seed=5, onset_grid=8)
    ctx.add_note(LiveNote(0.0, 1.0, 60, 90, 0, HUMAN), owner=HUMAN)
    gen.sync()
    # the odds of the next note's time after the player's note at beat 0 (slot 0), as the sampler
    # takes them: the density's bias on the raw logits, then the temperature
    scale = -np.log(params.density)
    note = np.array([V.event_ids["note"]])
    l1 = rt.token_logits(note)[0][gen._time1].astype(np.float64) + scale * np.arange(len(gen._time1))
    l2 = rt.token_logits(np.array([note[0], gen._time1[0]]))[0][gen._time2[::8]].astype(np.float64)
    p1 = _softmax(l1 / params.temperature)
    p2 = _softmax((l2 + scale * np.array([0, 0.5])) / params.temperature)
    # a commit point at beat 0.5: slot 8 of beat 0 (time1 = 0, time2 = 8) is the first allowed
    own = p1[0] * p2[1] / (p1[0] * p2[1] + p1[1:].sum())
    crammed = p1[0]  # all of beat 0's odds on its one free eighth
    # the share with the slot's odds taken out before the temperature instead of after it
    untempered = p1[0] * p2[1] ** 2 / (p1[0] * p2[1] ** 2 + p1[1:].sum())
    tolerance = 0.045
    assert crammed - own > 2 * tolerance and own - untempered > 2 * tolerance, (
        crammed, own, untempered, "the model must want beat 0's downbeat, or this test shows nothing")
    drawn = first = 0
    for _ in range(600):
        got = gen.step(params, not_before_beat=0.5)
        if got is None:
            continue
        drawn += 1
        first += got.start_beat == 0.5
        gen.apply(ctx.truncate_after(0.5, owner=TRACK))
    assert drawn >= 450
    assert abs(first / drawn - own) < tolerance, (first / drawn, own, crammed, untempered)


def _softmax(x: np.ndarray) -> np.ndarray:
    p = np.exp(x - x.max())
    return p / p.sum()
