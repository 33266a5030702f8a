"""The part an `onnx` agent's model plays: keeps the context, plans ahead, commits on request.

The Planner lives in the model process (its message loop is agents/engines/model_process.py; what
crosses the pipe is agents/engines/model_protocol.py) and, for tests on virtual time, in the agent's
own thread (agents/engines/inline_model.py).

Plan/commit: notes are generated up to a horizon ahead of the commit point and kept as the
uncommitted plan. On each `CommitWindow` the notes that start before the requested commit beat
are committed (sent, never changed again). A human note, a chord-plan change or a parameter change
drops the uncommitted plan and regenerates it from the new context, so the agent answers what the
human just did within the commit window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agents.arrangement import COMMIT_STEP_BEATS
from agents.interplay import ROLE_STRENGTH, TuneActivity, onset_grid
from protocol.harmony import ChordPlan
from protocol.messages import Note
from protocol.rules import RULES

log = logging.getLogger("barcelona.model")


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the model process needs, picklable (it crosses into a spawned process)."""

    model: str
    track: int
    channel: int
    pitch_range: tuple[int, int]
    programs: tuple[tuple[int, int, int], ...]
    tempo: float
    beats_per_bar: int
    key_sharps: int
    key_minor: int
    plan_text: str
    plan_loop: bool
    plan_key: str
    horizon_beats: float
    seed: int
    temperature: float
    top_p: float
    top_k: int
    density: float
    chord_bias: float
    bass: bool
    tracks: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (track, model channel)
    human: str = ""
    max_rest_beats: int = 4
    max_note_beats: float = 8.0
    max_events: int | None = None  # context rows the agent keeps; None: context_events(model)
    onset_grid: int = 1  # onsets on multiples of this many 1/16-beat steps (Generator.onset_grid)
    intra_op_threads: int = 1
    role: str = "comp"  # protocol/instruments.py roles: the voicing rules and velocities follow it
    polyphony: int = 4
    span: int = 0
    doubling: bool = False
    roles: tuple[tuple[int, str], ...] = ()  # (track, role) of every part
    dynamics: int = 82  # the part's level as a centre velocity (agents/dynamics.py)
    plan: Any = None  # the parsed ChordPlan (plan_text is parsed when None)
    commit_offset: float = 0.0  # beats this part commits ahead of the agent's commit point
    # how far ahead of now the agent's commit point runs (timing.commit_beats, or the output latency
    # where that is longer): where the commit point stood when the player's note sounded
    commit_beats: float = 1.0
    quantize: str = "none"  # "int8": load an int8 copy of a float32 export (agents/model/int8_cache.py)
    source: str = "model"  # the part's name: the source of the notes it commits
    # (track, commit_offset) of every part (agents/arrangement.py): the musical time at which each
    # other part committed a note it hears, so what a commit takes of theirs is a matter of beats
    turns: tuple[tuple[int, float], ...] = ()
    # the channel the model hears and draws this part on (agents/voices.py); None: `channel`
    model_channel: int | None = None

    @property
    def voice(self) -> int:
        """This part's channel inside the model's context."""
        return self.channel if self.model_channel is None else self.model_channel


DEFAULT_CONTEXT_EVENTS = 1024  # a model whose config does not say what window it was trained on


def context_events(model: str, requested: int | None = None) -> int:
    """How many events of context the agent keeps (the oldest quarter goes when it is full).

    Attention costs time per event in the context, so context the model never learnt to use is pure
    cost: for a model that records its training window (ours do), 1.5 windows, so that after a trim
    the model still sees at least a whole one. The shipped model's validation loss is the same with
    128 events of context as with 1024 (docs/model_format.md), and this makes its agents ~1.25x faster
    than a 1024-event context. Otherwise DEFAULT_CONTEXT_EVENTS; `requested` (YAML) overrides both."""
    if requested is not None:
        return requested
    from agents.model.model_config import CONFIG_FILE, read_tokenizer_config

    window = read_tokenizer_config(Path(model) / CONFIG_FILE).train_window
    return DEFAULT_CONTEXT_EVENTS if window is None else (3 * window) // 2


def key_signature(tonic_pc: int, minor: bool) -> tuple[int, int]:
    """Sharps (+) or flats (-) of a key, as a MIDI key-signature event carries them."""
    major_pc = (tonic_pc + 3) % 12 if minor else tonic_pc
    sf = (major_pc * 7) % 12
    return (sf - 12 if sf > 6 else sf), int(minor)


class Planner:
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

    def __init__(self, cfg: WorkerConfig) -> None:
        from agents.model.decoder import DecodeParams, Generator
        from agents.model.live_context import LiveContext
        from agents.model.prompt import setup_prefix
        from agents.model.runtime import ModelRuntime
        from agents.model.voicing import Voicing
        from protocol.harmony import ChordPlan

        self.cfg = cfg
        self.model_note = ""
        model = cfg.model
        if cfg.quantize == "int8":
            from agents.model.int8_cache import describe, int8_model

            folder, figures = int8_model(model)
            model, self.model_note = str(folder), describe(folder, figures)
        self.max_events = context_events(model, cfg.max_events)
        self.runtime = ModelRuntime(model, intra_op_threads=cfg.intra_op_threads,
                                    max_events=self.max_events)
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
        roles = dict(cfg.roles)
        human_track = cfg.tracks.get(cfg.human, (-1, -1))[0]
        drums = frozenset(t for t, r in roles.items() if r == "drums") | frozenset(
            t for t, ch in cfg.tracks.values() if ch == 9)
        self.voicing = Voicing(
            role=cfg.role,
            polyphony=cfg.polyphony,
            span=cfg.span,
            doubling=cfg.doubling,
            bass_tracks=frozenset(t for t, r in roles.items() if r == "bass" and t != cfg.track),
            agent_tracks=frozenset(t for t, _ in cfg.tracks.values()
                                   if t not in (cfg.track, human_track) and t not in drums),
            drum_tracks=drums,
            tune_tracks=frozenset({human_track} if roles.get(human_track) == "melody" else ()),
        )
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
        self.tune = TuneActivity(
            cfg.commit_beats + cfg.commit_offset + REPLAN_LEAD_BEATS + 0.25,
            ROLE_STRENGTH.get(cfg.role, 0.0) if self.voicing.tune_tracks else 0.0)
        self.window_params = self.params  # the params the window being drawn was drawn with
        self.muted = False
        self.planned: list[Any] = []  # uncommitted own LiveNotes, in generation (= time) order
        self.committed_until = -math.inf
        self.now_beat: float | None = None
        self.generated_until = -math.inf  # every own onset before this beat is drawn
        self.held_ends: list[float] = []  # ends of committed notes that may still sound
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

    # -- inputs ------------------------------------------------------------------------------------
    def hear(
        self, source: str, start: float, duration: float, pitch: int, velocity: int, channel: int
    ) -> None:
        from agents.model.live_context import LiveNote

        if start < self.context.origin_beat:
            return  # before the piece began (a count-in): the event stream has no negative time
        track, voice = self.cfg.tracks.get(source, (0, channel))
        note = LiveNote(start, duration, pitch, max(1, velocity), voice, track)
        if source != self.cfg.human:
            if self._came_late(note):
                self.late_heard += 1
                if self.late_heard == 1:
                    log.warning("%s: %s's note at beat %.2f came after this part had to take it into "
                                "account; the band is not keeping up", self.cfg.source, source, start)
            self.others.append((start, note))
            return
        self.finish_window()
        self.player_dynamics.add(start, pitch, velocity)
        if self.held.pop((round(start * 16), pitch), None) is None:
            self._admit_player(note, replan=True)
        else:
            # the note-off of a note the part heard at its note-on: its length is corrected in the
            # context from the first beat a re-plan would redraw, and the plan drawn stands
            self._admit_player(note, replan=False)

    def hear_held(self, source: str, start: float, pitch: int, velocity: int, channel: int) -> None:
        """The player's note at its note-on: in the context with a provisional length (the Note at
        its note-off corrects it), and the part re-plans from it."""
        from agents.model.live_context import LiveNote

        if source != self.cfg.human or start < self.context.origin_beat:
            return
        self.finish_window()
        track, voice = self.cfg.tracks.get(source, (0, channel))
        self.player_dynamics.add(start, pitch, velocity)
        self.held[(round(start * 16), pitch)] = start
        if len(self.held) > 128:  # note-offs lost with their packets: forget the oldest
            self.held.pop(next(iter(self.held)))
        self._admit_player(LiveNote(start, PROVISIONAL_BEATS, pitch, max(1, velocity), voice, track),
                           replan=True, at=start)

    def _admit_player(self, note: Any, *, replan: bool, at: float | None = None) -> None:
        """The player's note enters the context for the windows from a beat fixed by the note's own
        time, never for one drawn before it, so what each window saw is a matter of musical time
        alone (a busy machine that drew a window after the note arrived draws it as an idle one did
        before). ``at`` is when the message was sent in beats (the note-on's beat, or its end).

        It acts when the commit point reaches ``at`` + the commit distance + PLAYER_SLACK_BEATS (a
        message read sooner waits for commit() to reach that beat): acting on reading would put the
        re-plan before the commit of the notes at ``at`` + the commit distance in one run and after
        it in another, and those notes' lengths are voiced against the plan that follows them."""
        if not math.isfinite(self.committed_until):
            self.tune.add(note.start_beat)
            self.generator.apply(self.context.add_note(note, owner=note.track))
            return
        at = note.start_beat + note.duration_beats if at is None else at
        due = at + self.cfg.commit_beats + self.cfg.commit_offset + PLAYER_SLACK_BEATS
        if due > self.committed_until:
            # read early: it takes effect when the commit point reaches `due` (commit() splits there)
            self.from_player.append((due, note, replan, at))
            self.from_player.sort(key=lambda m: m[0])  # stable: two at one beat keep their order
            return
        self._take_player(note, replan=replan, at=at)

    def _take_player(self, note: Any, *, replan: bool, at: float) -> None:
        """The player's note re-plans the part (or corrects a held note's length) now."""
        self.tune.add(note.start_beat)
        # a re-plan redraws from its first beat; a correction alone reaches the windows past those an
        # idle machine has drawn by then
        first = self.restart_beat(at) if replan else self._beat_after(
            at, self.cfg.horizon_beats + REPLAN_LEAD_BEATS)
        if replan:
            # the windows redrawn see the other parts' notes an idle machine had admitted by then
            # (those of every window it had drawn), whatever this machine had drawn
            frontier = self._beat_after(at, self.cfg.horizon_beats)
            self._admit_others(frontier - self.cfg.horizon_beats - self.cfg.commit_offset - OTHERS_GATE_BEATS)
            self.replan(first)
        if self.generated_until >= first:
            self.generator.apply(self.context.add_note(note, owner=note.track))
        else:
            self.player.append((first, note))

    def _beat_after(self, at: float, lead: float) -> float:
        """The first quarter beat at least ``lead`` after the commit point as it was when beat ``at``
        sounded: where a re-plan for a note at ``at`` starts to redraw, so the part answers the
        player a quarter beat after it can, not at the next whole beat.

        Reckoned from ``at`` and the part's configured commit distance, never from the commit point
        when the message happened to be read: the player's note is sent as it sounds, and the commit
        point then lies the commit distance past it give or take a clock tick, so a ceiling taken
        from it flips from one quarter to the next on a few milliseconds (two runs of one seed
        redrew a bass from beat 2.25 in one and 2.5 in the other). Only a message later than the
        lead moves it, to the first quarter the part has not committed: a committed note is never
        redrawn."""
        distance = self.cfg.commit_beats + self.cfg.commit_offset
        return max(_ceil_quarter(at + distance + lead), _ceil_quarter(self.committed_until))

    def restart_beat(self, at: float | None = None) -> float:
        """The first beat a re-plan redraws: at least REPLAN_LEAD_BEATS after the commit point (as it
        was at beat ``at`` when given), and for a part of one voice not before its last committed
        note ends (that note is sent; a new one under it would be a second voice)."""
        if at is None:
            restart = float(math.ceil(self.committed_until + REPLAN_LEAD_BEATS - 1e-9))
        else:
            restart = self._beat_after(at, REPLAN_LEAD_BEATS)
        if self.cfg.polyphony == 1 and self.held_ends:
            restart = max(restart, _ceil_quarter(max(self.held_ends)))
        return restart

    def _admit_others(self, before: float) -> None:
        """Other agents' notes that start before ``before`` join the context, in the order of their
        time, track and pitch (not of their arrival, which differs from run to run): which notes join
        for a window is a matter of beats, and so is the order they take in the context."""
        self.gated = max(self.gated, before)
        if not self.others:
            return
        keep: list[tuple[float, Any]] = []
        due: list[tuple[float, Any]] = []
        for start, note in self.others:
            (due if start < before else keep).append((start, note))
        self.others = keep
        for _, note in sorted(due, key=lambda sn: (sn[0], sn[1].track, sn[1].pitch)):
            self.generator.apply(self.context.add_note(note, owner=note.track))

    def _heard_by(self, note: Any, beat: float) -> bool:
        """Whether another part's note counts for this part's commit of ``beat``: only if that part
        committed it a turn earlier, in musical time, than this part commits ``beat`` (it commits a
        note at its start less its own `commit_offset`; HEARD_GUARD_BEATS, a turn, is time enough
        for it to cross the bus). Notes of the same turn or later, and notes that happened to arrive
        sooner, never count: so what a commit takes into account is the same on any machine that
        keeps up."""
        turn = note.start_beat - self.turns.get(note.track, 0.0)
        return beat - self.cfg.commit_offset - turn >= HEARD_GUARD_BEATS - 1e-9

    def _came_late(self, note: Any) -> bool:
        """Whether a note of another part arrives after it should have counted: for a window already
        drawn (its start was before the context's gate then), or for a commit already made at a beat
        where it sounds and counts (``_heard_by``)."""
        if note.start_beat < self.gated:
            return True
        if note.track in self.voicing.drum_tracks:
            return False  # no pitch a commit avoids
        first = max(note.start_beat, note.start_beat + self.cfg.commit_offset
                    - self.turns.get(note.track, 0.0) + HEARD_GUARD_BEATS)
        return first < min(note.start_beat + note.duration_beats, self.committed_until) - 1e-9

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
        notes = self._make_room(self._voice(out, limit))
        if notes:
            first = notes[0].start_beat
            self.held_ends = [e for e in self.held_ends if e > first] + [n.end_beat for n in notes]
        return notes

    def _voice(self, out: list[Any], limit: float) -> list[Note]:
        """The committed notes as the part plays them: never more sounding at once than its
        polyphony (when a new note or chord would overflow it, the held notes that would end soonest
        end there, as a player lifts a finger or a horn takes a breath; a note reaching past
        ``limit``, the end of the plan drawn so far, ends there, since a later note there is not
        known yet), and at the velocity the part gives that beat (agents/dynamics.py). They leave
        here as the part's `Note`s, the value the agent schedules and the band hears."""
        from agents.dynamics import velocity

        if not out:
            return []
        ends = [n.start_beat + n.duration_beats for n in out]
        held = [(end, -1) for end in self.held_ends if end > out[0].start_beat]  # committed before
        onsets = sorted({n.start_beat for n in out} | {n.start_beat for n in self.planned})
        mine = sorted(range(len(out)), key=lambda i: out[i].start_beat)
        poly = self.cfg.polyphony
        k = 0
        for t in onsets:
            chord = sum(1 for n in out if abs(n.start_beat - t) < 1e-9) + sum(
                1 for n in self.planned if abs(n.start_beat - t) < 1e-9)
            while k < len(mine) and out[mine[k]].start_beat < t - 1e-9:
                held.append((ends[mine[k]], mine[k]))
                k += 1
            held = [(e, i) for e, i in held if e > t + 1e-9]
            overflow = len(held) + chord - poly
            for _end, i in sorted(held, key=lambda h: (h[1] < 0, h[0])):  # this batch's first, soonest end
                if overflow <= 0:
                    break
                if i >= 0:
                    ends[i] = t
                    overflow -= 1
            held = [(ends[i] if i >= 0 else e, i) for e, i in held if (ends[i] if i >= 0 else e) > t + 1e-9]
        notes = []
        for n, end in zip(out, ends, strict=True):
            end = min(end, max(limit, n.start_beat + 1 / 16))
            level = self.player_dynamics.level(n.start_beat, self.level, self.bpb)
            v = velocity(n.start_beat, n.pitch, beats_per_bar=self.bpb, level=level,
                         role=self.cfg.role, seed=self.cfg.seed)
            notes.append(Note(n.start_beat, max(1 / 16, end - n.start_beat), n.pitch, max(1, v),
                              self.cfg.channel, self.cfg.source))
        return notes

    def _make_room(self, notes: list[Note]) -> list[Note]:
        """Move a committed note off a pitch another part sounds at its start (unless the part may
        double), and off the wrong side of the bass: to the same pitch class an octave away if the
        range allows, else to the nearest chord tone that is free; a note with no room is dropped."""
        from agents.model.voicing import room

        out: list[Note] = []
        for note in notes:
            start = note.start_beat
            others = self._others_sounding(start)
            own = [n.pitch for n in out if abs(n.start_beat - start) < 1e-9]
            chord = self.plan.chord_at(start, self.bpb)
            moved = room(self.voicing, note.pitch, self.cfg.pitch_range, others, own,
                         () if chord is None else chord.tones, self._recent_tune(start))
            if moved is not None:
                out.append(note if moved == note.pitch else replace(note, pitch=moved))
        return out

    def _recent_tune(self, beat: float) -> list[int]:
        """The pitches of the player's tune heard in the bar before ``beat`` (a comping part keeps
        under them), from the context and from the notes not yet in it."""
        v = self.voicing
        if v.role != "comp" or not v.tune_tracks:
            return []
        from agents.model.voicing import TUNE_MEMORY_BEATS

        slot = self.context.slot_of(beat)
        out = [int(p) for p in self.context.pitches_between(
            slot - round(16 * TUNE_MEMORY_BEATS), slot, v.tune_tracks)]
        lo = beat - TUNE_MEMORY_BEATS
        out += [n.pitch for _, n in self.player if n.track in v.tune_tracks
                and n.start_beat <= beat + 1e-9 and n.start_beat + n.duration_beats > lo]
        return out

    def _others_sounding(self, beat: float) -> list[tuple[int, int]]:
        """(track, pitch) of the other parts' notes sounding at ``beat``, heard or in the context."""
        slot = self.context.slot_of(beat)
        tracks, pitches, _ = self.context.sounding(slot)
        skip = self.voicing.drum_tracks | {self.cfg.track}
        out = [(int(t), int(p)) for t, p in zip(tracks, pitches, strict=True) if int(t) not in skip]
        for _, note in self.others:
            start = note.start_beat
            if (note.track not in skip and start <= beat + 1e-9 < start + note.duration_beats
                    and self._heard_by(note, beat)):
                out.append((note.track, note.pitch))
        for _, note in self.player:
            start = note.start_beat
            if note.track not in skip and start <= beat + 1e-9 < start + note.duration_beats:
                out.append((note.track, note.pitch))
        return out

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
        from agents.model.live_context import LiveNote

        first = float(math.ceil(self.generated_until - 1e-9))  # a re-plan's part-beat window stays unfilled
        last = float(math.ceil(until - 1e-9))
        self.behind_beats += max(0, int(last - first))
        self.missed += [b for b in range(int(first), int(last)) if is_strong_beat(b, self.bpb)]
        beat = first
        while beat < last:
            drawn = any(beat <= n.start_beat < beat + 1 for n in self.planned)
            if is_strong_beat(beat, self.bpb) and not drawn:
                for pitch in fallback_pitches(self.plan.chord_at(beat, self.bpb), self.cfg):
                    note = LiveNote(beat, 1.0, pitch, 80, self.cfg.voice, self.cfg.track)
                    self.generator.apply(self.context.add_note(note, owner=self.cfg.track))
                    self.planned.append(note)
            beat += 1.0
        self.generated_until = last


SYNC_WINDOWS = 2  # windows a commit may draw itself to reach what an idle machine has drawn
PROVISIONAL_BEATS = 2.0  # a held note's length until its note-off says: the band avoids it meanwhile
FIRST_BEAT_MARGIN = 0.5  # the least a part's first beat may lie ahead of now
START_SLACK_BEATS = 0.1  # how far past its commit turn a part's first beat may lie (a late first tick)
REPLAN_LEAD_BEATS = 0.25  # the least time a re-plan leaves the model before its first redrawn beat
# how late the player's message may be read (past its beat plus the commit distance) and still take
# effect exactly where it would on time; less than REPLAN_LEAD_BEATS, which leaves the model time to
# draw the re-plan's first window
PLAYER_SLACK_BEATS = 0.1875
OTHERS_GATE_BEATS = 1.0  # how long after its start another agent's note has surely arrived
HEARD_GUARD_BEATS = COMMIT_STEP_BEATS  # a commit takes the notes the others committed a turn before
MAX_STEPS_PER_WINDOW = 48  # a model that keeps re-striking cannot hold a window for ever


def _ceil_quarter(beat: float) -> float:
    """The first quarter beat at or after ``beat`` (a hair past a quarter counts as on it)."""
    return math.ceil(4 * beat - 1e-6) / 4


def window_seed(seed: int, beat: float) -> int:
    """The random stream of the window starting at ``beat``: a function of the two, nothing else."""
    return (seed * 1_000_003 + round(beat * 16) * 7_919) % (2**32)


def is_strong_beat(beat: float, beats_per_bar: int) -> bool:
    """Beat 1, or the middle of an even bar (beat 3 of 4/4): where the fallback plays the chord."""
    pos = beat % beats_per_bar
    middle = beats_per_bar % 2 == 0 and beats_per_bar > 2 and abs(pos - beats_per_bar / 2) < 1e-6
    return pos < 1e-6 or middle


def fallback_pitches(chord: Any, cfg: WorkerConfig) -> list[int]:
    """What a part plays on a strong beat when its model fell behind: the bass the chord's bass note,
    comping the chord's first three tones (close, low in its range), a melody nothing."""
    if chord is None or chord.is_no_chord or cfg.role in ("melody", "drums"):
        return []
    lo, hi = cfg.pitch_range
    if cfg.role == "bass":
        pitch = lo + (chord.bass - lo) % 12
        return [pitch] if pitch <= hi else []
    centre = lo + (hi - lo) // 3
    out = []
    for pc in chord.tones[: min(3, cfg.polyphony)]:
        pitch = centre + (pc - centre) % 12
        if pitch <= hi:
            out.append(pitch)
    return sorted(set(out))


def strong_beat_chord(plan: Any, beat: float, beats_per_bar: int) -> Any:
    """The chord at a beat; on a strong beat (1 and the middle of an even bar) without its tensions,
    so a note landing there leans to a chord tone as a player's would (tensions colour weak beats)."""
    chord = plan.chord_at(beat, beats_per_bar)
    if chord is None or not chord.tensions:
        return chord
    pos = beat % beats_per_bar
    strong = pos < 1 / 16 or pos > beats_per_bar - 1 / 16
    if beats_per_bar % 2 == 0 and beats_per_bar > 2:
        strong = strong or abs(pos - beats_per_bar / 2) < 1 / 16
    return replace(chord, tensions=()) if strong else chord


def resolve_model(path: str | None, base_dir: Path) -> Path:
    """`default` (or nothing) is the shipped model; a relative path is taken from the YAML's folder."""
    root = Path(__file__).resolve().parents[2]
    if path in (None, "", "default"):
        return root / "models" / "default"
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)
