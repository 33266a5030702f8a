"""What the fault soak plays on: its ensemble's YAML, a private JACK server, the agents it kills.

The YAML is ensembles/default.yaml on free loopback ports (and the private broker's, over MQTT),
every agent playing into one JACK MIDI capture port when jackd is installed, so stuck notes are
counted where a synth would hold them. An agent to kill is found among the launcher's children by
its command line, as the OOM killer would pick it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from bench.beat_agreement import free_port, free_udp_block

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
CAPTURE = "soakcap"


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def agent_pid(launcher: int, name: str) -> int | None:
    """The live process of agent `name` (argv: python -m agents YAML NAME ...)."""
    for pid in children(launcher):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and "agents" in argv and argv[argv.index("agents") + 2] == name:
            return pid
    return None


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def write_yaml(
    work: Path, transport: str, broker_port: int | None, jack: bool
) -> tuple[Path, dict[str, Any]]:
    source = ROOT / "ensembles" / "default.yaml"
    data = yaml.safe_load(source.read_text())
    data["bus"] = {"transport": transport, "osc": {"base_port": free_udp_block(len(data["agents"]) + 2),
                                                   "monitor_port": free_port()}}  # fmt: skip
    if transport == "mqtt":
        data["bus"]["mqtt"] = {"host": HOST, "port": broker_port}
    data["control"] = {**data["control"], "listen": HOST, "port": free_port(), "allow": ["127.0.0.1/32"]}
    data["human"]["source"]["path"] = str((source.parent / data["human"]["source"]["path"]).resolve())
    if jack:
        for agent in data["agents"]:
            agent["output"] = {"type": "midi", "port": f"{CAPTURE}:in", "api": "jack"}
    path = work / "ensemble.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data


def start_jack() -> tuple[Any, Any] | None:
    """A private dummy-driver jackd and a capture port, or None when jackd is not installed."""
    if shutil.which("jackd") is None or shutil.which("jack_lsp") is None:
        return None
    from tests.support.jack import JackServer, MidiCapture

    server = JackServer.start()
    os.environ.update({"JACK_DEFAULT_SERVER": server.name, "JACK_NO_START_SERVER": "1"})
    return server, MidiCapture(client_name=CAPTURE)
