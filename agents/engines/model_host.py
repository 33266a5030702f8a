"""`python -m agents.engines.model_host ENSEMBLE.yaml --agents a,b --address SOCKET`: one model process
for the agents of an ensemble that share a model file (`engine.share: true`).

A big model's weights are read once per decode step whoever asks, so agents that each load their own
copy pay for the reading and the memory once per agent. Here one process loads the model once
(agents/model/shared_model.py) and each agent that connects gets its own Planner, context, cache rows,
seed and constraints, drawing in its own thread; the calls of the agents that draw at the same time
are batched. The agent's side is unchanged but for the connection: the same messages
(model_protocol.py) as to a model process of its own, after a `Join` with its part.

Faults stay contained: an agent that dies closes its connection, and its slot is freed for the agent
the launcher restarts; this process dying ends every connection, each agent restarts (its notes
released), and the launcher restarts this process, which they join again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from agents.engines.model_process import answer, ready_message
from agents.engines.model_protocol import Failed, Join
from agents.engines.model_worker import Planner
from agents.engines.worker_config import context_events, resolve_model
from protocol.ensemble import AgentConfig, Ensemble, EnsembleError, load_ensemble
from protocol.process import setup_logging
from protocol.realtime import model_niceness

log = logging.getLogger("barcelona.model")

KEY_ENV = "BARCELONA_MODEL_KEY"  # the connection's authentication key, from the launcher
STATS_PERIOD_S = 0.5


def share_key(cfg: AgentConfig, base_dir: Path) -> tuple[str, str]:
    """What agents must have in common to share a model process: the model folder and its quantisation."""
    return str(resolve_model(cfg.engine.model, base_dir)), cfg.engine.quantize


def shared_groups(ens: Ensemble, base_dir: Path, names: set[str] | None = None) -> list[list[AgentConfig]]:
    """The agents (of `names`, default all) that share a model process, one list per model; an agent
    asking to share a model no other agent uses gets a process of its own as usual."""
    groups: dict[tuple[str, str], list[AgentConfig]] = {}
    for a in ens.agents:
        if a.engine.type == "onnx" and a.engine.share and (names is None or a.name in names):
            groups.setdefault(share_key(a, base_dir), []).append(a)
    return [g for g in groups.values() if len(g) > 1]


class ModelHost:
    """The shared model and the agents connected to it, one thread each."""

    def __init__(self, ens: Ensemble, agents: list[AgentConfig], base_dir: Path) -> None:
        from agents.model.int8_cache import folder_to_load
        from agents.model.shared_model import SharedModel

        keys = {share_key(a, base_dir) for a in agents}
        if len(keys) != 1:
            raise ValueError(f"--agents: {', '.join(a.name for a in agents)} do not use one model file")
        (model, quantize), = keys
        self.source = model
        model, self.note = folder_to_load(model, quantize)
        self.folder = model
        windows = [context_events(model, a.engine.context_events) for a in agents]
        self.names = {a.name for a in agents}
        # as many ORT threads as the model processes it stands in for had between them (one each), up
        # to the cores: on two cores one thread serves two parts fewer events a second than two
        # processes (bench/medium_ensemble.py: the piano's notes came late on the medium export)
        self.threads = max(1, min(len(agents), os.cpu_count() or 1))
        # one slot more than agents: a restarted agent joins before its old connection has closed
        self.model = SharedModel(model, slots=len(agents) + 1, max_events=max(windows),
                                 intra_op_threads=self.threads)
        self.connected: dict[str, float] = {}  # agent name -> when it joined
        self.joins = 0
        self._lock = threading.Lock()

    def serve(self, conn: Connection) -> None:
        """One agent, from its Join until it stops or its connection closes."""
        from agents.model.shared_model import SlotRuntime

        rt: SlotRuntime | None = None
        name = "?"
        try:
            join = conn.recv()
            if not isinstance(join, Join):
                conn.send(Failed(f"the shared model process expected Join, got {type(join).__name__}"))
                return
            name = join.cfg.source
            if name not in self.names or join.cfg.model != self.source:
                conn.send(Failed(f"the shared model process serves {sorted(self.names)} on {self.source}, "
                                 f"not {name} on {join.cfg.model}"))
                return

            def runtime(folder: str, max_events: int) -> SlotRuntime:
                nonlocal rt
                rt = self.model.runtime(max_events)
                return rt

            try:
                planner = Planner(join.cfg, runtime=runtime)
            except Exception as exc:
                conn.send(Failed(f"{type(exc).__name__}: {exc}"))
                return
            conn.send(ready_message(planner))
            with self._lock:
                self.connected[name] = time.time()
                self.joins += 1
            slot = rt
            assert slot is not None
            answer(conn, planner, drawing=lambda: self.model.drawing(slot))
        except (EOFError, OSError):
            pass  # the agent went before or while joining
        finally:
            with self._lock:
                self.connected.pop(name, None)
            if rt is not None:
                self.model.release(rt)
            with contextlib.suppress(OSError):
                conn.close()

    def stats(self) -> dict[str, Any]:
        st = self.model.batcher.stats
        with self._lock:
            connected = sorted(self.connected)
        return {"model": self.source, "runs": self.folder, "slots": self.model.slots, "agents": connected,
                "threads": self.threads,
                "joins": self.joins, "providers": list(self.model.sessions[0].get_providers()),
                "calls": dict(st.calls), "mean_rows": {k: round(st.mean_batch(k), 2) for k in st.calls},
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.engines.model_host",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("ensemble", type=Path)
    ap.add_argument("--agents", required=True, help="comma-separated names of the agents it serves")
    ap.add_argument("--address", required=True, help="the Unix socket path the agents connect to")
    ap.add_argument("--stats", type=Path, help="write live stats JSON here (the launcher reads it)")
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args(argv)
    setup_logging("model-host", args.log_level)
    try:
        ens = load_ensemble(args.ensemble)
        agents = [ens.agent(n) for n in args.agents.split(",")]
    except (EnsembleError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # it holds no notes: nothing to release
    key = os.environ.get(KEY_ENV, "").encode() or None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.address)  # a socket left by a process that was killed
    # listening before the model loads: agents connect at once and wait for Ready like any model process
    listener = Listener(args.address, family="AF_UNIX", authkey=key)
    try:
        host = ModelHost(ens, agents, args.ensemble.resolve().parent)
    except Exception as exc:
        print(f"error: model host {args.agents}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if host.note:
        log.warning("%s", host.note)
    if args.stats is not None:
        threading.Thread(target=write_stats, args=(host, args.stats), daemon=True).start()
    with contextlib.suppress(OSError, AttributeError):
        os.nice(model_niceness(ens.timing.realtime))  # as any model process (protocol/realtime.py)
    while True:
        try:
            conn = listener.accept()
        except (OSError, EOFError) as exc:  # a client that failed authentication, or went at once
            log.warning("model host: a connection failed (%s)", exc)
            continue
        threading.Thread(target=host.serve, args=(conn,), daemon=True).start()


def write_stats(host: ModelHost, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    while True:
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(host.stats()))
            tmp.replace(path)
        time.sleep(STATS_PERIOD_S)


if __name__ == "__main__":
    sys.exit(main())
