"""The decoder on the committed tiny random-weights export (no torch): masks, SkyTNT-exact sampling,
chord bias (metrical: full on strong beats), and cache rollback after a late note."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from support.models import LEAN, TINY

from agents.model.decoder import RESTRIKES_TO_CLOSE, DecodeParams, Generator, is_strong_beat
from agents.model.live_context import _RANKS, LiveContext, LiveNote
from agents.model.prompt import setup_prefix
from agents.model.runtime import ModelRuntime
from agents.model.vocab import VOCAB_V2
from analysis.metrics import is_strong_beat as metrics_strong_beat
from bench.skytnt_reference import sample_top_p_k, softmax
from protocol.harmony import ChordPlan, parse_chord

V = VOCAB_V2
HUMAN = 1
TRACK, CHANNEL = 2, 1


def make(seed: int = 0, sampling: str = "fast", **kw: object) -> tuple[Generator, LiveContext, ModelRuntime]:
    rt = ModelRuntime(TINY)
    ctx = LiveContext("v2", prefix=setup_prefix("v2", bpm=120, programs=((1, 0, 0), (TRACK, CHANNEL, 33))))
    kw.setdefault("pitch_range", (40, 76))
    return Generator(rt, ctx, track=TRACK, channel=CHANNEL, seed=seed, sampling=sampling, **kw), ctx, rt


# ---- SkyTNT's generate(), restated from SkyTNT's app_onnx.py -------------------------
class SkytntLoop:
    """The app's loop with plain session.run and its KV cache; masks are SkyTNT's (patch/CC disabled,
    all other channels disabled) plus the two restrictions §9.1 allows: notes only and one track,
    and a pitch range. Re-runs the base from scratch when the context rewrote an earlier row."""

    def __init__(self, seed: int, pitch_range: tuple[int, int]) -> None:
        self.base = ort.InferenceSession(str(TINY / "onnx/model_base.onnx"))
        self.token = ort.InferenceSession(str(TINY / "onnx/model_token.onnx"))
        self.rng = np.random.RandomState(seed)
        self.pitch_range = pitch_range
        self.seq = np.zeros((0, 8), np.int64)
        self.past: dict[str, np.ndarray] = {}

    @staticmethod
    def _empty(session: ort.InferenceSession) -> dict[str, np.ndarray]:
        return {i.name: np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
                for i in session.get_inputs() if i.name.startswith("past")}

    def _mask(self, i: int, name: str) -> np.ndarray:
        mask = np.zeros(V.vocab_size, dtype=np.int64)
        if i == 0:
            mask[V.event_ids["note"]] = 1  # extension: no meta events, no EOS (patch/CC disabled as in §9)
            return mask
        param = V.events[name][i - 1]
        base, size = V.param_base[param], V.param_size[param]
        ids = list(range(base, base + size))
        if param == "channel":
            ids = [c for c in ids if c - base == CHANNEL]  # disable_channels = every other channel
        elif param == "track":
            ids = [base + TRACK]
        elif param == "pitch":
            ids = [base + p for p in range(self.pitch_range[0], self.pitch_range[1] + 1)]
        mask[ids] = 1
        return mask

    def next_event(self, rows: np.ndarray, p: DecodeParams) -> np.ndarray:
        n = len(self.seq)
        if n == 0 or n > len(rows) or not np.array_equal(self.seq, rows[:n]):
            n, self.past = 0, self._empty(self.base)
        outs = self.base.run(None, {"x": rows[None, n:], **self.past})
        names = [o.name for o in self.base.get_outputs()][1:]
        self.past = {k.replace("present", "past_key_values"): v for k, v in zip(names, outs[1:], strict=True)}
        self.seq = rows.copy()
        hidden = outs[0][:, -1:]
        tokens: list[int] = []
        name = ""
        past = self._empty(self.token)
        for i in range(8):
            if i == 0:
                feeds = {"hidden": hidden, "x": np.zeros((1, 0), np.int64)}
            else:
                feeds = {"hidden": np.zeros((1, 0, hidden.shape[2]), np.float32),
                         "x": np.array([[tokens[-1]]], np.int64)}
            y, *presents = self.token.run(None, {**feeds, **past})
            past = {k: v for k, v in zip(past, presents, strict=True)}
            scores = softmax(y[:, -1:] / p.temperature, -1) * self._mask(i, name)
            tokens.append(int(sample_top_p_k(scores, p.top_p, p.top_k, self.rng).item()))
            if i == 0:
                name = V.event_names[tokens[0]]
            elif len(V.events[name]) == i:
                break
        return np.array(tokens + [0] * (8 - len(tokens)), np.int64)


@pytest.mark.parametrize("params", [DecodeParams(), DecodeParams(temperature=0.8, top_p=0.9, top_k=8)])
def test_skytnt_mode_reproduces_skytnt_loop(params: DecodeParams) -> None:
    gen, ctx, _ = make(seed=11, sampling="skytnt", keep_order=False, fold_range=False)
    ref = SkytntLoop(11, gen.pitch_range)
    for _ in range(40):
        expected = ref.next_event(np.array(ctx.rows), params)
        gen.step(params)
        assert gen.last_row.tolist() == expected.tolist()


def test_fast_mode_gives_the_same_tokens_as_skytnt_mode() -> None:
    a, _, _ = make(seed=3, sampling="skytnt")
    b, _, _ = make(seed=3, sampling="fast")
    for _ in range(60):
        a.step(DecodeParams())
        b.step(DecodeParams())
        assert a.last_row.tolist() == b.last_row.tolist()


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


def test_fast_mode_on_the_models_softmax_gives_skytnts_tokens() -> None:
    """On a lean export the runtime's token graph also returns softmax(logits / T) (the shared-cache
    rewrite) and fast sampling reads the allowed ids' probabilities from it; the tokens must still be
    the ones SkyTNT's own operations draw from the logits, with a temperature and a chord bias too."""
    plans = [DecodeParams(), DecodeParams(temperature=0.8, chord_bias=2.0)]
    gens = []
    for sampling in ("skytnt", "fast"):
        rt = ModelRuntime(LEAN)
        assert rt.cache_mode == "shared"
        setup = setup_prefix("v2", bpm=120, programs=((1, 0, 0), (TRACK, CHANNEL, 33)))
        ctx = LiveContext("v2", prefix=setup)
        gens.append(Generator(rt, ctx, track=TRACK, channel=CHANNEL, seed=6, sampling=sampling,
                              pitch_range=(40, 76)))
    chord = parse_chord("Am7")
    for k in range(80):
        for gen in gens:
            gen.step(plans[k // 40], lambda beat: chord)
        assert gens[0].last_row.tolist() == gens[1].last_row.tolist(), k


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


def chord_tone_fraction(strength: float, bass: bool = False, on: str = "any",
                        plan_text: str = "Dm7 | G7 | Cmaj7 | A7") -> tuple[float, float]:
    """The chord-tone and root fractions of 150 notes (``on``: of those on strong or weak beats)."""
    plan = ChordPlan.parse(plan_text)
    gen, _, _ = make(seed=21, pitch_range=(36, 84))
    params = DecodeParams(chord_bias=strength, bass=bass)
    tones = roots = n = 0
    while n < 150:
        note = gen.step(params, lambda beat: plan.chord_at(beat, 4))
        if gen.restruck:
            continue  # a rejected draw: no note
        assert note is not None
        strong = is_strong_beat(note.start_beat, 4)
        if on == "weak beat":  # on a beat that is not a strong one
            if strong or note.start_beat % 1:
                continue
        elif on != "any" and strong != (on == "strong"):
            continue
        n += 1
        chord = plan.chord_at(note.start_beat, 4)
        assert chord is not None
        tones += note.pitch % 12 in chord.tones
        roots += note.pitch % 12 == chord.root
    return tones / n, roots / n


def test_chord_bias_raises_the_chord_tone_fraction() -> None:
    weak, _ = chord_tone_fraction(0.0)
    strong, _ = chord_tone_fraction(4.0)
    print(f"chord-tone fraction: bias 0 -> {weak:.2f}, bias 4 -> {strong:.2f}")
    assert strong > weak + 0.25


def test_a_bass_leans_to_the_root_on_strong_beats_and_moves_between_them() -> None:
    _, strong_plain = chord_tone_fraction(4.0, on="strong")
    _, strong_bass = chord_tone_fraction(4.0, bass=True, on="strong")
    _, weak_plain = chord_tone_fraction(4.0, on="weak")
    _, weak_bass = chord_tone_fraction(4.0, bass=True, on="weak")
    print(f"root fraction, strong beats: {strong_plain:.2f} -> bass {strong_bass:.2f}; "
          f"weak: {weak_plain:.2f} -> bass {weak_bass:.2f}")
    assert strong_bass > strong_plain + 0.2
    assert weak_bass < weak_plain + 0.1


def test_a_bass_leans_to_the_root_where_a_chord_begins_between_the_strong_beats() -> None:
    """One chord a beat: beats 2 and 4 begin a chord too, and the bass states it there."""
    plan = "Dm7 G7 Cmaj7 A7 | Em7 A7 Dm7 G7"
    _, plain = chord_tone_fraction(4.0, on="weak beat", plan_text=plan)
    _, bass = chord_tone_fraction(4.0, bass=True, on="weak beat", plan_text=plan)
    print(f"root fraction off the strong beats, a chord a beat: {plain:.2f} -> bass {bass:.2f}")
    assert bass > plain + 0.2


def test_chord_bias_is_full_on_strong_beats_and_a_share_elsewhere() -> None:
    """A bias so strong that only chord tones survive it: with no share off the strong beats, notes
    there are the model's own (the tiny random model's: mostly not chord tones) while strong-beat
    notes stay chord tones; with the full share every note is a chord tone."""
    plan = ChordPlan.parse("C | G7")

    def fractions(weak_share: float) -> tuple[float, float]:
        gen, _, _ = make(seed=5, pitch_range=(36, 84))
        params = DecodeParams(chord_bias=20.0, weak_beat_bias=weak_share, density=2.0)
        hits: dict[bool, list[bool]] = {True: [], False: []}
        for _ in range(300):
            note = gen.step(params, lambda beat: plan.chord_at(beat, 4))
            if gen.restruck:
                continue  # a rejected draw: no note
            assert note is not None
            chord = plan.chord_at(note.start_beat, 4)
            assert chord is not None
            hits[is_strong_beat(note.start_beat, 4)].append(note.pitch % 12 in chord.tones)
        assert len(hits[True]) >= 5 and len(hits[False]) >= 50
        return float(np.mean(hits[True])), float(np.mean(hits[False]))

    strong_none, weak_none = fractions(0.0)
    strong_full, weak_full = fractions(1.0)
    print(f"chord tones, strong/weak beats: share 0 -> {strong_none:.2f}/{weak_none:.2f}, "
          f"share 1 -> {strong_full:.2f}/{weak_full:.2f}")
    assert strong_none == strong_full == weak_full == 1.0
    assert weak_none < 0.7


@pytest.mark.parametrize("bar_beats", [2, 3, 4, 6, 7])
def test_strong_beats_are_the_ones_the_quality_bench_judges(bar_beats: int) -> None:
    for slot in range(16 * bar_beats * 2):
        beat = 100 * bar_beats + slot / 16
        assert is_strong_beat(beat, bar_beats) == metrics_strong_beat(beat, bar_beats), beat


def test_density_shortens_gaps() -> None:
    def mean_gap(density: float) -> float:
        gen, _, _ = make(seed=8)
        starts = [n.start_beat for n in (gen.step(DecodeParams(density=density)) for _ in range(80)) if n]
        return float(np.mean(np.diff(starts)))

    sparse, dense = mean_gap(0.7), mean_gap(3.0)
    assert dense < sparse / 4


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


@pytest.mark.parametrize(("kw", "field"), [
    ({"temperature": 0.0}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"top_p": 1.5}, "top_p"), ({"top_k": -1}, "top_k"), ({"top_k": 4097}, "top_k"),
    ({"chord_bias": -1.0}, "chord_bias"),
    ({"density": -0.1}, "density"), ({"density": 4.5}, "density"), ({"density": float("inf")}, "density"),
    ({"weak_beat_bias": 1.5}, "weak_beat_bias"), ({"weak_beat_bias": -0.1}, "weak_beat_bias"),
])
def test_bad_decode_params_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DecodeParams(**kw)


@pytest.mark.parametrize(("kw", "field"), [
    ({"track": 128}, "track"), ({"channel": 16}, "channel"), ({"pitch_range": (70, 60)}, "pitch_range hi"),
    ({"pitch_range": (-1, 60)}, "pitch_range lo"), ({"sampling": "greedy"}, "sampling"),
])
def test_bad_generator_args_name_the_field(kw: dict, field: str) -> None:
    args = {"track": TRACK, "channel": CHANNEL} | kw
    with pytest.raises(ValueError, match=field):
        Generator(ModelRuntime(TINY), LiveContext("v2"), **args)


def test_runtime_and_step_misuse_name_the_field() -> None:
    with pytest.raises(ValueError, match="runtime"):
        Generator(ModelRuntime(TINY, max_events=64), LiveContext("v2"), track=0, channel=0)
    gen, ctx, _ = make()
    gen.step(DecodeParams())
    with pytest.raises(ValueError, match="not_before_beat"):
        gen.step(DecodeParams(), not_before_beat=ctx.beat_of_row(len(ctx) - 1) + 500)
    with pytest.raises(TypeError, match="params"):
        gen.step({"temperature": 1.0})  # type: ignore[arg-type]


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
