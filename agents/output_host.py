"""`python -m agents.output_host --address SOCKET`: one process that writes every local part's notes
at their moments (the launcher starts one per machine; `timing.output_host`).

Why one: each part's own timing thread woke at the beats every part shares and spun the last half
millisecond at SCHED_FIFO, beside the others; with three parts on two cores one of them waited for a
core, and each waited for its own agent's loop whenever that held the process's lock on the
interpreter (docs/timing.md). Here a single thread writes every part's batch of a moment one after
the other, warm, and does nothing else near a due time: it reads the agents' messages only while
the next due time is further off than its spin, so no other Python work of its own can hold it up.

An agent hands over each note as it commits it, and every change of its beat clock
(agents/output_link.py); the host keeps the part's queue (the `SchedulerCore` an agent's own timing
thread would run) and its synth output (its ledger of sounding notes, all-notes-off at open and
close), and sends the part's timing statistics back for its heartbeat and the report. A part whose
agent goes, however it goes (SIGKILL included: its connection closes), is released and closed here
at once: no stuck note. This process ending ends every connection; each
agent then ends too, and the launcher restarts them all (a stop releases every part's notes here
first; after a SIGKILL, each part's channels are silenced as the new process opens its output).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from multiprocessing.connection import Connection, Listener, wait
from pathlib import Path
from typing import Any

from agents.output_link import KEY_ENV
from agents.output_messages import Clear, Close, Closed, Control, CutAt, Schedule, SetTimeMap, Stats, Written
from agents.output_parts import HostedPart, Joiner, room_to_send
from agents.outputs import Output
from agents.scheduler_core import Dispatch, ScheduledEvent
from protocol.process import freeze_heap, setup_logging, write_json_atomic
from protocol.realtime import (
    DEFAULT_RT_PRIORITY,
    DEFAULT_SWITCH_INTERVAL_S,
    drop_realtime,
    request_realtime,
    set_switch_interval,
    spin_yield,
)
from protocol.timeline import LocalTimeMap

__all__ = ["KEY_ENV", "OutputHost", "main"]

log = logging.getLogger("barcelona.outputs")

# The last stretch before a due time is spun: a timed wait wakes late, now and then by a millisecond
# or more on a busy machine. An agent's own timing thread spins 0.5 ms, since three of them on two
# cores must not hold a core each for long; one thread alone can spin longer (docs/timing.md has
# the default ensemble's figures at 0.5 and 2 ms).
SPIN_S = 0.002
# How long before the first write of a moment its batches are prepared again (`_write_due`): that
# preparation took 0.03 ms at the median, 0.10 at the 99th percentile; begun 80 us before the due
# time it ran past it now and then, and the p99 of the default ensemble's parts was 0.06-0.19 ms
# (five runs); begun 250 us before, 0.04-0.12 (three runs).
REHEARSE_S = 250e-6
IDLE_S = 0.5  # the longest wait with nothing due: stats, and a stop request
STATS_PERIOD_S = 0.5
QUIET_S = 0.02  # statistics are made only when the next due time is at least this far off
TOGETHER_S = 20e-6  # a part's events this close together go out as one batch
READ_BATCH = 64  # messages read from one agent before the clock is looked at again
CLOSE_WAIT_S = 1.0
WAIT_GRAIN_S = 0.002  # `wait`'s timeout is in whole milliseconds, rounded up
STOP_GRACE_S = 1.0  # under the launcher's grace before it kills


class OutputHost:
    """The parts connected to this machine's output process, and the one loop that writes for them.

    `run` is the writing loop, on the thread that called it; connections are accepted and outputs
    opened on other threads (`serve`, agents/output_parts.py), so a part that joins or restarts
    never holds up the others.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, spin_s: float = SPIN_S,
                 key: bytes | None = None) -> None:
        self._clock = clock
        self._ready = threading.Event()  # set once the writing thread knows its priority
        self._joiner = Joiner(key, self._ready, lambda: self.priority, self._join)
        self._closers: list[threading.Thread] = []
        self._spin_s = spin_s
        self._parts: dict[Connection, HostedPart] = {}
        self._joined: queue.SimpleQueue[HostedPart] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stopping = False
        self._stop_by = 0.0
        self.priority = "normal"
        self.written = 0

    # -- from any thread -----------------------------------------------------------------------------
    def stop(self) -> None:
        """End the loop once every part has closed (their agents are stopping too: the launcher
        stops everyone at once), or after `STOP_GRACE_S`, closing whatever is left."""
        self._stop_by = self._clock() + STOP_GRACE_S
        self._stopping = self._joiner.stopping = True
        self._wake()

    def serve(self, listener: Listener) -> None:
        """Accept agents for ever (agents/output_parts.py), each handed to the writing loop."""
        self._joiner.serve(listener)

    def _join(self, part: HostedPart) -> None:
        self._joined.put(part)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # -- the writing loop -----------------------------------------------------------------------------
    def run(self, stats: Path | None = None, *, realtime: bool = True) -> None:
        """Write every part's notes at their due times until `stop`; then close every output."""
        if realtime:
            self.priority = request_realtime(DEFAULT_RT_PRIORITY)
        self._ready.set()
        clock, spin = self._clock, self._spin_s
        next_stats = 0.0
        try:
            while self._parts or not self._stopping:
                now = clock()
                if self._stopping and now > self._stop_by:
                    break
                due = self._next_due()
                if due is not None and due - now <= spin:
                    self._write_due(now)
                    continue
                if due is not None and due - now <= spin + WAIT_GRAIN_S:
                    # The last stretch is slept, not waited on the connections: `wait` counts whole
                    # milliseconds, rounded up, and would wake past the spin. A message that comes
                    # meanwhile is read after the writes.
                    time.sleep(due - now - spin)
                    continue
                if due is None or due - now > QUIET_S:
                    self._quiet_work(now, stats if now >= next_stats else None)
                    if stats is not None and now >= next_stats:
                        next_stats = now + STATS_PERIOD_S
                    now = clock()
                    if due is not None and due - now <= spin + WAIT_GRAIN_S:
                        continue
                timeout = IDLE_S if due is None else min(IDLE_S, due - now - spin - WAIT_GRAIN_S)
                for r in wait([*self._parts, self._wake_r], timeout):
                    if r == self._wake_r:
                        os.read(self._wake_r, 4096)
                        self._take_joined()
                    else:
                        assert isinstance(r, Connection)
                        self._read(r)
        finally:
            # Whatever is left is closed at normal priority: the exit must not starve the synth or
            # JACK server that still has to carry its note-offs (protocol/realtime.py).
            drop_realtime()
            for part in list(self._parts.values()):
                self._drop(part, wait=True)
            for closer in self._closers:
                closer.join(CLOSE_WAIT_S)

    def _next_due(self) -> float | None:
        dues = [d for d in (p.core.next_due() for p in self._parts.values()) if d is not None]
        return min(dues) if dues else None

    def _take_joined(self) -> None:
        while True:
            try:
                part = self._joined.get_nowait()
            except queue.Empty:
                return
            for old in [p for p in self._parts.values() if p.name == part.name]:
                self._drop(old)  # the agent was restarted: the old one is gone
            self._parts[part.conn] = part
            log.info("output host: %s joined (%s)", part.name, part.output.name)

    def _read(self, conn: Connection) -> None:
        part = self._parts.get(conn)
        if part is None:
            return
        for _ in range(READ_BATCH):  # then back to the clock: a flood must not run into a due time
            try:
                if not conn.poll():
                    return
                msg = conn.recv()
            except Exception:  # the agent went, however it went (or sent what is not ours): its notes end
                self._drop(part)
                return
            try:
                if self._take(part, msg):
                    return
            except Exception as exc:  # a value the queue or the output refused: the part plays on
                log.warning("output host: %s: %s", part.name, exc)

    def _take(self, part: HostedPart, msg: object) -> bool:
        """Carry out one message of the part's agent; True when the part is gone (closed)."""
        core = part.core
        if isinstance(msg, Schedule):
            core.schedule(msg.note, msg.tag)
        elif isinstance(msg, SetTimeMap):
            if msg.timemap is not None and not isinstance(msg.timemap, LocalTimeMap):
                raise TypeError(f"timemap: expected a LocalTimeMap, got {type(msg.timemap).__name__}")
            core.set_timemap(msg.timemap)
        elif isinstance(msg, CutAt):
            core.cut_at(msg.beat)
        elif isinstance(msg, Clear):
            core.clear()
        elif isinstance(msg, Control):
            part.output.control_change(msg.channel, msg.control, msg.value)
        elif isinstance(msg, Close):
            self._drop(part)
            return True
        else:
            log.warning("output host: %s sent a %s; ignored", part.name, type(msg).__name__)
        return False

    def _drop(self, part: HostedPart, *, wait: bool = False) -> None:
        """Release the part's notes now, tell its agent the last statistics if it still listens, and
        close its output: on another thread unless `wait`, since closing a synth or a JACK port takes
        tens of milliseconds that the other parts' writes cannot wait."""
        if self._parts.pop(part.conn, None) is None:
            return
        out = part.output
        try:
            self._deliver(part, part.core.flush())
        except Exception:
            log.exception("output host: %s: releasing its notes failed", part.name)
        if room_to_send(part.conn):
            with contextlib.suppress(OSError, ValueError):
                part.conn.send(Closed(part.core.stats(), out.sounding(), part.onsets))
        part.conn.close()

        def close() -> None:
            try:
                out.close()
            except Exception:
                log.exception("output host: %s: closing its output failed", part.name)

        if wait:
            close()
        else:
            closer = threading.Thread(target=close, name=f"close-{part.name}", daemon=True)
            closer.start()
            self._closers = [c for c in self._closers if c.is_alive()] + [closer]

    def _deliver(self, part: HostedPart, events: list[ScheduledEvent]) -> None:
        """Send now, one by one: the note-offs of a stop, which have no due time."""
        out = part.output

        def send(ev: ScheduledEvent) -> float:
            return out.play(ev.note, due=ev.due) if ev.kind == "on" else out.release(ev.note, due=ev.due)

        if events and out.is_open:
            part.core.deliver(events, send, self._clock)

    def _write_due(self, now: float) -> None:
        """Every part's events of the coming moment, made ready before it and written at it, one part
        after the other; then each part hears what went out. A part's events that fall within
        `TOGETHER_S` of each other go out as one batch (one preparation against the part's ledger as
        it stands: two batches of one part prepared before either was written would read a ledger
        the first had not yet changed)."""
        clock = self._clock
        first = self._next_due()
        if first is None:
            return
        ready: list[tuple[float, HostedPart, list[ScheduledEvent], Dispatch]] = []
        for part in self._parts.values():
            events = part.core.pop_due(max(now, first) + TOGETHER_S)
            if not events:
                continue
            forced = [ev for ev in events if ev.due is None]
            if forced:  # note-offs of a stop: at once
                self._deliver(part, forced)
                events = [ev for ev in events if ev.due is not None]
            if events:
                due = max(ev.due for ev in events if ev.due is not None)
                ready.append((due, part, events, part.core.prepare(events, _prepare_for(part.output))))
        ready.sort(key=lambda r: r[0])
        give_way = spin_yield()
        if ready:
            # The batches made ready once more just before the first is due: the output's lock, its
            # ledger and its message code are then warm when the writes come (after a sleep and a
            # spin, the first write of a moment took 0.04 ms at the median, 0.03 ms after this).
            # Preparing writes nothing, so the second preparation simply replaces the first.
            while clock() < ready[0][0] - REHEARSE_S:
                give_way()
            ready = [(due, part, group, part.core.prepare(group, _prepare_for(part.output)))
                     for due, part, group, _ in ready]
        written: list[tuple[HostedPart, list[ScheduledEvent], Sequence[float | Exception] | Exception]] = []
        for due, part, group, dispatch in ready:
            while clock() < due:
                give_way()
            try:
                results: Sequence[float | Exception] | Exception = dispatch()
            except Exception as exc:
                results = exc
            written.append((part, group, results))
        # The bookkeeping after every part's writes, so no part waits for another's.
        for part, group, results in written:
            part.core.dispatch(group, partial(_result, results))
            self.written += len(group)
            if not isinstance(results, Exception):
                part.onsets += sum(1 for ev, r in zip(group, results, strict=False)
                                   if ev.kind == "on" and ev.tag is None and not isinstance(r, Exception))
            self._answer(part, Written(part.onsets, part.output.sounding()))

    def _quiet_work(self, now: float, stats: Path | None) -> None:
        """What waits for a moment with nothing due: one part's statistics (the percentiles of a long
        set take a millisecond or two), the host's stats file."""
        due = [p for p in self._parts.values() if now >= p.next_stats]
        if due:
            part = min(due, key=lambda p: p.next_stats)
            part.next_stats = now + STATS_PERIOD_S
            self._answer(part, Stats(part.core.stats(), part.output.sounding(), part.onsets))
        if stats is not None:
            with contextlib.suppress(OSError):
                write_json_atomic(stats, self.stats())

    def _answer(self, part: HostedPart, msg: Written | Stats) -> None:
        """Tell the part's agent, unless it is not reading (a stopped process): then this answer is
        skipped, never waited for (the next one carries the totals), and the other parts play on."""
        if not room_to_send(part.conn):
            return
        try:
            part.conn.send(msg)
        except OSError:
            self._drop(part)

    def output(self, part: str) -> Output | None:
        """The output a connected part plays through (diagnostics and tests)."""
        return next((p.output for p in list(self._parts.values()) if p.name == part), None)

    def stats(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "priority": self.priority, "written": self.written,
                "parts": sorted(p.name for p in self._parts.values())}


def _result(results: Sequence[float | Exception] | Exception) -> Sequence[float | Exception]:
    """A batch's outcome as `SchedulerCore.dispatch` takes it: the write's results, or its failure."""
    if isinstance(results, Exception):
        raise results
    return results


def _prepare_for(out: Output) -> Callable[[list[ScheduledEvent]], Dispatch]:
    def prepare(events: list[ScheduledEvent]) -> Dispatch:
        burst = out.prepare([(ev.kind == "on", ev.note, ev.due) for ev in events])
        return lambda: out.send(burst)

    return prepare


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.output_host", description=__doc__.split("\n")[0])
    ap.add_argument("--address", required=True, help="the Unix socket path the agents connect to")
    ap.add_argument("--stats", type=Path, help="write live stats JSON here (the launcher reads it)")
    ap.add_argument("--no-realtime", action="store_true", help="stay at normal priority (timing.realtime)")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    setup_logging("output-host", args.log_level)
    key = os.environ.get(KEY_ENV, "").encode() or None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.address)  # a socket left by a process that was killed
    set_switch_interval(DEFAULT_SWITCH_INTERVAL_S)  # a joining part's Python yields the GIL soon
    listener = Listener(args.address, family="AF_UNIX")  # authenticated by the joining thread
    freeze_heap()  # after the imports (protocol/process.py says why)
    host = OutputHost(key=key)
    signal.signal(signal.SIGTERM, lambda *_: host.stop())
    signal.signal(signal.SIGINT, lambda *_: host.stop())
    # Before the writing thread asks for SCHED_FIFO, so the accepting thread stays a normal one.
    threading.Thread(target=host.serve, args=(listener,), daemon=True).start()
    host.run(args.stats, realtime=not args.no_realtime)
    return 0


if __name__ == "__main__":
    sys.exit(main())
