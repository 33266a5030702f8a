"""ONNX Runtime inference for a SkyTNT-format model, with the event-level and token-level KV caches.

An agent keeps one context (the time-ordered event rows of all parts) and extends it event by event;
late events are inserted by rolling the cache back and re-feeding. So the runtime's job is: append rows
to the base model's cache (`prefill`), cut it (`rollback`), and give the token model's logits for each
token of the next event (`token_logits`), while the caller samples. `full_logits` recomputes everything
without a cache; tests hold the cached path to it.

Hot-loop allocations and copies: on CPU a lean export (ours) is rewritten at load time so that ORT
appends to one fixed buffer per cache tensor in place (fuse_attention.py: no copy per call, a rollback
is a length). Any other export keeps SkyTNT's interface, which concatenates past and new keys, so a
copy per call is inherent there: its caches live in preallocated double buffers and ORT writes each
`present` straight into the idle half through IO binding (no fresh allocation per call). With CUDA the
caches stay on the device as ORT-allocated OrtValues fed back as the next inputs. Logits land in one
preallocated array. The token cache is extended by as many tokens as the caller skipped, in one call.
Not thread-safe.

Per call the Python side is kept to what changes (the caches and bindings are in kv_cache.py: cache
views are wrapped once per (half, length) and kept, a name already bound is not rebound). Graph size is the
exporter's business (training/export.py writes lean graphs of fused ORT operators); this loader takes
lean and plain exports alike, and only checks a lean graph's rotary reach against `max_events`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from agents.model.checks import token_batch
from agents.model.fuse_attention import PROBS, TEMPERATURE
from agents.model.kv_cache import Binding, KVCache, SharedKVCache
from agents.model.model_config import (
    MAX_TOKEN_SEQ,
    ModelInfo,
    ModelLoadError,
    StackShape,
    inspect_graphs,
    model_paths,
    read_tokenizer_config,
)
from agents.model.sessions import (
    CUDA,
    Sessions,
    choose_providers,
    fused_sessions,
    open_session,
    session_options,
    shared_cache_refusal,
)

__all__ = ["ModelLoadError", "ModelRuntime", "choose_providers"]

log = logging.getLogger(__name__)
PREFILL_CHUNK = 64  # events per base-model call when prefilling; see ModelRuntime.prefill
ROTARY_KEY = "rotary_positions"  # metadata of a lean export: positions its cos/sin table covers
CACHE_MODES = ("shared", "buffers", "ortvalues")


class ModelRuntime:
    """Sessions, caches and buffers for one model folder (ours or a user's SkyTNT export)."""

    def __init__(self, folder: str | Path, *, providers: Sequence[str] | None = None,
                 intra_op_threads: int = 1, batch_size: int = 1, max_events: int = 4096,
                 cache_mode: str | None = None, sessions: Sessions | None = None,
                 cache_buffers: tuple[list[np.ndarray], list[np.ndarray]] | None = None) -> None:
        """intra_op_threads defaults to 1: agents share two cores with a timing thread, and ORT's
        spinning worker threads would steal it. cache_mode overrides the choice made from the graphs
        and the provider that actually runs: 'shared' (CPU, lean exports: fuse_attention.py's
        in-place cache, the default where it applies), 'buffers' (the exported graphs on host double
        buffers, the CPU default otherwise), 'ortvalues' (ORT-allocated, the CUDA default); tests use it
        to cover every mode on CPU. `sessions` and `cache_buffers` are a shared model's
        (agents/model/shared_model.py): its rewritten sessions, and this runtime's rows of its base and
        token cache pools; with them the cache mode is 'shared' and nothing is opened here."""
        if intra_op_threads < 1 or batch_size < 1 or max_events < 1:
            raise ValueError("intra_op_threads, batch_size and max_events must be >= 1, got "
                             f"{intra_op_threads}, {batch_size}, {max_events}")
        if cache_mode not in (None, *CACHE_MODES):
            raise ValueError(f"cache_mode must be one of {CACHE_MODES}, got {cache_mode!r}")
        config_path, base_path, token_path = model_paths(folder)
        tok = read_tokenizer_config(config_path)
        opts = session_options(intra_op_threads)
        chosen = choose_providers(providers)
        self._opts, self._chosen, self._paths = opts, chosen, (base_path, token_path)
        self._reference: Sessions | None = None
        if sessions is not None:
            fused: Sessions | None = sessions
        else:
            fused = (fused_sessions(base_path, token_path, opts, chosen, batch_size)
                     if cache_mode in (None, "shared") else None)
        if cache_mode == "shared" and fused is None:
            raise ValueError(shared_cache_refusal(folder))
        if fused is not None:
            self._base, self._token = fused
        else:
            self._base = open_session(base_path, opts, chosen)
            self._token = open_session(token_path, opts, chosen)
        self.info: ModelInfo = inspect_graphs(Path(folder), tok, self._base.get_inputs(),
                                              self._base.get_outputs(), self._token.get_inputs(),
                                              self._token.get_outputs())
        reach = self._base.get_modelmeta().custom_metadata_map.get(ROTARY_KEY)
        if reach is not None and reach.isdigit() and int(reach) < max_events:
            # a lean export (training/export.py) has a fixed cos/sin table; ORT would fail mid-play
            raise ValueError(f"max_events: {max_events} exceeds the {reach} positions {base_path} has "
                             f"rotary tables for (metadata {ROTARY_KEY!r}); use max_events <= {reach}")
        self.providers: tuple[str, ...] = tuple(self._base.get_providers())
        if CUDA in chosen and self.providers[0] != CUDA:
            log.warning("CUDA requested but onnxruntime runs %s (CUDA libraries missing?)", self.providers[0])
        if cache_mode is None:
            cache_mode = "shared" if fused else "ortvalues" if self.providers[0] == CUDA else "buffers"
        self.cache_mode = cache_mode
        device = None if cache_mode != "ortvalues" else ("cuda" if self.providers[0] == CUDA else "cpu")
        self.batch_size, self.max_events = batch_size, max_events
        b, e, v = batch_size, self.info.n_embd, self.info.vocab_size
        self._rows = np.zeros((b, max_events, MAX_TOKEN_SEQ), np.int64)
        self._length = 0
        self._last_hidden = np.zeros((b, 1, e), np.float32)
        self._hidden_fresh = False  # does _last_hidden belong to row _length - 1?
        self._no_hidden = np.zeros((b, 0, e), np.float32)
        self._logits = np.zeros((b, 1, v), np.float32)
        self._fed_rows: list[list[int]] = [[] for _ in range(b)]  # prefix held by the token cache
        self._fed_len = -1  # -1: token cache does not belong to the current context
        self._x_values: dict[int, tuple[np.ndarray, ort.OrtValue]] = {}
        self._y_buf = np.zeros(b * (1 + MAX_TOKEN_SEQ) * v, np.float32)
        self._y_values: dict[int, tuple[np.ndarray, ort.OrtValue]] = {}
        self._hidden_out = np.empty(b * PREFILL_CHUNK * e, np.float32)
        self._hidden_values: dict[int, tuple[np.ndarray, ort.OrtValue]] = {}
        self._base_x: dict[int, tuple[np.ndarray, ort.OrtValue]] = {}  # per chunk size, like the above
        if self.info.kv_cache:
            if cache_mode == "shared":
                base_buf, token_buf = cache_buffers if cache_buffers is not None else (None, None)
                self._base_kv: KVCache | SharedKVCache = SharedKVCache(self.info.base, b, max_events,
                                                                       base_buf)
                self._token_kv: KVCache | SharedKVCache = SharedKVCache(self.info.token, b,
                                                                        1 + MAX_TOKEN_SEQ, token_buf)
            else:
                self._base_kv = KVCache(self.info.base, b, max_events, device)
                self._token_kv = KVCache(self.info.token, b, 1 + MAX_TOKEN_SEQ, device)
            self._base_bind = Binding(self._base)
            self._token_bind = Binding(self._token)
            # OrtValues over the fixed buffers (zero-copy on the host), bound in ~1 µs each call
            wrap = ort.OrtValue.ortvalue_from_numpy
            self._logits_value = wrap(self._logits)
            self._no_hidden_value, self._last_hidden_value = wrap(self._no_hidden), wrap(self._last_hidden)
        # the rewritten token graph's softmax at a temperature (fuse_attention.py): see `probs`
        self._probs = np.zeros((b, 1, v), np.float32) if cache_mode == "shared" else None
        self._temperature = np.ones((), np.float32)
        self._temperature_set = 1.0
        if self._probs is not None:
            self._token_bind.input(TEMPERATURE, ort.OrtValue.ortvalue_from_numpy(self._temperature))
            self._token_bind.output(PROBS, ort.OrtValue.ortvalue_from_numpy(self._probs))

    def _exported_sessions(self) -> Sessions:
        """The graphs as exported, for full_logits: with the shared cache the running sessions are the
        rewritten ones, and the reference must not share their code path. Made on first use."""
        if self.cache_mode != "shared":
            return self._base, self._token
        if self._reference is None:
            self._reference = (open_session(self._paths[0], self._opts, self._chosen),
                               open_session(self._paths[1], self._opts, self._chosen))
        return self._reference

    @property
    def length(self) -> int:
        """Events in the context (and in the base cache)."""
        return self._length

    @property
    def rows(self) -> np.ndarray:
        """The context, (batch, length, 8); a view, valid until the next prefill or rollback."""
        return self._rows[:, : self._length]

    @property
    def device(self) -> str:
        return "cuda" if self.providers[0] == CUDA else "cpu"

    def prefill(self, rows: np.ndarray) -> None:
        """Append event rows, (8,), (N, 8) or (batch, N, 8), to the context and the base cache in one call."""
        rows = np.asarray(rows)
        if rows.dtype == np.int64 and rows.ndim == 2 and self.batch_size == 1 and rows.flags.c_contiguous:
            # the decoder's case, checked with two reductions instead of token_batch's dozen calls
            if rows.size and (rows.min() < 0 or rows.max() >= self.info.vocab_size):
                raise ValueError(f"rows: token ids must lie in 0..{self.info.vocab_size - 1}")
            x = rows[None]
        else:
            x = token_batch(rows[None] if rows.ndim == 1 else rows, 2, "rows", self.batch_size,
                            self.info.vocab_size)
        n = x.shape[1]
        if x.shape[2] != MAX_TOKEN_SEQ:
            raise ValueError(f"rows: each event needs {MAX_TOKEN_SEQ} token ids, got {x.shape[2]}")
        if self._length + n > self.max_events:
            raise ValueError(f"max_events: context would hold {self._length + n} events, capacity "
                             f"{self.max_events}; roll back or create the runtime with a larger max_events")
        if n == 0:
            return
        self._rows[:, self._length : self._length + n] = x
        self._length += n
        self._fed_len = -1
        if not self.info.kv_cache:
            self._hidden_fresh = False  # legacy: the base runs on the whole context when needed
            return
        # Chunks bound the attention's (chunk x context) intermediates: one call over a rebuilt
        # 768-event context needs ~120 MB that ORT's arena then keeps for the life of the process.
        for start in range(0, n, PREFILL_CHUNK):
            self._prefill_chunk(np.ascontiguousarray(x[:, start : start + PREFILL_CHUNK]))
        self._hidden_fresh = True

    def _prefill_chunk(self, x: np.ndarray) -> None:
        b, n, e = self.batch_size, x.shape[1], self.info.n_embd
        if n not in self._hidden_values:  # one wrap per chunk size: most prefills are one event
            if len(self._hidden_values) > 64:
                self._hidden_values.clear()
            hidden = self._hidden_out[: b * n * e].reshape(b, n, e)
            self._hidden_values[n] = (hidden, ort.OrtValue.ortvalue_from_numpy(hidden))
        hidden, hidden_value = self._hidden_values[n]
        if n not in self._base_x:  # bind_cpu_input would wrap a new OrtValue every call
            if len(self._base_x) > 64:
                self._base_x.clear()
            buf = np.empty((self.batch_size, n, MAX_TOKEN_SEQ), np.int64)
            self._base_x[n] = (buf, ort.OrtValue.ortvalue_from_numpy(buf))
        x_buf, x_value = self._base_x[n]
        np.copyto(x_buf, x)
        bind = self._base_bind
        bind.input("x", x_value)
        bind.output("hidden", hidden_value)
        self._base_kv.bind(bind, n)
        self._run_base(n)
        self._base_kv.commit(bind, 1, n)
        self._last_hidden[...] = hidden[:, -1:]

    def _run_base(self, n: int) -> None:
        """Run the base model on what _prefill_chunk bound: `n` new events. A shared model's runtime
        hands the call to its batcher instead (agents/model/shared_model.py)."""
        self._base.run_with_iobinding(self._base_bind.io)

    def _run_token(self, new: int, from_hidden: bool) -> None:
        """Run the token model on what token_logits bound: `new` positions, the first the event's
        hidden state when `from_hidden`. Overridden like _run_base."""
        self._token.run_with_iobinding(self._token_bind.io)

    def rollback(self, length: int) -> None:
        """Keep the first `length` events: the cut for inserting a late event, then re-feed from there."""
        if not 0 <= length <= self._length:
            raise ValueError(f"length: must lie in 0..{self._length}, got {length}")
        if length == self._length:
            return
        self._length = length
        self._hidden_fresh = False
        self._fed_len = -1
        if self.info.kv_cache:
            self._base_kv.truncate(length)

    def reset(self) -> None:
        self.rollback(0)

    def _refresh_hidden(self) -> None:
        if self._length == 0:
            raise ValueError("token_logits: the context is empty; prefill at least a BOS row first")
        if self.info.kv_cache:  # after a rollback: re-feed the last event to get its hidden state back
            last = self._rows[:, self._length - 1 : self._length].copy()
            self.rollback(self._length - 1)
            self.prefill(last)
        else:
            hidden = self._base.run(["hidden"], {"x": self._rows[:, : self._length]})[0]
            self._last_hidden[...] = hidden[:, -1:]
            self._hidden_fresh = True

    def _token_prefix(self, prefix: np.ndarray) -> list[list[int]]:
        """The prefix as one Python list per batch row, validated. Lists, not arrays: a prefix holds at
        most 7 ids, and comparing it with the cached one is then ~1 µs instead of several numpy calls."""
        a = prefix
        if not (type(a) is np.ndarray and a.dtype == np.int64 and a.ndim == 1 and self.batch_size == 1):
            return token_batch(prefix, 1, "prefix", self.batch_size, self.info.vocab_size).tolist()
        if (p := a.tolist()) and (min(p) < 0 or max(p) >= self.info.vocab_size):
            raise ValueError(f"prefix: token ids must lie in 0..{self.info.vocab_size - 1}")
        return [p]

    def _x_value(self, rows: list[list[int]]) -> ort.OrtValue:
        """An OrtValue over a preallocated (batch, w) int64 buffer holding `rows` (one per width w)."""
        w = len(rows[0])
        if w not in self._x_values:
            buf = np.zeros((self.batch_size, w), np.int64)
            self._x_values[w] = (buf, ort.OrtValue.ortvalue_from_numpy(buf))
        buf, value = self._x_values[w]
        if w:
            buf[...] = rows
        return value

    def _y_value(self, new: int) -> tuple[np.ndarray, ort.OrtValue]:
        """Preallocated (batch, new, vocab) output for a call that feeds several positions at once."""
        if new not in self._y_values:
            b, v = self.batch_size, self.info.vocab_size
            y = self._y_buf[: b * new * v].reshape(b, new, v)
            self._y_values[new] = (y, ort.OrtValue.ortvalue_from_numpy(y))
        return self._y_values[new]

    @property
    def probs(self) -> np.ndarray | None:
        """softmax(logits / temperature) over the whole vocabulary, (batch, vocab), of the latest
        token_logits call, at the temperature it was given; None unless the token graph computes it
        (the shared cache's rewrite). Reused by the next call, like the logits."""
        return None if self._probs is None else self._probs[:, 0]

    def token_logits(self, prefix: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
        """Raw logits (batch, vocab) for token j of the next event, given its tokens 0..j-1 (`prefix`,
        (j,) or (batch, j)). The token cache keeps the longest part of the previous prefix that this
        one shares and feeds the rest in ONE call, so a caller that skips positions it need not sample
        (a forced track or channel) pays for them inside the next call, not with calls of their own.
        A prefix that shares nothing is recomputed from the event's hidden state. The array is reused
        by the next call: copy it to keep it. `temperature` only matters for `probs`."""
        if self._probs is not None and temperature != self._temperature_set:
            try:
                t = float(temperature)
            except (TypeError, ValueError):
                t = math.nan
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
            self._temperature.fill(t)
            self._temperature_set = t
        rows = self._token_prefix(prefix)
        j = len(rows[0])
        if j >= MAX_TOKEN_SEQ:
            raise ValueError(f"prefix: an event has {MAX_TOKEN_SEQ} tokens, so j must be < "
                             f"{MAX_TOKEN_SEQ}, got {j}")
        if not self._hidden_fresh:
            self._refresh_hidden()
        if not self.info.kv_cache:
            y = self._token.run(["y"], {"hidden": self._last_hidden[:, 0], "x": np.array(rows, np.int64)})[0]
            self._logits[...] = y[:, -1:]
            return self._logits[:, 0]
        kv, bind = self._token_kv, self._token_bind
        keep = -1  # tokens of the cached prefix still valid; -1: start again from the hidden state
        if self._fed_len >= 0 and j >= 1:
            fed, keep = self._fed_rows, 0
            limit = min(self._fed_len, j - 1)  # at least one token is fed: its logits are the answer
            if len(rows) == 1:  # batch 1: plain list indexing, no generator per position
                r, f = rows[0], fed[0]
                while keep < limit and r[keep] == f[keep]:
                    keep += 1
            else:
                while keep < limit and all(r[keep] == f[keep] for r, f in zip(rows, fed, strict=True)):
                    keep += 1
        if keep < 0:
            kv.truncate(0)
            bind.input("hidden", self._last_hidden_value)
            bind.input("x", self._x_value(rows))
            new = 1 + j
        else:
            if kv.length > 1 + keep:
                kv.truncate(1 + keep)
            bind.input("hidden", self._no_hidden_value)
            bind.input("x", self._x_value([r[keep:] for r in rows]))
            new = j - keep
        # the rewritten token graph (shared mode) projects only the last position
        last_only = new == 1 or self.cache_mode == "shared"
        y, y_value = (self._logits, self._logits_value) if last_only else self._y_value(new)
        bind.output("y", y_value)
        kv.bind(bind, new)
        self._run_token(new, keep < 0)
        kv.commit(bind, 1, new)
        if not last_only:
            self._logits[:, 0] = y[:, -1]
        self._fed_rows = rows
        self._fed_len = j
        return self._logits[:, 0]

    def full_logits(self, rows: np.ndarray, prefix: np.ndarray) -> np.ndarray:
        """The same logits as prefill(rows) then token_logits(prefix), computed from scratch with no
        cache and no binding: the reference the cached path is tested against."""
        x = token_batch(rows, 2, "rows", self.batch_size, self.info.vocab_size)
        p = token_batch(prefix, 1, "prefix", self.batch_size, self.info.vocab_size)
        b = self.batch_size
        base, token = self._exported_sessions()
        if not self.info.kv_cache:
            hidden = base.run(["hidden"], {"x": x})[0]
            return token.run(["y"], {"hidden": hidden[:, -1], "x": p})[0][:, -1]

        def empty(stack: StackShape) -> dict[str, np.ndarray]:
            z = np.zeros((b, stack.heads, 0, stack.head_dim), np.float32)
            return {f"past_key_values.{i}.{kv}": z for i in range(stack.layers) for kv in ("key", "value")}

        hidden = base.run(["hidden"], {"x": x, **empty(self.info.base)})[0]
        feeds = {"hidden": hidden[:, -1:], "x": p, **empty(self.info.token)}
        return token.run(["y"], feeds)[0][:, -1]

    def base_cache(self) -> list[np.ndarray]:
        """Host copies of the base past, (batch, heads, length, head_dim) per tensor; empty if legacy."""
        return self._base_kv.host_arrays() if self.info.kv_cache else []
