"""The part an `onnx` agent's model plays: keeps the context, plans ahead, commits on request.

The Planner lives in the model process (its message loop is agents/engines/model_process.py; what
crosses the pipe is agents/engines/model_protocol.py) and, for tests on virtual time, in the agent's
own thread (agents/engines/inline_model.py).

Plan/commit: notes are generated up to a horizon ahead of the commit point and kept as the
uncommitted plan. On each `CommitWindow` the notes that start before the requested commit beat
are committed (sent, never changed again). A human note, a chord-plan change or a parameter change
drops the uncommitted plan and regenerates it from the new context, so the agent answers what the
human just did within the commit window.

Beside it: what it is told (worker_config.py), how it hears (planner_hearing.py), the beats it
reckons with (plan_timing.py), how it voices a commit (commit_voicing.py) and its fallback
(strong_beats.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agents.engines.commit_voicing import as_played, others_sounding, recent_tune
from agents.engines.plan_timing import (
    FIRST_BEAT_MARGIN,
    MAX_STEPS_PER_WINDOW,
    OTHERS_GATE_BEATS,
    REPLAN_LEAD_BEATS,
    START_SLACK_BEATS,
    SYNC_WINDOWS,
    window_seed,
)
from agents.engines.planner_hearing import PlannerHearing
from agents.engines.strong_beats import fallback_notes, is_strong_beat, strong_beat_chord
from agents.engines.worker_config import WorkerConfig, context_events, part_voicing, resolve_model
from agents.interplay import TuneActivity, onset_grid
from protocol.harmony import ChordPlan
from protocol.messages import Note
from protocol.rules import RULES

if TYPE_CHECKING:
    from agents.model.runtime import ModelRuntime

# WorkerConfig and resolve_model are imported from here by the engine and the launcher's checks
__all__ = ["Planner", "WorkerConfig", "resolve_model"]

log = logging.getLogger("barcelona.model")


class Planner(PlannerHearing):
    """The model side of plan/commit; pure apart from the model it drives, so tests can step it.

    What it commits is a function of its inputs in musical time, its seed and nothing else, so a
    slow CPU plays the same notes as a fast one for as long as it keeps up. Three rules make it so:

    - The plan grows one beat (a *window*) at a time, and window ``k`` is drawn only once the commit
      point has come within ``horizon_beats`` of it, in full, before the next message is read. How
      far a fast CPU could have run ahead never shows in the notes.
    - Each window draws from its own random stream, seeded by (seed, k): a window drawn again after
      a re-plan draws as it would have the first time, whatever was drawn and thrown away before.
    - Another agent's note enters the context when the window being drawn is far enough past its
      start that it has surely arrived (``OTHERS_GATE_BEATS`` beyond the lead), never when it happens
      to arrive, and the notes that enter together take their order from their beats, tracks and
      pitches. At a commit, another part's note counts (no unisons, the bass lowest) only if its
      part committed it a turn earlier in musical time (``_heard_by``). The player's notes re-plan
      the part, as the player must be answered, at a fixed musical time: when the commit point
      reaches the note's beat plus the commit distance (and ``PLAYER_SLACK_BEATS``), between the
      notes committed before it and those after, whether the message was read a few milliseconds
      before that clock tick or after it.

    A note of another part that arrives after the window or commit it was due in is counted in
    ``late_heard``: the band did not keep up there (a model process starved of CPU answered its
    commit late), and from there on this part may play other notes than on an idle machine.

    When the model falls behind (the commit point reaches beats it has not drawn), those beats get
    what a player short of time plays: the chord on its strong beats (bass: the root; comping: the
    chord; a melody rests), and the model resumes after them. ``behind_beats`` counts them.
    """

    def __init__(self, cfg: WorkerConfig, runtime: Callable[[str, int], ModelRuntime] | None = None) -> None:
        """`runtime(folder, max_events)` makes the model's runtime (a shared model's, model_host.py);
        by default the Planner opens the folder itself."""
        from agents.model.decoder import DecodeParams, Generator
        from agents.model.int8_cache import folder_to_load
        from agents.model.live_context import LiveContext
        from agents.model.prompt import setup_prefix
        from agents.model.runtime import ModelRuntime

        self.cfg = cfg
        model, self.model_note = folder_to_load(cfg.model, cfg.quantize)
        self.max_events = context_events(model, cfg.max_events)
        self.runtime = (ModelRuntime(model, intra_op_threads=cfg.intra_op_threads, max_events=self.max_events)
                        if runtime is None else runtime(model, self.max_events))
        version = self.runtime.info.tokenizer_version
        prefix = setup_prefix(
            version,
            bpm=min(383, round(cfg.tempo)),
            time_signature=(cfg.beats_per_bar, 4) if version == "v2" else None,
            key=(cfg.key_sharps, cfg.key_minor) if version == "v2" else None,
            programs=cfg.programs,
        )
        self.context = LiveContext(
            version, max_events=self.max_events, prefix=prefix, bar_beats=cfg.beats_per_bar
        )
        self.voicing = part_voicing(cfg)
        self.generator = Generator(
            self.runtime,
            self.context,
            track=cfg.track,
            channel=cfg.voice,
            pitch_range=cfg.pitch_range,
            seed=cfg.seed,
            max_duration_beats=cfg.max_note_beats,
            onset_grid=cfg.onset_grid,
            voicing=self.voicing if cfg.role != "drums" else None,
            own_time=tuple(t for t, _ in cfg.tracks.values()),
        )
        self._Params = DecodeParams
        self.plan = cfg.plan if cfg.plan is not None else ChordPlan.parse(
            cfg.plan_text, loop=cfg.plan_loop, key=cfg.plan_key)
        self.bpb = cfg.beats_per_bar
        self.params = DecodeParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            chord_bias=cfg.chord_bias,
            density=cfg.density,
            bass=cfg.bass,
        )
        self.level = cfg.dynamics
        from agents.dynamics import PlayerDynamics
        self.player_dynamics = PlayerDynamics()  # the player's level, which the part's follows
        # how busy the player's tune is, which the part's density follows (agents/interplay.py);
        # only beside a tune, as with the ceiling under it. Its lag: the commit distance, the re-plan lead
        # and the quarter-beat grid re-plans start on (see agents/interplay.py)
        lag = cfg.commit_beats + cfg.commit_offset + REPLAN_LEAD_BEATS + 0.25
        self.tune = TuneActivity.for_role(cfg.role, lag, beside_tune=bool(self.voicing.tune_tracks))
        self.window_params = self.params  # the params the window being drawn was drawn with
        self.muted = False
        self.planned: list[Any] = []  # uncommitted own LiveNotes, in generation (= time) order
        self.committed_until = -math.inf
        self.now_beat: float | None = None
        self.generated_until = -math.inf  # every own onset before this beat is drawn
        self.held_notes: list[Note] = []  # committed notes that may still sound
        self.others: list[tuple[float, Any]] = []  # heard notes of other agents, not yet in context
        self.turns = dict(cfg.turns)  # track -> the beats that part commits ahead of the commit point
        self.gated = -math.inf  # the others' notes before this beat are in the context
        # other agents' notes that came after a commit or a window that should have taken them
        # into account: the band did not keep up there, and this part's notes may differ from an
        # idle machine's
        self.late_heard = 0
        self._window: tuple[float, float, int] | None = None  # (first, end, steps left): being drawn
        self.held: dict[tuple[int, int], float] = {}  # the player's notes heard at note-on, not yet off
        self.player: list[tuple[float, Any]] = []  # (first window, note): the player's, not yet in context
        # (due, note, replan, at): the player's messages read before the commit point reached them
        self.from_player: list[tuple[float, Any, bool, float]] = []
        self._sync_left = SYNC_WINDOWS  # windows the commit being answered may still draw itself
        self.events = 0
        self.replans = 0
        self.behind_beats = 0
        self.missed: list[int] = []  # strong beats the model had not drawn when they were due
        self.window_errors = 0
        self.generator.sync()

    # -- inputs (the notes heard: agents/engines/planner_hearing.py) -------------------------------
    def set_plan(self, plan: ChordPlan) -> None:
        self.finish_window()
        self.plan = plan
        self.replan()

    def set_params(self, muted: bool, temperature: float, top_p: float, top_k: int, density: float,
                   dynamics: int | None = None) -> None:
        self.finish_window()
        self.muted = muted
        if dynamics is not None:
            self.level = dynamics
        self.params = self._Params(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            chord_bias=self.cfg.chord_bias,
            density=density,
            bass=self.cfg.bass,
        )
        self.replan()

    def replan(self, restart: float | None = None) -> None:
        """Drop the uncommitted plan from the first beat the model can still redraw in time; the next
        windows are drawn again from the current context.

        That beat is the first one at least ``REPLAN_LEAD_BEATS`` after the commit point: starting
        between beats would push the first new note off the beat, and starting at a beat the commit
        point is about to pass would leave the model no time to draw it (the notes planned before it
        stay)."""
        self.finish_window()
        self.replans += 1
        if not math.isfinite(self.committed_until):
            self.planned = []
            return
        restart = self.restart_beat() if restart is None else restart
        self.planned = [n for n in self.planned if n.start_beat < restart]
        change = self.context.truncate_after(restart, owner=self.cfg.track)
        self.generator.apply(change)
        self.generated_until = min(self.generated_until, restart)

    # -- outputs -----------------------------------------------------------------------------------
    def commit(self, now_beat: float, until: float) -> list[Note]:
        """Notes that start before `until` (plus this part's turn, ``commit_offset``) leave the plan
        for good; later ones stay replaceable.

        The parts commit in the YAML's order, a fraction of a beat apart (agents/arrangement.py),
        so a part sees what the parts before it committed for the same beat and can stay off their
        pitches: that is how unisons and a comping note under the bass are avoided when both start
        at once, which no part could know when it drew its notes. What it sees is what they
        committed a turn before it, in musical time (``_heard_by``), not whatever has arrived."""
        until += self.cfg.commit_offset
        self.now_beat = now_beat
        if not math.isfinite(self.committed_until):
            # First clock: the part starts on the beat nearest the commit point, so a start a few
            # milliseconds either side of a beat (the transport's first tick) starts it at the same
            # beat; one that near is still well ahead of now (the commit point is commit_beats ahead).
            # Never on a beat whose commit turn has passed by more than that: a part that commits
            # ahead of the others (agents/arrangement.py) would commit it at once, and the parts
            # after it would hear it in their own turn or not, as the machine's speed has it.
            # (`now_beat` is where the agent's last window ended, a commit distance ahead of now.)
            now = until - self.cfg.commit_offset - self.cfg.commit_beats
            first = float(round(until))
            if first < until - START_SLACK_BEATS or (first < until and first < now + FIRST_BEAT_MARGIN):
                first = float(math.ceil(until))
            self.committed_until = min(until, first)
            self.generated_until = max(first, 0.0)
            return []
        # The player's messages take effect at their musical time, between the notes committed
        # before it and those after, however the clock's ticks fell around it.
        notes = []
        self._sync_left = SYNC_WINDOWS
        if self.from_player and self.from_player[0][0] <= until:
            self.finish_window()  # the player's message re-plans: after the window, as between two
        while self.from_player and self.from_player[0][0] <= until:
            due, note, replan, at = self.from_player.pop(0)
            if due > self.committed_until:
                notes += self._commit_to(due)
            self._take_player(note, replan=replan, at=at)
        return notes + self._commit_to(until)

    def _commit_to(self, until: float) -> list[Note]:
        """Commit the notes that start before ``until``."""
        # what an idle machine has drawn by now: the notes committed now end no later than that, so
        # how far a busy machine got never changes a note's length
        limit = float(math.ceil(self.committed_until + self.cfg.horizon_beats - 1e-9))
        if self.muted:
            # a muted part draws nothing, and is not behind: it resumes from where the clock is
            self.generated_until = max(self.generated_until, float(math.ceil(until - 1e-9)))
            self._admit_others(self.generated_until - self.cfg.horizon_beats - self.cfg.commit_offset
                               - OTHERS_GATE_BEATS)
            # and the player's, as they are played: a part that rests while the player holds it
            # comes back having heard every note of it (agents/yielding.py)
            due = [note for first, note in self.player if first <= self.generated_until]
            self.player = [(first, note) for first, note in self.player if first > self.generated_until]
            for note in due:
                self.generator.apply(self.context.add_note(note, owner=note.track))
        else:
            # the windows first, then the fallback for what they do not reach: a clock message that
            # jumps a few tenths of a beat (the agent's loop held up) asks for beats an idle model
            # had drawn, and this one can still draw them before their notes are due
            while self.generated_until < limit and self._sync_left > 0:
                self._sync_left -= 1  # bounded: this answer is awaited, and the pipe is not watched
                self.work()
            if until > self.generated_until:
                self._drop_window()
                self._fill_behind(until)
            limit = min(limit, self.generated_until)
        out = []
        keep = []
        for n in self.planned:
            if n.start_beat < until:
                if n.start_beat >= self.committed_until - 1e-9 and not self.muted:
                    out.append(n)
            else:
                keep.append(n)
        self.planned = keep
        self.committed_until = max(self.committed_until, until)
        skip = self.voicing.drum_tracks | {self.cfg.track}

        def heard(beat: float, until: float | None = None) -> list[tuple[int, int]]:
            return others_sounding(beat, self.context, skip, self.others, self.player, self._heard_by, until)

        notes = as_played(
            out, limit, self.cfg, self.voicing, self.plan, planned=self.planned, held=self.held_notes,
            level_at=lambda beat: self.player_dynamics.level(beat, self.level, self.bpb, self.cfg.role),
            sounding=heard, during=heard,
            recent=lambda beat: recent_tune(beat, self.voicing, self.context, self.player))
        if notes:
            first = notes[0].start_beat
            self.held_notes = [n for n in self.held_notes if n.end_beat > first] + notes
        return notes

    def wants_work(self) -> bool:
        if self.now_beat is None or self.muted:
            return False
        return self.generated_until < self.committed_until + self.cfg.horizon_beats

    def work(self, interrupt: Callable[[], bool] | None = None) -> None:
        """Draw the next window (up to the next whole beat: one beat, or the rest of a beat a re-plan
        restarted inside) of the part in full, and nothing after it: an event the model places past
        the window is dropped at its time tokens, so a window drawn again after a re-plan draws
        exactly as it did the first time.

        ``interrupt`` (a message waits) pauses the window between two events; the next call goes on
        with it. A busy CPU draws a window in hundreds of milliseconds, and a commit that waited for
        it would reach the band that much later: the other parts hear this part's notes after their
        own turn to take them into account has passed. Meanwhile only what cannot change the window
        is answered (another part's note, a commit of beats before it); anything else finishes it
        first (``finish_window``)."""
        if self._window is None:
            k = self.generated_until
            self._admit_others(k - self.cfg.horizon_beats - self.cfg.commit_offset - OTHERS_GATE_BEATS)
            if self.player:
                due = [note for first, note in self.player if first <= k]
                self.player = [(first, note) for first, note in self.player if first > k]
                for note in due:
                    self.generator.apply(self.context.add_note(note, owner=note.track))
            self.generator.sampler.rng.seed(window_seed(self.cfg.seed, k))
            self.generator.new_window()
            factor = self.tune.factor(k)
            self.generator.onset_grid = onset_grid(self.cfg.onset_grid, factor)
            self.window_params = self.params if factor == 1.0 else replace(
                self.params, density=min(RULES["density"].hi, self.params.density * factor))
            self._window = (k, float(math.floor(k + 1e-9) + 1), MAX_STEPS_PER_WINDOW)
        k, end, left = self._window
        while left > 0:
            left -= 1
            try:
                self.step(not_before_beat=k, before_beat=end)
            except ValueError as exc:
                # e.g. the context's last event lies further back than one time token can reach (a
                # part muted for minutes beside silence): the window rests instead of failing for ever
                if not self.window_errors:
                    log.warning("beat %s: the model cannot draw here (%s); the part rests", k, exc)
                self.window_errors += 1
                break
            if self.generator.spilled:
                break
            if left and interrupt is not None and interrupt():
                self._window = (k, end, left)
                return
        # drawn: its notes may be committed (until then the plan reaches only to its start)
        self._window = None
        self.generated_until = end

    def finish_window(self) -> None:
        """Draw the rest of a window ``work`` paused, before anything that may change the plan."""
        if self._window is not None:
            self.work()

    def _drop_window(self) -> None:
        """Forget a paused window's notes: the model fell behind, and the beats get the fallback."""
        if self._window is not None:
            k = self._window[0]
            self._window = None
            self.planned = [n for n in self.planned if n.start_beat < k]
            self.generator.apply(self.context.truncate_after(k, owner=self.cfg.track))

    def step(self, not_before_beat: float | None = None, before_beat: float | None = None) -> Any:
        """Generate one event; own notes join the plan."""
        bpb = self.bpb
        plan = self.plan
        if not_before_beat is None:
            not_before_beat = math.ceil(self.committed_until - 1e-9)
        note = self.generator.step(
            self.window_params,
            lambda beat: strong_beat_chord(plan, beat, bpb),
            not_before_beat=not_before_beat,
            max_rest_beats=self.cfg.max_rest_beats,
            before_beat=before_beat,
        )
        self.events += 1
        if note is not None:
            # A note of the same slot and pitch replaces the planned one, as in the context (the
            # decoder drops its own re-strikes before that; this keeps the plan right regardless).
            self.planned = [
                n for n in self.planned if (n.start_beat, n.pitch) != (note.start_beat, note.pitch)
            ]
            self.planned.append(note)
        return note

    def _fill_behind(self, until: float) -> None:
        """The model did not draw up to ``until``: the strong beats there get the chord, and the
        model resumes after them."""
        first = float(math.ceil(self.generated_until - 1e-9))  # a re-plan's part-beat window stays unfilled
        last = float(math.ceil(until - 1e-9))
        self.behind_beats += max(0, int(last - first))
        self.missed += [b for b in range(int(first), int(last)) if is_strong_beat(b, self.bpb)]
        for note in fallback_notes(first, last, self.planned, self.plan, self.cfg):
            self.generator.apply(self.context.add_note(note, owner=self.cfg.track))
            self.planned.append(note)
        self.generated_until = last
