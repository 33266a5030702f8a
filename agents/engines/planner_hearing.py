"""What the Planner does with the notes it hears (agents/engines/model_worker.py).

The player's notes re-plan the part at a fixed musical time: when the commit point reaches the
note's beat plus the commit distance (and ``PLAYER_SLACK_BEATS``), however early the message was
read. The other parts' notes wait outside the context until the window being drawn is far enough
past them (``OTHERS_GATE_BEATS``), and count at a commit only if their part committed them a turn
before (``_heard_by``). Both keep what a part plays a matter of beats, not of when messages came.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from agents.engines.plan_timing import (
    HEARD_GUARD_BEATS,
    OTHERS_GATE_BEATS,
    PLAYER_SLACK_BEATS,
    PROVISIONAL_BEATS,
    REPLAN_LEAD_BEATS,
    ceil_quarter,
)

if TYPE_CHECKING:
    from agents.dynamics import PlayerDynamics
    from agents.engines.worker_config import WorkerConfig
    from agents.interplay import TuneActivity
    from agents.model.decoder import Generator
    from agents.model.live_context import LiveContext
    from agents.model.voicing import Voicing
    from protocol.messages import Note

log = logging.getLogger("barcelona.model")


class PlannerHearing:
    """The Planner's inputs from the band: the player's notes and the other parts'. A mixin of
    `Planner`, which holds the state named below."""

    cfg: WorkerConfig
    context: LiveContext
    generator: Generator
    voicing: Voicing
    tune: TuneActivity
    player_dynamics: PlayerDynamics
    committed_until: float
    generated_until: float
    held_notes: list[Note]
    others: list[tuple[float, Any]]
    turns: dict[int, float]
    gated: float
    late_heard: int
    held: dict[tuple[int, int], float]
    player: list[tuple[float, Any]]
    from_player: list[tuple[float, Any, bool, float]]

    if TYPE_CHECKING:
        def finish_window(self) -> None: ...
        def replan(self, restart: float | None = None) -> None: ...

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
        # a re-plan redraws from its first beat; a correction alone reaches the windows past those an
        # idle machine has drawn by then
        first = self.restart_beat(at) if replan else self._beat_after(
            at, self.cfg.horizon_beats + REPLAN_LEAD_BEATS)
        self.tune.add(note.start_beat, first)  # counted by the windows that hear it (agents/interplay.py)
        if replan:
            # the windows redrawn see the other parts' notes an idle machine had admitted by then
            # (those of every window it had drawn), whatever this machine had drawn
            frontier = self._beat_after(at, self.cfg.horizon_beats)
            self._admit_others(frontier - self.cfg.horizon_beats - self.cfg.commit_offset - OTHERS_GATE_BEATS)
            self.replan(first)
        # from the window at `first` on, never sooner, however far this machine has drawn: put in the
        # context at once where the windows had reached `first`, a re-plan that then redrew the
        # windows before it heard the note in them, while a slower machine, which had not drawn
        # that far, did not (two runs of one seed parted at beat 49, every part from there on)
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
        return max(ceil_quarter(at + distance + lead), ceil_quarter(self.committed_until))

    def restart_beat(self, at: float | None = None) -> float:
        """The first beat a re-plan redraws: at least REPLAN_LEAD_BEATS after the commit point (as it
        was at beat ``at`` when given), and for a part of one voice not before its last committed
        note ends (that note is sent; a new one under it would be a second voice)."""
        if at is None:
            restart = float(math.ceil(self.committed_until + REPLAN_LEAD_BEATS - 1e-9))
        else:
            restart = self._beat_after(at, REPLAN_LEAD_BEATS)
        if self.cfg.polyphony == 1 and self.held_notes:
            restart = max(restart, ceil_quarter(max(n.end_beat for n in self.held_notes)))
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
        # a commit counts it from here on: at beats where it sounds, and before its start for a
        # note of this part that would still sound then (commit_voicing.others_sounding)
        first = note.start_beat + self.cfg.commit_offset - self.turns.get(note.track, 0.0) + HEARD_GUARD_BEATS
        return first < min(note.start_beat + note.duration_beats, self.committed_until) - 1e-9
