"""One model, several agents: each agent's decode steps batched into calls that read the weights once.

Decoding one event reads every weight of the model once, so on a CPU it is bound by memory bandwidth,
and a medium SkyTNT model's weights are 200 MB (int8) to 1 GB (float32) per process. A `SharedModel`
opens the (rewritten, fuse_attention.py) sessions once and gives each agent a `SlotRuntime`: a
ModelRuntime with its own context, rows, rollback and buffers, whose caches are its row of one pool
per cache tensor (slots, heads, capacity, head_dim). Each agent's Generator runs in its own thread,
unchanged; a runtime hands every model call to the shared `Batcher`, which runs the calls that can go
together as one call over a range of pool rows. GroupQueryAttention reads each row's own length
(``seqlens_k``), so rows at different context lengths batch; in float32 a row's result is the same
as alone (tests/test_shared_model.py), while an int8 model's activations are quantised per call,
so there a row's logits move with its batch partners (by about as much as int8 itself moves them).

What batches: calls that feed one position, a one-event base call (a step of generation) or a token
call of one token (the hidden state, or the event's next token), grouped by what they feed; and
token calls that start an event from its hidden state, over a range of slots that all do. A call
feeding several positions after a past (a re-plan's re-feed, the prompt, a token call that catches
up over forced tokens) runs alone, on its own rows: ORT's CPU GroupQueryAttention takes several
positions after a past only at batch 1. A call waits until every
slot that is drawing (inside `SharedModel.drawing`) has a call waiting too, then the largest group
that can go together runs; so two agents that draw at the same time step in lockstep, and an agent
with nothing to draw never holds the others up.

Rows in a batched call's range that have no call of their own ride along on dummy input, writing
past their valid length into spare positions the pools keep for that (one event, one event's tokens):
their caches are unchanged.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agents.model.fuse_attention import PROBS, SEQLENS, TEMPERATURE, TOTAL_LENGTH
from agents.model.kv_cache import past_names
from agents.model.model_config import (
    MAX_TOKEN_SEQ,
    StackShape,
    inspect_graphs,
    model_paths,
    onnx_metadata,
    read_tokenizer_config,
)
from agents.model.runtime import ROTARY_KEY, ModelRuntime
from agents.model.sessions import (
    CPU,
    SHARED_CACHE_ORT,
    fused_sessions,
    session_options,
    shared_cache_refusal,
    version_tuple,
)

__all__ = ["BatchStats", "Batcher", "SharedModel", "SlotRuntime", "share_refusal"]

TOKEN_CAPACITY = 1 + MAX_TOKEN_SEQ  # the token cache: the event's hidden state and its tokens


def share_refusal(folder: str | Path) -> str | None:
    """Why the model in `folder` cannot be shared here, or None; reads no weights (for --check)."""
    _, base, _ = model_paths(folder)
    if ROTARY_KEY not in onnx_metadata(base):
        return (f"{folder} is not a lean export (one a TorchScript exporter such as SkyTNT's wrote); "
                "export it lean from its checkpoint to share it: python -m training --export-only "
                "--init model.ckpt --out FOLDER (the train extra)")
    if version_tuple(ort.__version__) < SHARED_CACHE_ORT:
        return (f"onnxruntime {ort.__version__} has no GroupQueryAttention the shared model can use; "
                f"it needs {'.'.join(map(str, SHARED_CACHE_ORT))} or later")
    try:
        import onnx  # noqa: F401
    except ImportError:
        return "the onnx package is not installed (pip install onnx): the shared model rewrites the graphs"
    return None


@dataclass
class _Call:
    """One runtime's model call, waiting in the batcher."""

    rt: SlotRuntime
    key: tuple[str, int, bool]  # ("base", n, _) or ("token", new, from_hidden)
    order: int  # where in an event the call stands: its token's position, or MAX_TOKEN_SEQ for a base call
    seq: int  # when it came, among all calls
    done: bool = False
    error: BaseException | None = None


@dataclass
class BatchStats:
    """How the batcher has run: calls made and rows served, per model."""

    calls: dict[str, int] = field(default_factory=lambda: {"base": 0, "token": 0})
    rows: dict[str, int] = field(default_factory=lambda: {"base": 0, "token": 0})

    def mean_batch(self, kind: str) -> float:
        return self.rows[kind] / max(1, self.calls[kind])


class Batcher:
    """Collects the slots' model calls and runs each group as one ORT call, one call at a time."""

    def __init__(self, model: SharedModel) -> None:
        self._model = model
        self._cv = threading.Condition()
        self._active: set[int] = set()
        self._pending: dict[int, _Call] = {}
        self._running = False
        self._seq = 0
        self.stats = BatchStats()

    @contextlib.contextmanager
    def drawing(self, slot: int) -> Iterator[None]:
        """While a slot draws, the others' calls wait for its next call (to batch with it)."""
        with self._cv:
            self._active.add(slot)
        try:
            yield
        finally:
            with self._cv:
                self._active.discard(slot)
                self._cv.notify_all()

    def call(self, rt: SlotRuntime, key: tuple[str, int, bool], order: int) -> None:
        """Run `rt`'s bound call, batched with whatever can go with it; returns once it has run."""
        with self._cv:
            self._seq += 1
            call = _Call(rt, key, order, self._seq)
            self._pending[rt.slot] = call
            self._cv.notify_all()
            while not call.done:
                if self._running or not self._ready():
                    self._cv.wait()
                    continue
                group = self._pick()
                for c in group:
                    del self._pending[c.rt.slot]
                self._running = True
                self._cv.release()
                try:
                    self._model.run_group([c.rt for c in group], group[0].key)
                    error = None
                except BaseException as exc:  # every caller in the group hears of it
                    error = exc
                finally:
                    self._cv.acquire()
                    self._running = False
                for c in group:
                    c.done, c.error = True, error
                self._cv.notify_all()
        if call.error is not None:
            raise call.error

    def _ready(self) -> bool:
        return all(slot in self._pending for slot in self._active)

    def _pick(self) -> list[_Call]:
        """The call furthest behind in its event, with every waiting call that can run with it.

        An event is a few token calls and then one base call, so running the earliest position first
        lets an agent that is behind catch up with the others, and their base calls (most of the
        weights) then coincide: with the largest group first instead, four agents settle into two
        pairs a few calls apart that never meet."""
        order = min(c.order for c in self._pending.values())
        keys: dict[tuple[str, int, bool], list[_Call]] = {}
        for c in self._pending.values():
            if c.order == order:
                keys.setdefault(c.key, []).append(c)
        # of the calls at that position, the key most share, then the one waiting longest (a re-plan's
        # prefill beside another agent's steps)
        def share(group: list[_Call]) -> tuple[int, int]:
            return len(group), -min(c.seq for c in group)

        chosen = max(keys.values(), key=share)
        first = min(chosen, key=lambda c: c.seq)
        same = {c.rt.slot: c for c in self._pending.values() if c.key == first.key}
        if first.key[1] == 1:
            return [same[s] for s in sorted(same)]
        if first.key[0] == "base" or not first.key[2]:
            return [first]  # ORT's CPU kernel feeds several positions after a past at batch 1 only
        # several positions from the hidden state, so no past: they batch over a range of slots with no
        # other row in it (a row without a call would need a past)
        lo = hi = first.rt.slot
        while lo - 1 in same:
            lo -= 1
        while hi + 1 in same:
            hi += 1
        return [same[s] for s in range(lo, hi + 1)]


class SlotRuntime(ModelRuntime):
    """One agent's runtime on a shared model: its own context and caches (rows of the model's pools);
    its calls go through the model's batcher. Use from one thread, like any ModelRuntime."""

    def __init__(self, model: SharedModel, slot: int, max_events: int) -> None:
        self.slot, self._shared = slot, model
        super().__init__(model.folder, max_events=max_events, sessions=model.sessions,
                         cache_buffers=model.pool_rows(slot))

    def _run_base(self, n: int) -> None:
        self._shared.batcher.call(self, ("base", n, False), MAX_TOKEN_SEQ)

    def _run_token(self, new: int, from_hidden: bool) -> None:
        # the position of the token asked for: the cache's length before the call plus what it feeds
        self._shared.batcher.call(self, ("token", new, from_hidden), self._token_kv.length + new - 1)


class _GroupIO:
    """The bindings and buffers of batched calls over pool rows lo..hi-1 of one graph."""

    def __init__(self, session: ort.InferenceSession, pools: list[np.ndarray], names: list[str],
                 lo: int, hi: int) -> None:
        self.io = session.io_binding()
        wrap = ort.OrtValue.ortvalue_from_numpy
        for name, pool in zip(names, pools, strict=True):
            value = wrap(pool[lo:hi])
            self.io.bind_ortvalue_input(name, value)
            self.io.bind_ortvalue_output(name.replace("past_key_values", "present"), value)
        self.rows = hi - lo
        self.seqlens = np.zeros(self.rows, np.int32)
        self.total = np.zeros((), np.int32)
        self.io.bind_ortvalue_input(SEQLENS, wrap(self.seqlens))
        self.io.bind_ortvalue_input(TOTAL_LENGTH, wrap(self.total))
        self.arrays: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}
        self._keep: list[ort.OrtValue] = []

    def array(self, name: str, shape: tuple[int, ...], dtype: type, output: bool = False) -> np.ndarray:
        """A buffer for one port at one shape, made and bound on first use, then rebound as needed."""
        key = (name, shape)
        a = self.arrays.get(key)
        if a is None:
            a = self.arrays[key] = np.zeros(shape, dtype)
        value = ort.OrtValue.ortvalue_from_numpy(a)
        self._keep = [*self._keep[-32:], value]
        (self.io.bind_ortvalue_output if output else self.io.bind_ortvalue_input)(name, value)
        return a


class SharedModel:
    """A model folder's sessions, opened once, and the cache pools of `slots` agents."""

    def __init__(self, folder: str | Path, *, slots: int, max_events: int, intra_op_threads: int = 1) -> None:
        if slots < 1 or max_events < 1:
            raise ValueError(f"slots and max_events must be >= 1, got {slots}, {max_events}")
        self.folder, self.max_events, self.slots = Path(folder), max_events, slots
        config_path, base_path, token_path = model_paths(folder)
        opts = session_options(intra_op_threads)
        sessions = fused_sessions(base_path, token_path, opts, [CPU], 1)
        if sessions is None:
            raise ValueError(shared_cache_refusal(folder).replace("cache_mode 'shared'", "a shared model"))
        self.sessions = sessions
        base, token = sessions
        info = inspect_graphs(self.folder, read_tokenizer_config(config_path), base.get_inputs(),
                              base.get_outputs(), token.get_inputs(), token.get_outputs())
        self.n_embd, self.vocab_size = info.n_embd, info.vocab_size
        # spare positions past each row's capacity: where a row with no call of its own writes
        self._base_pool = self._pools(info.base, max_events + 1)
        self._token_pool = self._pools(info.token, TOKEN_CAPACITY + MAX_TOKEN_SEQ)
        self._names = (past_names(info.base), past_names(info.token))
        self._io: dict[tuple[str, int, int], _GroupIO] = {}
        self._runtimes: dict[int, SlotRuntime] = {}
        self._lock = threading.Lock()
        self.batcher = Batcher(self)

    def _pools(self, stack: StackShape, capacity: int) -> list[np.ndarray]:
        # zeros: pages are only touched (and resident) as contexts grow into them
        return [np.zeros((self.slots, stack.heads, capacity, stack.head_dim), np.float32)
                for _ in range(2 * stack.layers)]

    def pool_rows(self, slot: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Slot `slot`'s own rows of the base and token pools, as (1, heads, capacity, head_dim) views."""
        return ([p[slot : slot + 1] for p in self._base_pool], [p[slot : slot + 1] for p in self._token_pool])

    def runtime(self, max_events: int | None = None) -> SlotRuntime:
        """A runtime on a free slot, keeping at most `max_events` (by default the pools' capacity);
        ValueError when every slot is taken or the context would not fit."""
        if max_events is None:
            max_events = self.max_events
        if not 1 <= max_events <= self.max_events:
            raise ValueError(f"max_events: {max_events} does not fit the shared model's {self.max_events}")
        with self._lock:
            free = next((s for s in range(self.slots) if s not in self._runtimes), None)
            if free is None:
                raise ValueError(f"the shared model {self.folder} serves {self.slots} agents, all taken")
            self._runtimes[free] = rt = SlotRuntime.__new__(SlotRuntime)
        try:
            SlotRuntime.__init__(rt, self, free, max_events)
        except BaseException:
            self.release(rt)
            raise
        return rt

    def release(self, rt: SlotRuntime) -> None:
        """Give the slot back (its agent left); its pool rows are reused by the next runtime."""
        with self._lock:
            if self._runtimes.get(rt.slot) is rt:
                del self._runtimes[rt.slot]

    @contextlib.contextmanager
    def drawing(self, rt: SlotRuntime) -> Iterator[None]:
        """Around an agent's drawing: see Batcher.drawing."""
        with self.batcher.drawing(rt.slot):
            yield

    # -- running a group: called by the batcher, one group at a time ---------------------------------
    def run_group(self, rts: list[SlotRuntime], key: tuple[str, int, bool]) -> None:
        kind = key[0]
        self.batcher.stats.calls[kind] += 1
        self.batcher.stats.rows[kind] += len(rts)
        if len(rts) == 1:  # alone: the runtime's own binding, on its own rows
            rt = rts[0]
            if kind == "base":
                rt._base.run_with_iobinding(rt._base_bind.io)
            else:
                rt._token.run_with_iobinding(rt._token_bind.io)
            return
        lo, hi = rts[0].slot, rts[-1].slot + 1
        if kind == "base":
            self._run_base(rts, lo, hi)
        else:
            self._run_token(rts, lo, hi, key[1], key[2])

    def _group_io(self, kind: str, lo: int, hi: int) -> _GroupIO:
        k = (kind, lo, hi)
        if k not in self._io:
            session = self.sessions[0 if kind == "base" else 1]
            pools = self._base_pool if kind == "base" else self._token_pool
            self._io[k] = _GroupIO(session, pools, self._names[0 if kind == "base" else 1], lo, hi)
        return self._io[k]

    def _lengths(self, g: _GroupIO, rts: list[SlotRuntime], lo: int, new: int, kind: str) -> None:
        """Each row's valid length after the call, less one (GroupQueryAttention's seqlens_k); a row
        with no call of its own keeps its length and writes into the spare positions after it."""
        for s in range(lo, lo + g.rows):
            # a slot with no runtime, or one still being made (an agent joining while others play),
            # holds nothing yet: its row writes from position 0
            other = self._runtimes.get(s)
            kv = getattr(other, "_base_kv" if kind == "base" else "_token_kv", None)
            g.seqlens[s - lo] = (0 if kv is None else kv.length) + new - 1
        for rt in rts:
            kv = rt._base_kv if kind == "base" else rt._token_kv
            g.seqlens[rt.slot - lo] = kv.length + new - 1
        g.total.fill(int(g.seqlens.max()) + 1)

    def _run_base(self, rts: list[SlotRuntime], lo: int, hi: int) -> None:
        g = self._group_io("base", lo, hi)
        b = hi - lo
        x = g.array("x", (b, 1, MAX_TOKEN_SEQ), np.int64)
        hidden = g.array("hidden", (b, 1, self.n_embd), np.float32, output=True)
        x.fill(0)
        for rt in rts:
            x[rt.slot - lo] = rt._base_x[1][0][0]
        self._lengths(g, rts, lo, 1, "base")
        self.sessions[0].run_with_iobinding(g.io)
        for rt in rts:
            rt._hidden_values[1][0][0] = hidden[rt.slot - lo]

    def _run_token(self, rts: list[SlotRuntime], lo: int, hi: int, new: int, from_hidden: bool) -> None:
        g = self._group_io("token", lo, hi)
        b, w = hi - lo, new - 1 if from_hidden else new
        h = g.array("hidden", (b, 1 if from_hidden else 0, self.n_embd), np.float32)
        x = g.array("x", (b, w), np.int64)
        t = g.array(TEMPERATURE, (b, 1, 1), np.float32)
        y = g.array("y", (b, 1, self.vocab_size), np.float32, output=True)
        probs = g.array(PROBS, (b, 1, self.vocab_size), np.float32, output=True)
        x.fill(0)
        t.fill(1.0)
        for rt in rts:
            r = rt.slot - lo
            if from_hidden:
                h[r] = rt._last_hidden[0]
            if w:
                x[r] = rt._x_values[w][0][0]
            t[r] = rt._temperature
        self._lengths(g, rts, lo, new, "token")
        self.sessions[1].run_with_iobinding(g.io)
        for rt in rts:
            r = rt.slot - lo
            rt._logits[0] = y[r]
            if rt._probs is not None:
                rt._probs[0] = probs[r]
