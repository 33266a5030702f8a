"""Ableton Link peers in the namespace rig, measured like Barcelona's agents, for bench/bad_network.py.

WHY a peer per host: Link is the reference a musician compares Barcelona with, so it must face the
same network (same hosts, same delay/jitter/loss shims). Link announces itself by multicast on every
interface, so its peers run only inside the rig's namespaces (docs/timing.md, Ableton Link), never in
the root one.

Each peer (``python -m bench.link_peers peer OUT``, run inside a host) joins the session and writes
``monotonic beat peers`` lines every few ms: the beat read between two ``time.monotonic()`` reads
and stamped with their midpoint. Every namespace shares the kernel's monotonic clock, so the lines
of all peers can be compared at the same instants. Link aligns peers' *phase* within the quantum (4
beats), not their beat numbers, so beats are compared modulo the quantum.
"""

from __future__ import annotations

import asyncio
import bisect
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

QUANTUM = 4.0
TEMPO = 120.0
SAMPLE_S = 0.005


def peer(out: Path, seconds: float) -> int:
    """Join the Link session and log (t, beat, peers) until SIGTERM or ``seconds`` pass."""
    return asyncio.run(_peer(out, seconds))


async def _peer(out: Path, seconds: float) -> int:
    import aalink  # type: ignore[import-not-found]

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    link = aalink.Link(TEMPO)  # aalink needs a running event loop to exist
    link.quantum = QUANTUM
    link.enabled = True
    end = time.monotonic() + seconds
    with out.open("w", buffering=1) as f:
        while not stop.is_set() and time.monotonic() < end:
            t0 = time.monotonic()
            beat = link.beat
            t1 = time.monotonic()
            f.write(f"{(t0 + t1) / 2:.7f} {beat:.9f} {link.num_peers}\n")
            await asyncio.sleep(SAMPLE_S)  # the sampling period, not a wait for a condition
    link.enabled = False
    return 0


@dataclass
class PeerLog:
    """One peer process's samples: beat(t) between samples is linear at TEMPO (no tempo changes)."""

    times: list[float] = field(default_factory=list)
    beats: list[float] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> PeerLog:
        log = cls()
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return log
        for line in lines:
            parts = line.split()
            if len(parts) == 3:
                log.times.append(float(parts[0]))
                log.beats.append(float(parts[1]))
                log.peers.append(int(parts[2]))
        return log

    def covers(self, t: float) -> bool:
        return bool(self.times) and self.times[0] <= t <= self.times[-1]

    def beat_at(self, t: float) -> tuple[float, int]:
        """The beat at t from the sample just before it, and how many peers it saw then."""
        k = max(0, bisect.bisect_right(self.times, t) - 1)
        return self.beats[k] + (t - self.times[k]) * TEMPO / 60.0, self.peers[k]


def phase_spread_ms(beats: list[float]) -> float:
    """Max minus min of the phases (mod QUANTUM, unwrapped around the first), in ms at TEMPO."""
    ref = beats[0]
    rel = [((b - ref + QUANTUM / 2) % QUANTUM) - QUANTUM / 2 for b in beats]
    return (max(rel) - min(rel)) * 60_000.0 / TEMPO


def worst_vs_others_ms(mine: float, others: list[float]) -> float:
    return max(phase_spread_ms([mine, o]) for o in others)


def join_time(logs: list[PeerLog], t_from: float, t_to: float, tol_ms: float, step_s: float,
              newcomer: PeerLog | None = None) -> float | None:
    """Seconds from ``t_from`` until the peers are within ``tol_ms`` and stay so until ``t_to``.

    With ``newcomer``: until it sees every other peer and is within ``tol_ms`` of each; otherwise
    until all of ``logs`` see each other and span at most ``tol_ms``.
    """
    first_ok: float | None = None
    t = t_from
    while t <= t_to:
        group = [g for g in logs if g.covers(t)]
        if newcomer is not None and newcomer.covers(t) and group:
            mine, seen = newcomer.beat_at(t)
            ok = seen >= len(group) and worst_vs_others_ms(mine, [g.beat_at(t)[0] for g in group]) <= tol_ms
        elif newcomer is None and len(group) == len(logs):
            vals = [g.beat_at(t) for g in group]
            ok = all(p >= len(logs) - 1 for _, p in vals) and phase_spread_ms([b for b, _ in vals]) <= tol_ms
        else:
            ok = False
        if ok and first_ok is None:
            first_ok = t
        elif not ok:
            first_ok = None
        t += step_s
    return None if first_ok is None else first_ok - t_from


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "peer":
        sys.exit(peer(Path(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 3600.0))
    print("usage: python -m bench.link_peers peer OUT [SECONDS]", file=sys.stderr)
    sys.exit(2)
