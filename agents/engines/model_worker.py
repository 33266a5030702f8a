"""The model process of an `onnx` agent: keeps the context, plans ahead, commits on request.

The model runs in its own process, never beside the timing thread: Python work in the sampling loop
holds the GIL, and a realtime thread that waits for the GIL is late however high its priority
(bench/timing.py measures both arrangements). The agent process sends what it hears and where its
clock is; this process answers with committed notes.

Plan/commit: notes are generated up to a horizon ahead of the commit point and kept as the
uncommitted plan. On each `clock` message the notes that start before the requested commit beat
are committed (sent, never changed again). A human note, a chord-plan change or a parameter change
drops the uncommitted plan and regenerates it from the new context, so the agent answers what the
human just did within the commit window.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from protocol.process import die_with_parent

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
    tracks: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (track, channel)
    human: str = ""
    max_rest_beats: int = 4
    max_note_beats: float = 8.0
    max_events: int | None = None  # context rows the agent keeps; None: context_events(model)
    onset_grid: int = 1  # onsets on multiples of this many 1/16-beat steps (Generator.onset_grid)
    intra_op_threads: int = 1


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
    """The model side of plan/commit; pure apart from the model it drives, so tests can step it."""

    def __init__(self, cfg: WorkerConfig) -> None:
        from agents.model.decoder import DecodeParams, Generator
        from agents.model.live_context import LiveContext
        from agents.model.prompt import setup_prefix
        from agents.model.runtime import ModelRuntime
        from protocol.harmony import ChordPlan

        self.cfg = cfg
        self.max_events = context_events(cfg.model, cfg.max_events)
        self.runtime = ModelRuntime(cfg.model, intra_op_threads=cfg.intra_op_threads,
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
        self.generator = Generator(
            self.runtime,
            self.context,
            track=cfg.track,
            channel=cfg.channel,
            pitch_range=cfg.pitch_range,
            seed=cfg.seed,
            max_duration_beats=cfg.max_note_beats,
            onset_grid=cfg.onset_grid,
        )
        self._Params = DecodeParams
        self._ChordPlan = ChordPlan
        self.plan = ChordPlan.parse(cfg.plan_text, loop=cfg.plan_loop, key=cfg.plan_key)
        self.bpb = cfg.beats_per_bar
        self.params = DecodeParams(
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=cfg.top_k,
            chord_bias=cfg.chord_bias,
            density=cfg.density,
            bass=cfg.bass,
        )
        self.muted = False
        self.planned: list[Any] = []  # uncommitted own LiveNotes, in generation (= time) order
        self.committed_until = -math.inf
        self.now_beat: float | None = None
        self.generated_until = -math.inf
        self.events = 0
        self.replans = 0
        self.generator.sync()

    # -- inputs ------------------------------------------------------------------------------------
    def hear(
        self, source: str, start: float, duration: float, pitch: int, velocity: int, channel: int
    ) -> None:
        from agents.model.live_context import LiveNote

        if start < self.context.origin_beat:
            return  # before the piece began (a count-in): the event stream has no negative time
        track, _ = self.cfg.tracks.get(source, (0, channel))
        change = self.context.add_note(
            LiveNote(start, duration, pitch, max(1, velocity), channel, track), owner=track
        )
        self.generator.apply(change)
        if source == self.cfg.human:
            self.replan()

    def set_plan(self, text: str, loop: bool, key: str) -> None:
        self.plan = self._ChordPlan.parse(text, loop=loop, key=key)
        self.replan()

    def set_params(self, muted: bool, temperature: float, top_p: float, top_k: int, density: float) -> None:
        self.muted = muted
        self.params = self._Params(
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            chord_bias=self.cfg.chord_bias,
            density=density,
            bass=self.cfg.bass,
        )
        self.replan()

    def replan(self) -> None:
        """Drop the uncommitted plan; the next steps regenerate it from the current context."""
        self.replans += 1
        self.planned = []
        if math.isfinite(self.committed_until):
            change = self.context.truncate_after(self.committed_until, owner=self.cfg.track)
            self.generator.apply(change)
            self.generated_until = self.committed_until

    # -- outputs -----------------------------------------------------------------------------------
    def commit(self, now_beat: float, until: float) -> list[tuple[float, float, int, int]]:
        """Notes that start before `until` leave the plan for good; later ones stay replaceable."""
        self.now_beat = now_beat
        if not math.isfinite(self.committed_until):
            # First clock: nothing before the commit point may be generated.
            self.committed_until = until
            self.generated_until = max(self.generated_until, until)
            return []
        out = []
        keep = []
        for n in self.planned:
            if n.start_beat < until:
                if n.start_beat >= self.committed_until - 1e-9 and not self.muted:
                    out.append((n.start_beat, n.duration_beats, n.pitch, n.velocity))
            else:
                keep.append(n)
        self.planned = keep
        self.committed_until = max(self.committed_until, until)
        return out

    def wants_work(self) -> bool:
        if self.now_beat is None or self.muted:
            return False
        return self.generated_until < self.committed_until + self.cfg.horizon_beats

    def step(self) -> None:
        """Generate one event; own notes join the plan."""
        bpb = self.bpb
        plan = self.plan
        note = self.generator.step(
            self.params,
            lambda beat: strong_beat_chord(plan, beat, bpb),
            # Regenerating from the commit point itself (between beats) would push the first new
            # note off the beat; the plan resumes on the next beat instead.
            not_before_beat=math.ceil(self.committed_until - 1e-9),
            max_rest_beats=self.cfg.max_rest_beats,
        )
        self.events += 1
        end = self.context.beat_of_row(len(self.context) - 1)
        self.generated_until = max(self.generated_until, end)
        if note is not None:
            # A note of the same slot and pitch replaces the planned one, as in the context (the
            # decoder drops its own re-strikes before that; this keeps the plan right regardless).
            self.planned = [
                n for n in self.planned if (n.start_beat, n.pitch) != (note.start_beat, note.pitch)
            ]
            self.planned.append(note)


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


def serve(
    conn: Connection, cfg: WorkerConfig, parent_pid: int | None = None, agent_end: Connection | None = None
) -> None:
    """The model process's loop: answer messages at once, generate while there is nothing to answer.

    It ends with its agent however the agent ends: the kernel kills it when the agent dies
    (`die_with_parent`, SIGKILL included), and between any two steps it looks for a closed pipe or a
    new parent pid, so an agent that vanished is noticed within one generation step even where the
    kernel cannot tell. `parent_pid` is the agent's pid; `agent_end` is the agent's end of the pipe,
    which a forked child holds a copy of and must close, or the pipe would never report EOF."""
    if agent_end is not None:
        agent_end.close()
    if parent_pid is not None:
        # SIGKILL: this process holds nothing that needs cleaning up (no notes, no ports).
        die_with_parent(signal.SIGKILL, parent_pid)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s model %(levelname)s %(message)s")
    with contextlib.suppress(OSError, AttributeError):
        # The model yields the CPU to the processes that keep time (agents' outputs, the conductor).
        os.nice(5)
    try:
        planner = Planner(cfg)
    except Exception as exc:  # a missing model file, a bad export: one line back to the agent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", planner.runtime.providers, len(planner.context), planner.runtime.cache_mode,
               planner.max_events))
    busy_s = 0.0
    t0 = time.perf_counter()
    while True:
        if parent_pid is not None and os.getppid() != parent_pid:
            return  # the agent is gone (reparented to init or a subreaper): nobody to play for
        timeout = 0.0 if planner.wants_work() else 0.05
        try:
            while conn.poll(timeout):
                timeout = 0.0
                msg = conn.recv()
                kind = msg[0]
                if kind == "stop":
                    return
                if kind == "hear":
                    planner.hear(*msg[1:])
                elif kind == "clock":
                    notes = planner.commit(msg[1], msg[2])
                    load = busy_s / max(1e-6, time.perf_counter() - t0)
                    conn.send(("notes", notes, planner.events, planner.replans, load))
                elif kind == "plan":
                    planner.set_plan(*msg[1:])
                elif kind == "params":
                    planner.set_params(*msg[1:])
            if planner.wants_work():
                s = time.perf_counter()
                planner.step()
                busy_s += time.perf_counter() - s
        except (EOFError, ConnectionError, KeyboardInterrupt):  # the agent's end closed: it is gone
            return
        except Exception as exc:  # keep the process alive: a bad message must not silence the part
            log.warning("model step failed: %s\n%s", exc, traceback.format_exc(limit=3))
            try:
                conn.send(("warning", f"{type(exc).__name__}: {exc}"))
            except (BrokenPipeError, OSError):
                return


def model_process(
    conn: Connection, cfg: WorkerConfig, parent_pid: int | None = None, agent_end: Connection | None = None
) -> None:
    """The model process's entry point: `serve`, then leave at once. Tearing down the interpreter
    (the ONNX session, the imported modules) takes most of a second on a busy machine, and nothing
    here needs it: no file is written, and an agent stopping waits for this process to end."""
    code = 0
    try:
        serve(conn, cfg, parent_pid, agent_end)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def resolve_model(path: str | None, base_dir: Path) -> Path:
    """`default` (or nothing) is the shipped model; a relative path is taken from the YAML's folder."""
    root = Path(__file__).resolve().parents[2]
    if path in (None, "", "default"):
        return root / "models" / "default"
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)
