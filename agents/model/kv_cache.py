"""The KV caches and IO bindings under ModelRuntime: where a call's inputs and outputs live.

On CPU a cache is two preallocated host buffers per tensor; ORT reads the past from one half and writes
the present straight into the other through IO binding, so no call allocates. With CUDA the presents
stay on the device as ORT-allocated OrtValues and are bound as the next past. Both keep the Python cost
per call to what changes (see Binding and KVCache.bind). SharedKVCache is the third kind, for graphs
rewritten by fuse_attention.py: one fixed-capacity buffer per tensor that ORT appends to in place. Not
thread-safe.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from agents.model.fuse_attention import SEQLENS, TOTAL_LENGTH
from agents.model.model_config import StackShape

__all__ = ["Binding", "KVCache", "SharedKVCache", "past_names"]

_MEMO_LIMIT = 512  # (half, length) cache views kept wrapped as OrtValues, per cache


def past_names(stack: StackShape) -> list[str]:
    """The graph's cache inputs, layer by layer, key then value; each present is named 'present.' for
    'past_key_values.'."""
    return [f"past_key_values.{i}.{kv}" for i in range(stack.layers) for kv in ("key", "value")]


class Binding:
    """An IOBinding that skips rebinding a name to the OrtValue it already holds.

    ORT keeps bindings between runs, and most of a call's bindings repeat: the logits and hidden
    buffers, the x buffer of a given width, and (with the memo below) the cache views, whose lengths
    recur as the decoder rolls back a few rows and re-feeds them. A skipped bind saves ~1.5 µs; a token
    call has eight of them. The buffers' contents may change in place: ORT reads the memory at run."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.io = session.io_binding()
        self._bound: dict[str, object] = {}

    def input(self, name: str, value: ort.OrtValue) -> None:
        if self._bound.get(name) is not value:
            self.io.bind_ortvalue_input(name, value)
            self._bound[name] = value

    def output(self, name: str, value: ort.OrtValue) -> None:
        if self._bound.get(name) is not value:
            self.io.bind_ortvalue_output(name, value)
            self._bound[name] = value

    def device_output(self, name: str, device: str) -> None:
        """Let ORT allocate this output on `device` (a fresh tensor per run)."""
        self.io.bind_output(name, device)
        self._bound.pop(name, None)


class KVCache:
    """Past keys/values of one stack, always held as OrtValues so rebinding them costs ~1 µs each.

    'buffers' (CPU): two host arrays per tensor; ORT reads the past from one half and writes the present
    into the other, then the halves swap. 'ortvalues' (CUDA): ORT allocates each present on the device
    and it is bound as the next past, so a GPU cache never crosses to the host."""

    def __init__(self, stack: StackShape, batch: int, capacity: int, device: str | None) -> None:
        self.past = past_names(stack)
        self.present = [f"present.{i}.{kv}" for i in range(stack.layers) for kv in ("key", "value")]
        self.b, self.h, self.d, self.capacity = batch, stack.heads, stack.head_dim, capacity
        self.device = device  # None: host double buffers
        self.length = 0
        self._values: list[ort.OrtValue] = []  # the current past
        self._pending: list[ort.OrtValue] = []  # presents bound for the run in progress
        # Wrapping a view in an OrtValue costs ~6 µs (~50 µs for a 4-layer cache). Lengths recur: the
        # token cache has at most 9, and the base cache is cut back a few rows and re-fed after most
        # events (a note that shortens an earlier one), so ~95% of the base wraps hit the memo. It is
        # bounded because a long session grows through new lengths; the views stay valid forever.
        self._memo: dict[tuple[int, int], list[ort.OrtValue]] = {}
        if device is None:
            size = batch * stack.heads * capacity * stack.head_dim
            self._buf = [[np.empty(size, np.float32), np.empty(size, np.float32)] for _ in self.past]
            self._cur = 0
        self.truncate(0)

    def _shape(self, length: int) -> tuple[int, int, int, int]:
        return (self.b, self.h, length, self.d)

    def _view(self, half: int, i: int, length: int) -> np.ndarray:
        return self._buf[i][half][: self.b * self.h * length * self.d].reshape(self._shape(length))

    def _wrap(self, half: int, length: int) -> list[ort.OrtValue]:
        key = (half, length)
        values = self._memo.get(key)
        if values is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            wrap = ort.OrtValue.ortvalue_from_numpy
            values = self._memo[key] = [wrap(self._view(half, i, length)) for i in range(len(self.past))]
        return values

    def bind(self, binding: Binding, new: int) -> None:
        for name, value in zip(self.past, self._values, strict=True):
            binding.input(name, value)
        if self.device is not None:
            for name in self.present:
                binding.device_output(name, self.device)
            return
        self._pending = self._wrap(1 - self._cur, self.length + new)
        for name, value in zip(self.present, self._pending, strict=True):
            binding.output(name, value)

    def commit(self, binding: Binding, first_output: int, new: int) -> None:
        """The presents of the run just done become the past."""
        self.length += new
        if self.device is None:
            self._cur = 1 - self._cur
            self._values = self._pending
        else:
            self._values = binding.io.get_outputs()[first_output:]

    def truncate(self, length: int) -> None:
        if self.device is None:
            if length < self.length:  # compact (b, h, :length) into the other half: heads are strided
                for i in range(len(self.past)):
                    old = self._view(self._cur, i, self.length)
                    self._view(1 - self._cur, i, length)[...] = old[:, :, :length]
                self._cur = 1 - self._cur
            self._values = self._wrap(self._cur, length)
        elif length == 0:
            empty = np.zeros(self._shape(0), np.float32)
            self._values = [ort.OrtValue.ortvalue_from_numpy(empty, self.device, 0) for _ in self.past]
        else:
            self._values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v.numpy()[:, :, :length]),
                                                             self.device, 0) for v in self._values]
        self.length = length

    def host_arrays(self) -> list[np.ndarray]:
        """Copies of the current past, for inspection and tests."""
        return [np.array(v.numpy()) for v in self._values]


class SharedKVCache:
    """One buffer of `capacity` positions per tensor, bound as both past and present of a graph rewritten
    by fuse_attention.py: GroupQueryAttention writes the new keys after the first ``length`` positions in
    place and attends to ``seqlens_k + 1`` of them. So a call copies nothing, and truncating is setting
    the length (what lies beyond it is overwritten by the next call). The two length inputs live in
    arrays bound once and changed in place, like every other buffer here. Same interface as KVCache."""

    def __init__(self, stack: StackShape, batch: int, capacity: int,
                 buffers: list[np.ndarray] | None = None) -> None:
        """`buffers`, one (batch, heads, >= capacity, head_dim) array per tensor, are someone else's
        memory to use (a shared model's pool rows); by default the cache allocates its own."""
        self.past = past_names(stack)
        self.present = [f"present.{i}.{kv}" for i in range(stack.layers) for kv in ("key", "value")]
        self.capacity = capacity
        self.length = 0
        wrap = ort.OrtValue.ortvalue_from_numpy
        if buffers is None:
            shape = (batch, stack.heads, capacity, stack.head_dim)
            buffers = [np.zeros(shape, np.float32) for _ in self.past]
        elif len(buffers) != len(self.past) or any(b.shape[2] < capacity for b in buffers):
            raise ValueError(f"buffers: need {len(self.past)} arrays of >= {capacity} positions")
        self._buf = buffers
        self._values = [wrap(b) for b in self._buf]
        self._seqlens = np.zeros(batch, np.int32)  # valid length - 1, per batch row
        self._total = np.zeros((), np.int32)
        self._seqlens_value, self._total_value = wrap(self._seqlens), wrap(self._total)
        self._bound_to: Binding | None = None  # the one binding every port is bound in

    def bind(self, binding: Binding, new: int) -> None:
        total = self.length + new
        if total > self.capacity:
            raise ValueError(f"KV cache holds {self.capacity} positions, a call needs {total}")
        if binding is not self._bound_to:  # the ports never change: bound once, then only the lengths
            for name, value in zip(self.past, self._values, strict=True):
                binding.input(name, value)
            for name, value in zip(self.present, self._values, strict=True):
                binding.output(name, value)
            binding.input(SEQLENS, self._seqlens_value)
            binding.input(TOTAL_LENGTH, self._total_value)
            self._bound_to = binding
        self._seqlens.fill(total - 1)
        self._total.fill(total)

    def commit(self, binding: Binding, first_output: int, new: int) -> None:
        self.length += new

    def truncate(self, length: int) -> None:
        self.length = length

    def host_arrays(self) -> list[np.ndarray]:
        """Copies of the valid part of each buffer, for inspection and tests."""
        return [np.array(b[:, :, : self.length]) for b in self._buf]
