"""The `onnx` engine as the agent sees it: a proxy to the model process.

`plan()` never waits for the model: it tells the model process where the commit point is and returns
the notes that process committed since the last call. The model keeps its plan well ahead (the
horizon), so by the time a beat must be committed its notes are ready; if the model falls behind,
the part rests rather than the clock stalling.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import sys
import threading
import time
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from agents.arrangement import agent_seed, commit_distance, commit_offset, roles, working_range
from agents.dynamics import level_velocity
from agents.engines import PlanContext
from agents.engines.model_process import model_process
from agents.engines.model_protocol import (
    AgentMessage,
    Committed,
    CommitWindow,
    Failed,
    Hear,
    Held,
    Join,
    ParamsChange,
    PlanChange,
    Ready,
    StepFailed,
    Stop,
)
from agents.engines.worker_config import WorkerConfig, key_signature, resolve_model
from agents.voices import learnt_voices, model_channels, part_roles
from protocol.ensemble import AgentConfig, Ensemble
from protocol.harmony import ChordPlan
from protocol.messages import HeldNote, Note
from protocol.realtime import model_niceness

log = logging.getLogger("barcelona.engine")

READY_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 30.0  # a shared model process that is starting, or restarting after a crash
QUANTIZE_TIMEOUT_S = 1800.0


def instrument_span(cfg: AgentConfig) -> int:
    """The hand's span of the agent's instrument (0: none given)."""
    from protocol.instruments import INSTRUMENTS

    inst = INSTRUMENTS.get(cfg.instrument or "")
    return inst.span if inst is not None else (16 if cfg.role == "comp" else 0)


def longest_note(cfg: AgentConfig) -> float:
    """engine.max_note_beats where the YAML sets it, else the longest note the instrument typically
    holds (a trumpet's breath, a plucked guitar's ring), else the engine's default."""
    from protocol.instruments import INSTRUMENTS

    inst = INSTRUMENTS.get(cfg.instrument or "")
    if "max_note_beats" in cfg.engine.model_fields_set or inst is None:
        return cfg.engine.max_note_beats
    return inst.lengths[1]


COMP_CHORD_NOTES = 3  # a comping part's chord under the model's note: a right hand's triad


def chord_notes(cfg: AgentConfig) -> int:
    """A comping part's chord size: engine.chord_notes where the YAML sets it, else a triad; never
    more than its polyphony. A bass, a melody or drums plays the model's line alone (the schema
    refuses `chord_notes` above 1 there: a chord under a horn's note is no part of the instrument)."""
    if cfg.role != "comp":
        return 1
    wanted = COMP_CHORD_NOTES if cfg.engine.chord_notes is None else cfg.engine.chord_notes
    return max(1, min(wanted, cfg.polyphony or 4))


class EngineError(RuntimeError):
    """The model process could not start (missing model, bad export); the message says which."""


def join_model_host(address: str, cfg: WorkerConfig, timeout: float = JOIN_TIMEOUT_S) -> Connection:
    """A connection to the shared model process at `address`, after sending it this part (`Join`).
    The launcher starts that process first, but it may still be starting, or restarting after a
    crash: tried again until `timeout`."""
    from agents.engines.model_host import KEY_ENV

    key = os.environ.get(KEY_ENV, "").encode() or None
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = Client(address, family="AF_UNIX", authkey=key)
            break
        except (OSError, EOFError) as exc:
            if time.monotonic() > deadline:
                raise EngineError(f"engine.share: no shared model process answers at {address} "
                                  f"({exc})") from exc
            time.sleep(0.1)
    conn.send(Join(cfg))
    return conn


class OnnxEngine:
    """`in_process`: the model draws in this thread (agents/engines/inline_model.py), for an agent
    on virtual time; `model_host`: in the shared model process at that socket (engine.share,
    agents/engines/model_host.py); otherwise in its own process, as every performance runs it."""

    def __init__(self, ens: Ensemble, cfg: AgentConfig, base_dir: Path, *, in_process: bool = False,
                 model_host: str | None = None) -> None:
        self.cfg = cfg
        parts = ens.parts()
        plan = ChordPlan.parse(ens.plan_text, loop=ens.loop, key=ens.key)
        sharps, minor = key_signature(plan.key_tonic, plan.key_is_minor)
        model = resolve_model(cfg.engine.model, base_dir)
        # each part on the channel of the voice the model learnt its register on (agents/voices.py)
        everyone = part_roles(ens, roles(ens))
        voices = {p.name: p.channel for p in parts}
        if learnt_voices(model):
            voices = model_channels(ens, everyone)
        tracks = {p.name: (i + 1, voices[p.name]) for i, p in enumerate(parts)}
        e = cfg.engine
        self.worker_cfg = WorkerConfig(
            model=str(model),
            track=tracks[cfg.name][0],
            channel=cfg.channel,
            model_channel=voices[cfg.name],
            pitch_range=working_range(ens, cfg) if cfg.channel != 9 else (27, 87),
            programs=tuple((t, ch, p.program) for p, (t, ch) in zip(parts, tracks.values(), strict=True)),
            tempo=ens.tempo,
            beats_per_bar=ens.meter,
            key_sharps=sharps,
            key_minor=minor,
            plan_text=ens.plan_text,
            plan_loop=ens.loop,
            plan_key=ens.key,
            horizon_beats=ens.timing.horizon_beats,
            seed=agent_seed(ens, cfg, int(time.time_ns() % 2**31)),
            temperature=e.temperature,
            top_p=e.top_p,
            top_k=e.top_k,
            density=e.density,
            chord_bias=e.chord_bias,
            bass=e.bass,
            tracks=tracks,
            human=ens.human.name if ens.human else "",
            max_rest_beats=e.max_rest_beats,
            max_note_beats=longest_note(cfg),
            max_events=e.context_events,
            onset_grid=1 if e.grid is None else round(16 * e.grid),
            role=cfg.role or "comp",
            polyphony=cfg.polyphony or 4,
            chord_notes=chord_notes(cfg),
            span=instrument_span(cfg),
            doubling=cfg.doubling,
            roles=tuple((tracks[name][0], role) for name, role in everyone.items()),
            dynamics=level_velocity(cfg.dynamics),
            plan=plan,
            commit_offset=commit_offset(ens, cfg),
            turns=tuple((tracks[a.name][0], commit_offset(ens, a)) for a in ens.agents),
            commit_beats=commit_distance(ens, ens.tempo),
            quantize=e.quantize,
            source=cfg.name,
        )
        self.proc: Any = None
        if in_process:
            from agents.engines.inline_model import InlineModel

            self.conn: Any = InlineModel(self.worker_cfg)
        elif model_host is not None and cfg.engine.share:
            self.conn = join_model_host(model_host, self.worker_cfg)
        else:
            if cfg.engine.share:
                log.info("%s: engine.share, but no shared model process was started (an agent run on its "
                         "own, or the only one on its model): loading the model in a process of its own",
                         cfg.name)
            self._start_process(cfg, ens.timing.realtime)
        self.ready: Ready | None = None
        self.pending: list[Note] = []
        self.events = 0
        self.replans = 0
        self.load = 0.0
        self.warnings = 0
        self.behind_beats = 0
        self.late_heard = 0
        # What the model process starts with: a plan or setting the conductor holds that differs
        # (an agent restarted into a session where /plan or /density changed) is sent at once.
        self._plan_sent: ChordPlan | None = plan
        self._params: ParamsChange | None = ParamsChange(
            False, e.temperature, e.top_p, e.top_k, e.density, level_velocity(cfg.dynamics))

    def _start_process(self, cfg: AgentConfig, realtime: bool) -> None:
        # Fork while the agent has no threads yet (it is built before the loop and the timing thread
        # start): the model process then skips a fresh interpreter's imports. Spawn anywhere else.
        forkable = sys.platform == "linux" and threading.active_count() == 1
        ctx = mp.get_context("fork") if forkable else mp.get_context("spawn")  # typed by the literal
        self.conn, child = ctx.Pipe()
        # The model process ends with this one however it ends (model_process.serve says how). A
        # forked child is handed our end of the pipe to close; a spawned one never had it.
        agent_end = self.conn if ctx.get_start_method() == "fork" else None
        worker_cfg = dataclasses.replace(self.worker_cfg, nice=model_niceness(realtime))
        self.proc = ctx.Process(
            target=model_process,
            args=(child, worker_cfg, os.getpid(), agent_end),
            name=f"model-{cfg.name}",
            daemon=True,
        )
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float | None = None) -> Ready:
        """Block until the model is loaded; raise EngineError with the model process's own message.
        A first int8 load quantises the export and measures it, which takes minutes for a big one."""
        if timeout is None:
            timeout = READY_TIMEOUT_S if self.cfg.engine.quantize == "none" else QUANTIZE_TIMEOUT_S
        if not self.conn.poll(timeout):
            raise EngineError(f"engine.model: the model process did not start within {timeout:.0f} s")
        msg = self.conn.recv()
        if isinstance(msg, Failed):
            raise EngineError(f"engine.model: {msg.reason}")
        if not isinstance(msg, Ready):
            raise EngineError(f"engine.model: the model process said {type(msg).__name__} before Ready")
        self.ready = msg
        return msg

    @property
    def providers(self) -> tuple[str, ...]:
        return self.ready.providers if self.ready else ()

    def hear(self, note: Note) -> None:
        self._send(Hear(note))

    def hear_held(self, note: HeldNote) -> None:
        """The player's note at its note-on (the Note follows at its note-off)."""
        self._send(Held(note))

    def plan(self, start_beat: float, end_beat: float, ctx: PlanContext) -> list[Note]:
        # Only a change from what the model process holds is sent. ChordPlan compares by its bars,
        # loop and key, so an edit that parses to the same plan is no change.
        if ctx.plan != self._plan_sent:
            self._send(PlanChange(ctx.plan))
            self._plan_sent = ctx.plan
        p = ctx.params
        params = ParamsChange(p.muted, p.temperature, p.top_p, p.top_k, p.density, p.dynamics)
        if params != self._params:
            self._send(params)
            self._params = params
        self._send(CommitWindow(start_beat, end_beat))
        self._drain()
        out, self.pending = self.pending, []
        return out

    def _drain(self) -> None:
        try:
            while self.conn.poll(0):
                self._take(self.conn.recv())
        except (EOFError, OSError) as exc:  # a shared model process that died ends its connections
            raise EngineError(f"{self.cfg.name}: the model process is gone ({exc or 'closed'})") from exc

    def _take(self, msg: object) -> None:
        if isinstance(msg, Committed):
            self.pending.extend(msg.notes)
            self.events, self.replans = msg.events, msg.replans
            self.load, self.behind_beats = msg.load, msg.behind_beats
            self.late_heard = msg.late_heard
        elif isinstance(msg, StepFailed):
            self.warnings += 1
            log.warning("%s model: %s", self.cfg.name, msg.reason)

    def _send(self, msg: AgentMessage) -> None:
        try:
            self.conn.send(msg)
        except (BrokenPipeError, OSError) as exc:
            raise EngineError(f"{self.cfg.name}: the model process is gone ({exc})") from exc

    def close(self) -> None:
        try:
            self.conn.send(Stop())
        except (BrokenPipeError, OSError):
            pass
        if self.proc is None:
            return
        self.proc.join(1.0)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1.0)
