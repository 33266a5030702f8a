"""The NFQUEUE delay shim: a program NetRig.set_delay starts inside one host to hold its packets.

WHY a script of its own: it runs as a separate process inside the host's namespace (``python
delay_shim.py delay --queue N --mean-ms M --sd-ms S``), so it imports nothing from the rig, only the
standard library and ``netfilterqueue``. It prints ``bound`` once it listens on the queue; SIGTERM
ends it, after accepting every packet it still holds.
"""

from __future__ import annotations

import itertools
import select
import signal
import sys
import threading
import time
from typing import Any


def _delay_shim(queue: int, mean_ms: float, sd_ms: float) -> int:
    """Accept each queued packet after a normal(mean, sd) delay; one thread, verdicts from a heap.

    netfilterqueue lets a verdict be given after the callback returns, so the callback only stamps
    the packet's due time; the loop sleeps on select() until the next packet arrives or falls due.
    """
    import heapq
    import random

    from netfilterqueue import COPY_META, NetfilterQueue  # type: ignore[import-not-found]

    held: list[tuple[float, int, Any]] = []
    counter = itertools.count()

    def hold(pkt: Any) -> None:
        delay = max(0.0, random.gauss(mean_ms, sd_ms)) / 1000.0
        heapq.heappush(held, (time.monotonic() + delay, next(counter), pkt))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    nfq = NetfilterQueue()
    nfq.bind(queue, hold, max_len=4096, mode=COPY_META)  # verdicts only: no payload copies
    fd = nfq.get_fd()
    print("bound", flush=True)
    try:
        while not stop.is_set():
            now = time.monotonic()
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
            wait = min(0.1, held[0][0] - now) if held else 0.1
            readable, _, _ = select.select([fd], [], [], max(0.0, wait))
            if readable:
                nfq.run(block=False)
    finally:
        for _, _, pkt in held:
            pkt.accept()
        nfq.unbind()
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="NetRig helpers run inside a namespace")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("delay", help="NFQUEUE delay shim")
    d.add_argument("--queue", type=int, required=True)
    d.add_argument("--mean-ms", type=float, required=True)
    d.add_argument("--sd-ms", type=float, default=0.0)
    ns_args = ap.parse_args()
    sys.exit(_delay_shim(ns_args.queue, ns_args.mean_ms, ns_args.sd_ms))
