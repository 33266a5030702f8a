"""The joining side of the output host (agents/output_host.py): an agent's connection accepted,
authenticated and its part's output opened, on threads of their own, then handed to the writing loop
as a `HostedPart`.

Opening a synth (a soundfont, a JACK port) takes far longer than the time between two beats, and a
client may be slow, wrong or gone: none of that may reach the thread that writes the other parts.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge

from agents.output_messages import Open, Opened
from agents.outputs import Output, OutputError
from agents.outputs.factory import make_output
from agents.scheduler_core import SchedulerCore

__all__ = ["JOIN_S", "HostedPart", "Joiner", "room_to_send"]

log = logging.getLogger("barcelona.outputs")

JOIN_S = 10.0  # how long a new connection has to say which part it is


@dataclass(eq=False)
class HostedPart:
    """A connected part: its agent's connection, its synth output and its queue."""

    name: str
    conn: Connection
    output: Output
    core: SchedulerCore
    next_stats: float = 0.0
    onsets: int = 0  # the part's own notes started so far (count-in clicks are not the part's)


class Joiner:
    """Accepts agents for ever and hands each opened part to `joined`. `ready` is set once the
    writing thread knows its `priority`, which every part is told as it opens (the report shows it)."""

    def __init__(self, key: bytes | None, ready: threading.Event, priority: Callable[[], str],
                 joined: Callable[[HostedPart], None]) -> None:
        self._key = key
        self._ready = ready
        self._priority = priority
        self._joined = joined
        self.stopping = False

    def serve(self, listener: Listener) -> None:
        """Each connection is authenticated and its output opened on a thread of its own, so no
        client, however slow or wrong, holds up another. `listener` takes no key itself: the
        handshake is the joining thread's."""
        while not self.stopping:
            try:
                conn = listener.accept()
            except Exception as exc:  # a client that went at once: the next one is served all the same
                if self.stopping:
                    return
                log.warning("output host: a connection failed (%s)", exc)
                continue
            threading.Thread(target=self._join, args=(conn,), daemon=True).start()

    def _join(self, conn: Connection) -> None:
        try:
            if self._key is not None:
                deliver_challenge(conn, self._key)
                answer_challenge(conn, self._key)
            if not conn.poll(JOIN_S):
                raise EOFError(f"no Open within {JOIN_S:g} s")
            msg = conn.recv()
            if not isinstance(msg, Open):
                raise EOFError(f"expected Open, got {type(msg).__name__}")
        except Exception as exc:  # a wrong key, a client that went, a message that is not ours
            log.warning("output host: a part did not open (%s)", exc)
            conn.close()
            return
        self._ready.wait()
        try:
            out = make_output(msg.spec, where=f"agents.{msg.part}.output")
            out.open()
            core = SchedulerCore(late_ms=msg.late_ms, drop_after_s=msg.drop_after_s)
        except Exception as exc:  # one line back to the agent, which ends with it
            text = str(exc) if isinstance(exc, OutputError) else f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(OSError):
                conn.send(Opened(self._priority(), text))
            conn.close()
            return
        try:
            conn.send(Opened(self._priority()))
        except OSError:
            out.close()
            conn.close()
            return
        self._joined(HostedPart(msg.part, conn, out, core))


def room_to_send(conn: Connection) -> bool:
    """Whether the connection takes a small message now: an agent that stopped reading (a stopped
    process) must not stall every other part's writes behind a full socket."""
    try:
        _, writable, _ = select.select([], [conn.fileno()], [], 0)
    except (OSError, ValueError):
        return False
    return bool(writable)
