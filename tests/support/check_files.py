"""Ensemble files for the `--check` tests: one valid base, and the edits that break or vary it.

Each file under test is the base with one thing changed, so a refusal can only be about that change;
the edits (set, drop, write a file beside it, place parts on hosts) are shared by the table of
refusals, the accepted variations and the machine-side errors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.ensemble_procs import free_udp_block
from launcher.check import check_file
from support.ensembles import ROOT
from support.net_fixtures import free_port

MELODY = ROOT / "ensembles" / "melodies" / "ode_to_joy.mid"
BASE_PORT, CONTROL_PORT = 47400, 47300  # --check binds nothing, so fixed ports do here


def base() -> dict[str, Any]:
    """A valid ensemble: osc bus, a replayed human, three pattern agents on channels 1, 2 and 9."""
    return {
        "name": "checked",
        "tempo": 120,
        "meter": 4,
        "chords": "C | G7",
        "bus": {"transport": "osc", "osc": {"base_port": BASE_PORT}},
        "control": {"listen": "127.0.0.1", "port": CONTROL_PORT, "allow": ["127.0.0.1/32"]},
        "human": {"name": "melody", "channel": 0, "source": {"type": "file", "path": str(MELODY)}},
        "agents": [
            {"name": "bass", "channel": 1, "range": [28, 52],
             "engine": {"type": "pattern", "voicing": "root_fifth",
                        "rhythm": [{"beat": 0, "duration": 1.5}, {"beat": 2, "duration": 1.5}]},
             "output": {"type": "null"}},
            {"name": "piano", "channel": 2, "range": [52, 79],
             "engine": {"type": "pattern", "voicing": "chord", "rhythm": [{"beat": 0}, {"beat": 2.5}]},
             "output": {"type": "null"}},
            {"name": "drums", "channel": 9, "range": [35, 81],
             "engine": {"type": "pattern", "voicing": "drums",
                        "rhythm": [{"beat": 0, "duration": 0.25, "pitch": 36},
                                   {"beat": 1, "duration": 0.25, "pitch": 38},
                                   {"beat": 2, "duration": 0.25, "pitch": 36},
                                   {"beat": 3, "duration": 0.25, "pitch": 38}]},
             "output": {"type": "null"}},
        ],
    }  # fmt: skip


Edit = Callable[[dict[str, Any], Path], None]


@dataclass(frozen=True)
class Case:
    """One broken file: `edit` breaks the base dict (it may write files into the folder given), or
    `text` breaks the YAML text itself; `expect` is how the one line must start, after the path."""

    id: str
    expect: str
    edit: Edit | None = None
    text: Callable[[str], str | bytes] | None = None


def at(path: str, value: Any) -> Edit:
    """Set a dotted path (`agents.1.channel`) in the base."""

    def edit(d: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        fresh = copy.deepcopy(value)  # each file gets its own copy: a later edit must not reach the case
        if isinstance(node, list):
            node[int(last)] = fresh
        else:
            node[last] = fresh

    return edit


def each(*edits: Edit) -> Edit:
    """All the edits, in turn."""

    def edit(d: dict[str, Any], folder: Path) -> None:
        for e in edits:
            e(d, folder)

    return edit


def drop(path: str) -> Edit:
    """Remove a dotted path (`agents.0.engine.rhythm`) from the base."""

    def edit(d: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        node: Any = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        del node[last]

    return edit


def file_at(name: str, content: bytes | None, then: Callable[[Path], Edit]) -> Edit:
    """Write `name` in the YAML's folder (a folder when content is None), then edit with its path."""

    def edit(d: dict[str, Any], folder: Path) -> None:
        path = folder / name
        if content is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        then(path)(d, folder)

    return edit


def hosts(conductor: tuple[str, str], *agents: tuple[str, str]) -> Edit:
    """Place the conductor and agents 0.. on (host, address)."""
    edits = [at("conductor", {"host": conductor[0], "address": conductor[1]})]
    for i, (host, address) in enumerate(agents):
        edits += [at(f"agents.{i}.host", host), at(f"agents.{i}.address", address)]
    return each(*edits)


MQTT = at("bus", {"transport": "mqtt", "mqtt": {"host": "127.0.0.1"}, "osc": {"base_port": BASE_PORT}})
MQTT_BUS_SYNC = at("bus", {"transport": "mqtt", "sync": "bus", "mqtt": {"host": "127.0.0.1"}})
TWO_HOSTS = hosts(("stage", "198.18.0.2"), ("band", "198.18.0.3"), ("band", "198.18.0.3"),
                  ("band", "198.18.0.3"))  # fmt: skip
NO_PARTS = each(drop("human"), at("agents", []))
PEM = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"


def write(folder: Path, case: Case | None = None) -> Path:
    """The base, broken by `case` (if any), written to folder/ensemble.yaml."""
    data = base()
    if case is not None and case.edit is not None:
        case.edit(data, folder)
    text = yaml.safe_dump(data, sort_keys=False)
    out: str | bytes = case.text(text) if case is not None and case.text is not None else text
    path = folder / "ensemble.yaml"
    path.write_bytes(out.encode() if isinstance(out, str) else out)
    return path


def playable(folder: Path, *edits: Edit) -> Path:
    """The base with free ports, edited, written, and accepted by --check's rules."""
    data = base()
    data["bus"]["osc"]["base_port"] = free_udp_block(len(data["agents"]) + 1)
    data["control"]["port"] = free_port()
    for e in edits:
        e(data, folder)
    path = folder / "ensemble.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ens, problems = check_file(path)
    assert problems == [] and ens is not None
    return path
