"""One agent's decoding: the next event of its own part, sampled on top of the shared live context.

The context holds every part (the human's, the other agents', this agent's); the model conditions on
all of it, but the agent may only ever *emit* its own part. That is enforced where it cannot fail:
each token position gets an allowed-id mask before sampling (event type, own track, own channel,
pitch range, and time tokens that never place the event before the end of the context or before the
commit point), so no post-filter or retry is needed.

Harmony and density enter the same way, as logit offsets on the pitch and time tokens once the
tokens before them say where the note falls (agents/model/decode_bias.py says how much, and why).

The runtime is fed lazily: ``step`` first brings the KV cache in line with the context (``sync``),
then samples. A late event inserted into the context only costs a rollback to the first changed row
and a re-feed of the rows after it, done by the next ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from agents.model.checks import finite, int_in
from agents.model.decode_bias import ChordBias, DensityBias, is_strong_beat
from agents.model.decode_params import DecodeParams
from agents.model.live_context import _RANKS, LiveContext, LiveNote
from agents.model.onset_rules import MAX_DELTA, OnsetRules
from agents.model.runtime import ModelRuntime
from agents.model.sampling import MODES, Sampler
from agents.model.voicing import TUNE_MEMORY_SLOTS, UNDER_TUNE, Voicing, pitch_keep, track_table
from protocol.harmony import Chord

__all__ = ["DecodeParams", "Generator", "is_strong_beat"]

ChordAt = Callable[[float], "Chord | None"]  # the chord sounding at a beat (None: no bias)
RESTRIKES_TO_CLOSE = 4  # re-strikes of one slot in a row before it closes (see Generator.step)
# Times given to other parts that are rejected in a row before the next is kept (Generator.elsewhere):
# a model that expects a part which never plays (muted, resting, or only named in the setup) would
# otherwise leave this one silent for as long as it keeps expecting it.
ELSEWHERE_TRIES = 8
ONSET_GRIDS = (1, 2, 4, 8, 16)  # onset grids in time2 steps (1/16 beat) that divide a beat


class Generator(OnsetRules):
    """Samples this agent's next event, one at a time, from a runtime that mirrors a LiveContext.

    ``sampling="skytnt"`` runs the token model at every position and samples with SkyTNT's own
    operations (same tokens as SkyTNT's loop under the same masks and seed); ``"fast"`` also skips the
    token-model call for positions with one allowed id (event type when only notes are allowed,
    track, channel), which the runtime then folds into the next call. Not thread-safe.
    """

    def __init__(
        self,
        runtime: ModelRuntime,
        context: LiveContext,
        *,
        track: int,
        channel: int,
        pitch_range: tuple[int, int] = (0, 127),
        seed: int | None = None,
        owner: int | None = None,
        allow_patch: bool = False,
        allow_cc: bool = False,
        sampling: str = "fast",
        keep_order: bool = True,
        rng: np.random.RandomState | None = None,
        max_duration_beats: float | None = None,
        onset_grid: int = 1,
        voicing: Voicing | None = None,
        fold_range: bool = True,
        own_time: Sequence[int] = (),
    ) -> None:
        """``owner`` tags this agent's rows in the context (default: the track), so
        ``context.truncate_after(beat, owner)`` drops only its own plan. ``keep_order`` restricts
        time tokens so an event sorts after the context's last row (no re-feed after each event),
        and closes a slot once the model strikes again a note it already holds there (see step).
        ``onset_grid`` (1/16-beat steps, dividing a beat) keeps onsets on that grid: 8 plays on
        eighths, the rhythm a chorale's or a folk tune's parts keep; 1 leaves the model alone.
        ``voicing`` applies the band's rules (agents/model/voicing.py) to every note drawn.
        ``fold_range`` plays the model's odds for a pitch outside ``pitch_range`` on the in-range
        pitch of its class nearest it (`fold_targets`); off, they are masked away, as SkyTNT's own
        loop does (the tests that reproduce it token for token turn it off).
        ``own_time``, the tracks of the band's parts (this one's among them), keeps a note's time only
        where the model could have this part play first among them: see `elsewhere`. Empty: off."""
        if sampling not in MODES:
            raise ValueError(f"sampling must be one of {MODES}, got {sampling!r}")
        vocab = context.vocab
        if runtime.batch_size != 1:
            raise ValueError(f"runtime: batch_size must be 1, got {runtime.batch_size}")
        if runtime.info.vocab_size != vocab.vocab_size or runtime.info.tokenizer_version != vocab.version:
            raise ValueError(
                f"runtime: model is {runtime.info.tokenizer_version} / vocab "
                f"{runtime.info.vocab_size}, context is {vocab.version} / {vocab.vocab_size}"
            )
        if runtime.max_events < context.max_events:
            raise ValueError(
                f"runtime: max_events {runtime.max_events} < the context's "
                f"{context.max_events}; the cache could not hold a full context"
            )
        self.track = int_in("track", track, 0, vocab.param_size["track"] - 1)
        self.channel = int_in("channel", channel, 0, 15)
        if not (isinstance(pitch_range, tuple) and len(pitch_range) == 2):
            raise TypeError(f"pitch_range must be a (lo, hi) tuple, got {pitch_range!r}")
        lo = int_in("pitch_range lo", pitch_range[0], 0, 127)
        hi = int_in("pitch_range hi", pitch_range[1], lo, 127)
        self.pitch_range = (lo, hi)
        self.owner = self.track if owner is None else int_in("owner", owner, 0, 1 << 62)
        for name, flag in (("allow_patch", allow_patch), ("allow_cc", allow_cc), ("keep_order", keep_order)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        self.runtime, self.context, self.vocab = runtime, context, vocab
        self.sampling, self.keep_order, self.fold_range = sampling, keep_order, fold_range
        self.sampler = Sampler(vocab.vocab_size, seed=seed, mode=sampling, rng=rng)
        self.last_row = np.zeros(8, np.int64)  # tokens of the latest draw (a re-strike's: up to its pitch)
        self.restruck = False  # was the latest draw a re-strike, dropped at its pitch? (see step)
        self.spilled = False  # did the latest draw fall at or after ``before_beat``? (see step)
        # Was the latest draw's time another part's? The time tokens come before the track, so the
        # model draws when the next note of the whole band falls, and a part that forced its own
        # track there played every other part's onsets too (a bass in continuous eighths and
        # sixteenths under a chorale). SkyTNT's order puts the parts that sound at one moment by
        # track, so where the model names a later track first, this part does not play then; that
        # time is rejected and the next step draws again from the same context.
        self.elsewhere = False
        self.own_time = bool(own_time)
        self._elsewhere_run = 0  # times rejected in a row (see ELSEWHERE_TRIES)
        self._after_slot = -1  # the latest rejected time: this part's next note comes after it

        def block(param: str) -> np.ndarray:
            base = vocab.param_base[param]
            return np.arange(base, base + vocab.param_size[param], dtype=np.int64)

        self._time1, self._time2 = block("time1"), block("time2")
        # the tracks of the parts that play: the model's odds for a track no part has are no one's time
        top = vocab.param_size["track"] - 1
        band = sorted({int_in("own_time", t, 0, top) for t in (*own_time, self.track)})
        self._tracks = vocab.param_base["track"] + np.array(band, np.int64)
        events = ["note"] + ["patch_change"] * allow_patch + ["control_change"] * allow_cc
        self._event_ids = np.array(sorted(vocab.event_ids[e] for e in events), np.int64)
        fixed = {"track": self.track, "channel": self.channel}
        self._static: dict[str, np.ndarray] = {}
        for param in {p for e in events for p in vocab.events[e]}:
            if param in fixed:
                self._static[param] = np.array([vocab.param_base[param] + fixed[param]], np.int64)
            elif param == "pitch":
                self._static[param] = block("pitch")[lo : hi + 1]
            else:
                self._static[param] = block(param)
        self._pitches = np.arange(lo, hi + 1)
        self._pitch_block = block("pitch")
        self._fold = fold_targets(lo, hi)
        self._pitch_pc = self._pitches % 12
        self.voicing = voicing
        if max_duration_beats is not None:
            # Durations are 1/16-beat steps from 0; a cap keeps a surprised model from holding a note
            # for a hundred beats over everything that follows.
            steps = max(1, round(16 * finite("max_duration_beats", max_duration_beats)))
            self._static["duration"] = self._static["duration"][: steps + 1]
        self._pitch_bias = ChordBias(self._pitch_pc)
        self._density_bias = DensityBias(MAX_DELTA)
        self._probe = np.array([vocab.event_ids["note"], self._time1[0], self._time2[0], 0, 0, 0, 0, 0])
        self._skip_forced = sampling == "fast"
        if onset_grid not in ONSET_GRIDS:
            raise ValueError(f"onset_grid must be one of {ONSET_GRIDS} (1/16-beat steps), got {onset_grid!r}")
        self.onset_grid = onset_grid
        self._closed_slot = -1  # keep_order: a slot where this part's next note may not start
        self._restrikes = 0  # consecutive re-strikes at _closed_slot

    # ---- keeping the KV cache in line with the context ------------------------------------------
    def sync(self) -> int:
        """Feed the runtime whatever context rows it lacks; returns how many rows were (re-)fed.

        Compares the cached rows with the context first (a few µs even at 4096 rows), so a caller
        that forgot a ``Change`` still gets a correct cache, only a later re-feed."""
        rt, rows = self.runtime, self.context.rows
        n_rt, n = rt.length, len(rows)
        keep = min(n_rt, n)
        if keep and not np.array_equal(rt.rows[0, :keep], rows[:keep]):  # equal is the usual case
            keep = int(np.flatnonzero((rt.rows[0, :keep] != rows[:keep]).any(axis=1))[0])
        if keep < n_rt:
            rt.rollback(keep)
        # one row per call, as generation feeds them: int8 graphs quantise activations per call, so a
        # chunked re-feed would leave a cache that differs (by up to half a logit) from the one the
        # same rows fed one by one leave, and what the part plays would depend on when rows arrived
        for i in range(keep, n):
            rt.prefill(rows[i : i + 1])
        return n - keep

    def apply(self, change: object) -> None:
        """Roll the cache back to a context ``Change``'s first changed row; the re-feed is lazy.

        A change from outside (a note heard, a plan dropped) also reopens a closed slot: the model
        may have something new to say there now."""
        self._closed_slot, self._restrikes = -1, 0
        self._elsewhere_run, self._after_slot = 0, -1
        self._rollback_to(change)

    def new_window(self) -> None:
        """Forget the re-strike bookkeeping of the last window: a window drawn from a given context
        and seed then draws the same whatever came before it."""
        self._closed_slot, self._restrikes = -1, 0
        self._elsewhere_run, self._after_slot = 0, -1

    def _rollback_to(self, change: object) -> None:
        first = getattr(change, "first_row", None)
        if getattr(change, "rebuild", False):
            first = self.context.n_prefix
        if first is not None and first < self.runtime.length:
            self.runtime.rollback(first)

    # ---- sampling ---------------------------------------------------------------------------------
    def step(
        self,
        params: DecodeParams,
        chord_at: ChordAt | None = None,
        *,
        not_before_beat: float | None = None,
        max_rest_beats: int | None = None,
        before_beat: float | None = None,
    ) -> LiveNote | None:
        """Sample one event of this agent's part, add it to the context (as ``owner``) and return it
        as a note (None for a patch/control change, when the context could not place it, or for a
        re-strike of a note the part already plays at that slot, which changes nothing).

        ``max_rest_beats`` caps the whole-beat gap (time1) after the earliest allowed beat: an
        accompanist that jumps 90 beats ahead (an untrained or surprised model can) would fall
        silent for minutes, so the gap is bounded rather than hoped for.

        ``before_beat`` ends a window: an event whose time tokens land at or after it is dropped
        there (``spilled`` is set), before its other tokens are drawn, so what is drawn for a window
        depends on that window alone."""
        if not isinstance(params, DecodeParams):
            raise TypeError(f"params must be DecodeParams, got {type(params).__name__}")
        self.sync()
        ctx, vocab, row = self.context, self.vocab, self.last_row
        if not self.elsewhere:  # the last draw ended otherwise than at another part's time: afresh
            self._elsewhere_run, self._after_slot = 0, -1
        self.elsewhere = False
        row[:] = 0
        row[0] = self._pick(0, self._event_ids, params, None)
        name = vocab.event_names[int(row[0])]
        end16 = ctx.slot_of_next(self._probe)  # 16 * the beat time1 counts from
        min_slot = self._min_slot(_RANKS[name], end16, not_before_beat)
        t1_min = min_slot // 16 - end16 // 16
        closed = self.keep_order and name == "note" and self._closed_slot == min_slot and (
            self._restrikes >= RESTRIKES_TO_CLOSE)
        first = min_slot % 16 + self.onset_grid * closed  # the first time2 the rules allow at t1_min
        # where the model's own order lets the part go in that beat: up to the last event's slot the
        # model places nothing, so a first slot there takes nothing from it
        last = ctx.last_event() if first else None
        pushed_from = 0 if last is None or last[0] // 16 != min_slot // 16 else last[0] % 16
        t1 = 0
        for i, param in enumerate(vocab.events[name], start=1):
            bias = None
            if param == "time1":
                t1_max = len(self._time1) if max_rest_beats is None else t1_min + 1 + max(0, max_rest_beats)
                allowed = self._time1[t1_min:t1_max]
                bias = self._density_bias(params.density, 1, t1_min)
                bias = None if bias is None else bias[: len(allowed)]
                if first > pushed_from:
                    bias = self._time1_bias_from(i, t1_min, first, params, bias, len(allowed))
            elif param == "time2":
                t1 = int(row[i - 1] - self._time1[0])
                g = self.onset_grid
                t2_min = min(16 - g, first) if t1 == t1_min else 0
                allowed = self._time2[t2_min::g]
                bias = self._density_bias(params.density, 2, t2_min)
                bias = None if bias is None else bias[::g]
            else:
                allowed = self._static[param]
                if param == "pitch" and params.chord_bias > 0 and chord_at is not None:
                    slot = end16 + 16 * t1 + int(row[2] - self._time2[0])
                    beat = ctx.origin_beat + slot / 16
                    strong = is_strong_beat(beat, ctx.bar_beats)
                    strength = params.chord_bias * (1.0 if strong else params.weak_beat_bias)
                    chord = chord_at(beat)
                    # a bass states the chord where the bar's strong beats are, and where a chord
                    # begins between them (one chord a beat); it moves everywhere else
                    lean = params.bass and (strong or chord != chord_at(beat - 1 / 16))
                    bias = self._pitch_bias(chord, strength, lean)
                if param == "pitch" and self.voicing is not None:
                    slot = end16 + 16 * t1 + int(row[2] - self._time2[0])
                    v = self.voicing
                    recent = None
                    if v.tune_tracks and v.role in UNDER_TUNE:
                        tune = track_table(v.tune_tracks)
                        recent = ctx.pitches_between(slot - TUNE_MEMORY_SLOTS, slot, tune)
                    keep = pitch_keep(v, self.track, self._pitches, slot, ctx.sounding(slot), recent)
                    if keep is not None:
                        allowed = allowed[keep]
                        bias = None if bias is None else bias[keep]
            row[i] = self._pick(i, allowed, params, bias, fold=param == "pitch" and self.fold_range)
            if param == "track" and self.own_time and name == "note" and self._ordered(row):
                named = int(self._pick(i, self._tracks, params, None)) - vocab.param_base["track"]
                if named > self.track and self._elsewhere_run < ELSEWHERE_TRIES:
                    self._elsewhere_run += 1
                    self._after_slot = ctx.slot_of_next(row)  # not then: the next draw comes later
                    self.elsewhere = True
                    return None
                row[i] = self._static["track"][0]
            if param == "time2" and before_beat is not None:
                self.spilled = ctx.slot_of_next(row) >= ctx.slot_of(before_beat)
                if self.spilled:
                    return None
            if param == "pitch" and self.keep_order and ctx.is_restrike(row):
                # The model struck again a note this part already plays at this slot. Its time
                # tokens come before the track token, so after a chord it expects the other voices
                # of its (four-part) training data at the same slot, and with the context unchanged
                # it keeps trying: 96 % of the steps in bench/model_speed's agent loop went so. A
                # re-strike is a rejected draw: the context keeps the note it has, so the draw stops
                # here, before velocity and duration (two token calls) and without a re-feed. The
                # first few rejections stay just that (closing at once skewed the rhythm: groove
                # consistency -15 %); after RESTRIKES_TO_CLOSE in a row the slot is closed, and the
                # next note is drawn as if every draw at this slot had been rejected
                # (OnsetRules._time1_bias_from).
                slot = ctx.slot_of_next(row)
                self._restrikes = self._restrikes + 1 if slot == self._closed_slot else 1
                self._closed_slot = slot
                self.restruck = True
                return None
        self.restruck = False
        change = ctx.add_row(row, self.owner)
        self._rollback_to(change)
        return None if change.row is None else ctx.note_at(change.row)

    def _pick(self, j: int, allowed: np.ndarray, params: DecodeParams, bias: np.ndarray | None,
              fold: bool = False) -> int:
        if self._skip_forced and len(allowed) == 1:
            return self.sampler.forced(int(allowed[0]))
        rt = self.runtime
        logits = rt.token_logits(self.last_row[:j], temperature=params.temperature)[0]
        probs = rt.probs
        if fold:
            # the model's wish for a pitch outside the part's range, played an octave (or more) in
            folded = self._fold_bias(logits)[allowed - self._pitch_block[0] - self.pitch_range[0]]
            bias = folded if bias is None else bias + folded
        return self.sampler.sample(
            logits, allowed, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            bias=bias, probs=None if probs is None else probs[0],
        )

    def _fold_bias(self, logits: np.ndarray) -> np.ndarray:
        """Per in-range pitch: the log of the model's odds for it and for every pitch of its class
        outside the range that folds onto it, minus its own log odds (a logit bias)."""
        raw = logits[self._pitch_block].astype(np.float64)
        top = raw.max()
        odds = np.exp(raw - top)
        n = len(self._pitches)
        valid = self._fold >= 0
        mass = np.bincount(self._fold[valid], weights=odds[valid], minlength=n)
        own = odds[self.pitch_range[0]: self.pitch_range[1] + 1]
        with np.errstate(divide="ignore"):
            out = np.log(mass) - np.log(own)
        return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


def fold_targets(lo: int, hi: int) -> np.ndarray:
    """For each MIDI pitch, the index in [lo, hi] it folds onto: itself when in range, else the
    nearest in-range pitch of its class; -1 when the range holds no pitch of its class.

    WHY: a model that learnt a part in another register (a SkyTNT export's trumpet, the shipped
    model's voice for a channel it never saw) puts much of its odds outside the part's range. Masked
    away, the rest piles onto the range's edge (a six-part band's sax sat on its top note); folded,
    the part plays the pitch the model wanted, an octave in.
    """
    out = np.full(128, -1, np.int64)
    for q in range(128):
        if lo <= q <= hi:
            out[q] = q - lo
            continue
        same = [p for p in range(lo, hi + 1) if p % 12 == q % 12]
        if same:
            out[q] = min(same, key=lambda p: abs(p - q)) - lo
    return out
