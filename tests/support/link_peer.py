"""A plain Ableton Link peer for tests (what Live would be): run it ONLY inside a test's namespace.

WHY a separate process: Link announces itself by multicast on every interface, so it must live in a
network namespace with no route out; `NetRig.popen` puts this script there. It prints one JSON line
per sample, `{"t": monotonic, "beat": ..., "tempo": ..., "peers": ...}`; `t` is read right around
Link's "beat now", and the monotonic clock is shared by every namespace, so a test compares this
beat with the conductor's timeline at the same instant. Lines on stdin steer it: `tempo 90`.

    python tests/support/link_peer.py --tempo 100 [--quantum 4] [--every 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any


def make_link(tempo: float) -> Any:
    from aalink import Link

    try:
        return Link(tempo)
    except TypeError:  # older aalink wants the event loop
        return Link(tempo, asyncio.get_running_loop())


async def commands(link: Any) -> None:
    """Read `tempo N` lines from stdin (in a thread: stdin is a pipe from the test)."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        word, _, value = line.strip().partition(" ")
        if word == "tempo":
            link.tempo = float(value)


async def main(args: argparse.Namespace) -> None:
    link = make_link(args.tempo)
    link.quantum = args.quantum
    link.enabled = True
    reader = asyncio.create_task(commands(link))
    try:
        while True:
            t0 = time.monotonic()
            beat = link.beat
            t1 = time.monotonic()
            sample = {"t": (t0 + t1) / 2, "beat": beat, "tempo": link.tempo, "peers": link.num_peers}
            print(json.dumps(sample), flush=True)
            await asyncio.sleep(args.every)  # pacing the samples: one line each `--every` s
    finally:
        reader.cancel()
        link.enabled = False


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tempo", type=float, default=120.0)
    ap.add_argument("--quantum", type=float, default=4.0)
    ap.add_argument("--every", type=float, default=0.02)
    try:
        asyncio.run(main(ap.parse_args()))
    except KeyboardInterrupt:
        pass
