"""`run_ensemble.py --check` refuses every file a run would trip on, each with one line naming the field.

A table of broken files, each made from one valid base by breaking exactly one thing: the whole
table through launcher.check.check_file (what --check runs), a subset through the real command line.
The base and a handful of valid variations are accepted, and each accepted one is started and plays.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.ensembles import ROOT, play_bars, run_launcher, wait_for
from support.net_fixtures import free_port
from support.netns import NetRig, netns_missing_reason

from bench.ensemble_procs import free_udp_block
from launcher.check import check_file

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
    def edit(d: dict[str, Any], folder: Path) -> None:
        for e in edits:
            e(d, folder)

    return edit


def drop(path: str) -> Edit:
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

CASES = [
    # -- ports ------------------------------------------------------------------------------------
    Case("base_port_past_65535", "bus.osc.base_port", at("bus.osc.base_port", 65533)),
    Case("base_port_last_agent_past", "bus.osc.base_port", at("bus.osc.base_port", 65534)),
    Case("base_port_zero", "bus.osc.base_port", at("bus.osc.base_port", 0)),
    Case("base_port_text", "bus.osc.base_port", at("bus.osc.base_port", "high")),
    Case("control_on_conductor_port", "control.port", at("control.port", BASE_PORT)),
    Case("control_on_agent_port", "control.port", at("control.port", BASE_PORT + 2)),
    Case("control_on_last_agent_port", "control.port", at("control.port", BASE_PORT + 3)),
    Case(
        "control_wildcard_on_bus_port",
        "control.port",
        each(at("control.listen", "any"), at("control.port", BASE_PORT + 1)),
    ),
    Case("control_on_sync_port_mqtt", "control.port", each(MQTT, at("control.port", BASE_PORT))),
    Case("control_port_too_high", "control.port", at("control.port", 70000)),
    Case("monitor_on_bus_port", "bus.osc.monitor_port", at("bus.osc.monitor_port", BASE_PORT)),
    Case("monitor_on_control_port", "bus.osc.monitor_port", at("bus.osc.monitor_port", CONTROL_PORT)),
    Case("reply_on_control_port", "control.reply_port", at("control.reply_port", CONTROL_PORT)),
    Case("reply_on_agent_port", "control.reply_port", at("control.reply_port", BASE_PORT + 1)),
    Case(
        "reply_on_monitor_port",
        "control.reply_port",
        each(at("bus.osc.monitor_port", 47350), at("control.reply_port", 47350)),
    ),
    Case(
        "osc_output_into_control",
        "agents.0.output.osc_port",
        at("agents.0.output", {"type": "osc", "host": "127.0.0.1", "osc_port": CONTROL_PORT}),
    ),
    Case(
        "osc_output_into_bus",
        "agents.1.output.osc_port",
        at("agents.1.output", {"type": "osc", "host": "127.0.0.1", "osc_port": BASE_PORT}),
    ),
    Case(
        "osc_output_port_too_high",
        "agents.0.output.osc_port",
        at("agents.0.output", {"type": "osc", "osc_port": 65536}),
    ),
    Case("mqtt_port_zero", "bus.mqtt.port", each(MQTT, at("bus.mqtt.port", 0))),
    # -- addresses --------------------------------------------------------------------------------
    Case("conductor_address_name", "conductor.address", at("conductor.address", "localhost")),
    Case("conductor_address_empty", "conductor.address", at("conductor.address", "")),
    Case("conductor_address_bad_ip", "conductor.address", at("conductor.address", "300.1.1.1")),
    Case("agent_address_name", "agents.1.address", at("agents.1.address", "piano.local")),
    Case("human_address_name", "human.address", at("human.address", "keys")),
    Case("agent_address_other_ip_version", "agents.0.address", at("agents.0.address", "::1")),
    Case("control_listen_name", "control.listen", at("control.listen", "stage-left")),
    Case("control_allow_not_a_network", "control.allow", at("control.allow", ["everyone"])),
    Case("mqtt_host_empty", "bus.mqtt.host", each(MQTT, at("bus.mqtt.host", ""))),
    Case("mqtt_host_unresolvable", "bus.mqtt.host", each(MQTT, at("bus.mqtt.host", "no-such-host.invalid"))),
    Case(
        "osc_output_host_unresolvable",
        "agents.2.output.host",
        at("agents.2.output", {"type": "osc", "host": "no-such-host.invalid", "osc_port": 9000}),
    ),
    # -- MQTT settings ----------------------------------------------------------------------------
    Case(
        "tls_ca_missing",
        "bus.mqtt.tls.ca_file",
        each(MQTT, at("bus.mqtt.tls", {"ca_file": "/nonexistent/ca.crt"})),
    ),
    Case(
        "tls_ca_is_a_folder",
        "bus.mqtt.tls.ca_file",
        each(MQTT, file_at("certs", None, lambda p: at("bus.mqtt.tls", {"ca_file": str(p)}))),
    ),
    Case(
        "tls_cert_without_key",
        "bus.mqtt.tls.key_file",
        each(
            MQTT,
            file_at("c.pem", PEM, lambda p: at("bus.mqtt.tls", {"ca_file": str(p), "cert_file": str(p)})),
        ),
    ),
    Case(
        "tls_key_missing",
        "bus.mqtt.tls.key_file",
        each(
            MQTT,
            file_at(
                "c.pem",
                PEM,
                lambda p: at(
                    "bus.mqtt.tls",
                    {"ca_file": str(p), "cert_file": str(p), "key_file": str(p.parent / "gone.key")},
                ),
            ),
        ),
    ),
    Case("mqtt_password_without_user", "bus.mqtt.password", each(MQTT, at("bus.mqtt.password", "secret"))),
    Case("mqtt_keepalive_zero", "bus.mqtt.keepalive", each(MQTT, at("bus.mqtt.keepalive", 0))),
    # -- channels ---------------------------------------------------------------------------------
    Case("two_agents_one_channel", "agents.1.channel", at("agents.1.channel", 1)),
    Case("agent_on_human_channel", "agents.0.channel", at("agents.0.channel", 0)),
    Case("third_agent_on_second_channel", "agents.2.channel", at("agents.2.channel", 2)),
    Case("human_on_drums_channel", "agents.2.channel", at("human.channel", 9)),
    Case(
        "share_on_the_other_part",
        "agents.1.channel",
        each(at("agents.1.channel", 1), at("agents.0.share_channel", True)),
    ),
    Case("share_channel_not_a_bool", "agents.0.share_channel", at("agents.0.share_channel", "please")),
    Case("channel_16", "agents.0.channel", at("agents.0.channel", 16)),
    Case("default_channels_collide", "agents.0.channel", drop("agents.0.channel")),
    # -- plays nothing ----------------------------------------------------------------------------
    Case("empty_file", "agents", text=lambda _: ""),
    Case("comment_only", "agents", text=lambda _: "# nothing here yet\n"),
    Case("name_only", "agents", text=lambda _: "name: quiet\n"),
    Case("no_agents_no_human", "agents", NO_PARTS),
    Case("no_agents_silent_human", "agents", each(at("agents", []), at("human.source", {"type": "none"}))),
    # -- rhythm -----------------------------------------------------------------------------------
    Case("hit_on_beat_4_of_4", "agents.1.engine.rhythm.1.beat", at("agents.1.engine.rhythm.1.beat", 4)),
    Case("hit_past_a_3_meter", "agents.2.engine.rhythm.3.beat", at("meter", 3)),
    Case("hit_at_4_5", "agents.0.engine.rhythm.0.beat", at("agents.0.engine.rhythm.0.beat", 4.5)),
    Case("hit_negative", "agents.0.engine.rhythm.0.beat", at("agents.0.engine.rhythm.0.beat", -1)),
    Case(
        "hit_zero_duration", "agents.0.engine.rhythm.0.duration", at("agents.0.engine.rhythm.0.duration", 0)
    ),
    # -- files ------------------------------------------------------------------------------------
    Case("melody_missing", "human.source.path", at("human.source.path", "/nonexistent/tune.mid")),
    Case("melody_relative_missing", "human.source.path", at("human.source.path", "melodies/ode_to_joy.mid")),
    Case(
        "melody_is_a_folder",
        "human.source.path",
        file_at("tunes", None, lambda p: at("human.source.path", "tunes")),
    ),
    Case(
        "melody_not_midi",
        "human.source.path",
        file_at("tune.mid", b"not a MIDI file\n", lambda p: at("human.source.path", "tune.mid")),
    ),
    Case(
        "melody_without_notes",
        "human.source.path",
        file_at(
            "empty.mid",
            b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00",
            lambda p: at("human.source.path", str(p)),
        ),
    ),
    Case("file_source_without_path", "human.source.path", at("human.source", {"type": "file"})),
    Case(
        "model_folder_missing",
        "agents.0.engine.model",
        at("agents.0.engine", {"type": "onnx", "model": "/nonexistent/model"}),
    ),
    Case(
        "model_folder_relative_missing",
        "agents.1.engine.model",
        at("agents.1.engine", {"type": "onnx", "model": "models/mine"}),
    ),
    Case(
        "model_without_onnx",
        "agents.0.engine.model",
        file_at(
            "m/config.json",
            b'{"tokenizer": {"version": "v2", "optimise_midi": true}}',
            lambda p: at("agents.0.engine", {"type": "onnx", "model": str(p.parent)}),
        ),
    ),
    Case(
        "soundfont_missing",
        "agents.0.output.soundfont",
        at("agents.0.output", {"type": "fluidsynth", "soundfont": "/nonexistent/gm.sf2"}),
    ),
    Case(
        "soundfont_is_a_folder",
        "agents.0.output.soundfont",
        file_at("sf", None, lambda p: at("agents.0.output", {"type": "fluidsynth", "soundfont": "sf"})),
    ),
    Case("not_utf8", "not UTF-8", text=lambda t: t.encode() + b"# caf\xe9\n"),
    Case(
        "key_twice_in_a_part",
        "agents.0.channel: written twice",
        text=lambda t: t.replace("  channel: 1\n", "  channel: 1\n  channel: 5\n", 1),
    ),
    Case("key_twice_at_top", "tempo: written twice", text=lambda t: t + "tempo: 90\n"),
    Case("yaml_syntax", "YAML syntax", text=lambda t: t + "agents: [\n"),
    # -- outputs ----------------------------------------------------------------------------------
    Case("midi_output_without_port", "agents.0.output.port", at("agents.0.output", {"type": "midi"})),
    Case(
        "osc_output_without_port",
        "agents.1.output.osc_port",
        at("agents.1.output", {"type": "osc", "host": "127.0.0.1"}),
    ),
    Case("output_type_unknown", "agents.0.output.type", at("agents.0.output.type", "speaker")),
    Case("midi_clock_without_port", "conductor.midi_clock.port", at("conductor.midi_clock", {})),
    # -- several machines -------------------------------------------------------------------------
    Case(
        "two_hosts_loopback_conductor",
        "conductor.address",
        each(TWO_HOSTS, at("conductor.address", "127.0.0.1")),
    ),
    Case(
        "two_hosts_loopback_agent", "agents.1.address", each(TWO_HOSTS, at("agents.1.address", "127.0.0.1"))
    ),
    Case(
        "two_hosts_other_loopback_agent",
        "agents.0.address",
        each(TWO_HOSTS, at("agents.0.address", "127.0.0.2")),
    ),
    Case(
        "two_hosts_mqtt_udp_sync_loopback_conductor",
        "conductor.address",
        each(
            TWO_HOSTS,
            at("conductor.address", "127.0.0.1"),
            at("bus", {"transport": "mqtt", "mqtt": {"host": "198.18.0.1"}}),
        ),
    ),
    Case(
        "two_hosts_mqtt_udp_sync_loopback_agent",
        "agents.2.address",
        each(
            TWO_HOSTS,
            at("agents.2.address", "127.0.0.1"),
            at("bus", {"transport": "mqtt", "mqtt": {"host": "198.18.0.1"}}),
        ),
    ),
    # -- the rest of the schema -------------------------------------------------------------------
    Case("tempo_zero", "tempo", at("tempo", 0)),
    Case("meter_zero", "meter", at("meter", 0)),
    Case("unknown_field", "agents.0.colour", at("agents.0.colour", "blue")),
    Case("unknown_chord", "chords", at("chords", "C | H7")),
    Case("names_repeated", "agents", at("agents.1.name", "bass")),
    Case("top_is_a_list", "(top)", text=lambda _: "- name: a\n"),
]


def write(folder: Path, case: Case | None = None) -> Path:
    data = base()
    if case is not None and case.edit is not None:
        case.edit(data, folder)
    text = yaml.safe_dump(data, sort_keys=False)
    out: str | bytes = case.text(text) if case is not None and case.text is not None else text
    path = folder / "ensemble.yaml"
    path.write_bytes(out.encode() if isinstance(out, str) else out)
    return path


def test_the_table_is_broad() -> None:
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_base_is_accepted(tmp_path: Path) -> None:
    ens, problems = check_file(write(tmp_path))
    assert problems == [] and ens is not None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_each_broken_file_is_one_line_naming_the_field(case: Case, tmp_path: Path) -> None:
    path = write(tmp_path, case)
    ens, problems = check_file(path)
    assert ens is None
    assert len(problems) == 1, problems
    [line] = problems
    assert "\n" not in line
    assert line.startswith(f"{path}: {case.expect}"), line


def control_on_the_bus_port_elsewhere(d: dict[str, Any], _: Path) -> None:
    """The control surface on 127.0.0.2, on the port the conductor's bus has on 127.0.0.1."""
    d["control"].update(listen="127.0.0.2", port=d["bus"]["osc"]["base_port"])


ACCEPTED: dict[str, Edit] = {
    "two_hosts_with_network_addresses": TWO_HOSTS,
    "two_hosts_over_mqtt": each(TWO_HOSTS, at("bus", {"transport": "mqtt", "mqtt": {"host": "198.18.0.1"}})),
    # several host names on one machine: loopback is fine where no UDP crosses between them
    "two_host_names_one_machine_mqtt_bus_sync": each(
        hosts(("stage", "127.0.0.1"), ("band", "127.0.0.1"), ("band", "127.0.0.1"), ("band", "127.0.0.1")),
        MQTT_BUS_SYNC,
    ),
    "control_on_another_address": control_on_the_bus_port_elsewhere,
    "shared_channel": each(at("agents.1.channel", 1), at("agents.1.share_channel", True)),
    "default_rhythm_in_a_short_meter": each(
        at("meter", 2),
        drop("agents.0.engine.rhythm"),
        at("agents.1.engine.rhythm", [{"beat": 0}]),
        at("agents.2.engine.rhythm", [{"beat": 1.5, "pitch": 42}]),
    ),
    "human_only": at("agents", []),
    "ipv6_bus": each(at("conductor.address", "::1"), *(at(f"agents.{i}.address", "::1") for i in range(3))),
    "osc_output_on_a_named_host": at(
        "agents.0.output", {"type": "osc", "host": "localhost", "osc_port": 9000}
    ),
    "virtual_midi_output": at("agents.0.output", {"type": "midi", "virtual": True}),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_valid_variations_are_accepted(name: str, tmp_path: Path) -> None:
    path = write(tmp_path, Case(name, "", ACCEPTED[name]))
    ens, problems = check_file(path)
    assert problems == [] and ens is not None


CLI_CASES = [
    "control_on_agent_port",
    "base_port_past_65535",
    "agent_address_name",
    "two_agents_one_channel",
    "empty_file",
    "hit_on_beat_4_of_4",
    "melody_relative_missing",
    "not_utf8",
    "key_twice_in_a_part",
    "osc_output_without_port",
    "two_hosts_loopback_conductor",
    "tls_ca_missing",
]


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_check_flag_refuses_with_exit_1_and_one_line(case_id: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == case_id)
    path = write(tmp_path, case)
    proc = run_launcher([str(path), "--check"], timeout=60)
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: {case.expect}"), lines[0]
    assert proc.stdout == ""


def test_check_flag_accepts_the_base(tmp_path: Path) -> None:
    proc = run_launcher([str(write(tmp_path)), "--check"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")


# -- accepted variations start and play ------------------------------------------------------------------
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


def played(report: dict[str, Any], parts: tuple[str, ...] = ("bass", "piano", "drums")) -> None:
    assert report["stuck_notes"] == 0
    for name in parts:
        assert report["parts"][name]["notes"] > 0, (name, report["parts"][name])


def every_part(path: Path) -> tuple[str, ...]:
    """The names of the parts a file plays: its agents, and its human where it has a source."""
    data = yaml.safe_load(path.read_text())
    human = data.get("human") or {}
    heard = [human["name"]] if human.get("source", {}).get("type", "none") != "none" else []
    return (*(a["name"] for a in data.get("agents", [])), *heard)


VARIANTS: dict[str, list[Edit]] = {
    "base": [],
    "shares_the_human_channel": [at("agents.0.channel", 0), at("agents.0.share_channel", True)],
    "meter_3": [
        at("meter", 3),
        at("agents.2.engine.rhythm", [{"beat": 0, "pitch": 36}, {"beat": 2.5, "pitch": 38}]),
    ],
    "no_human": [drop("human")],
    "relative_melody": [
        file_at(
            "melodies/tune.mid", MELODY.read_bytes(), lambda p: at("human.source.path", "melodies/tune.mid")
        )
    ],
    # and every accepted variation that plays on one machine with nothing else running
    **{name: [ACCEPTED[name]] for name in ("control_on_another_address", "shared_channel",
                                           "default_rhythm_in_a_short_meter", "human_only", "ipv6_bus")},
}  # fmt: skip

# The accepted variations that need more than one launcher or a MIDI system, and the test that starts
# each (so that nothing --check accepts is left unstarted).
STARTED_BY = {
    "two_hosts_with_network_addresses": "test_accepted_two_host_file_plays_on_both",
    "two_hosts_over_mqtt": "test_multihost.py::test_mqtt_ensemble_across_four_hosts",
    "two_host_names_one_machine_mqtt_bus_sync": "test_accepted_host_names_on_one_machine_play_over_mqtt",
    "osc_output_on_a_named_host": "test_accepted_osc_output_plays_into_its_synth",
    "virtual_midi_output": "test_accepted_virtual_midi_output_plays",
}


def test_every_accepted_variation_is_started() -> None:
    """A variation --check accepts that no test starts could fail at start-up unnoticed."""
    started = {name for name in ACCEPTED if name in VARIANTS and VARIANTS[name] == [ACCEPTED[name]]}
    assert set(ACCEPTED) - started == set(STARTED_BY), sorted(set(ACCEPTED) - started - set(STARTED_BY))
    for where in STARTED_BY.values():
        module, _, test = where.rpartition("::")
        text = (ROOT / "tests" / module).read_text() if module else ""
        assert (f"def {test}(" in text) if module else callable(globals().get(test)), where


def ipv6_missing_reason() -> str | None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback (::1) here: {exc}"
    return None


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_accepted_variation_plays(name: str, tmp_path: Path) -> None:
    if name == "ipv6_bus" and (reason := ipv6_missing_reason()) is not None:
        pytest.skip(reason)
    path = playable(tmp_path, *VARIANTS[name])
    played(play_bars(path, 1, tmp_path, timeout=90), every_part(path))


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_accepted_osc_output_plays_into_its_synth(host: str, tmp_path: Path) -> None:
    """An osc output with its osc_port (the synth's host an address or a name): the notes arrive at a
    UDP socket standing in for the synth."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as synth:
        synth.bind(("127.0.0.1", 0))
        synth.settimeout(0.2)
        port = synth.getsockname()[1]
        path = playable(tmp_path, at("agents.0.output", {"type": "osc", "host": host, "osc_port": port}))
        played(play_bars(path, 1, tmp_path, timeout=90))
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(synth.recv(65536))
    assert any(b"/note" in g for g in got)


@pytest.mark.network
@pytest.mark.slow
def test_accepted_mqtt_bus_plays(tmp_path: Path, mosquitto: Any) -> None:
    path = playable(
        tmp_path,
        at("bus.transport", "mqtt"),
        at("bus.mqtt", {"host": mosquitto.host, "port": mosquitto.port}),
    )
    played(play_bars(path, 1, tmp_path, timeout=90))


@pytest.mark.network
@pytest.mark.slow
def test_accepted_virtual_midi_output_plays(tmp_path: Path, jack_server: Any) -> None:
    """A virtual MIDI port needs a MIDI system to create it in (here JACK's dummy driver)."""
    path = playable(tmp_path, ACCEPTED["virtual_midi_output"])
    played(play_bars(path, 1, tmp_path, timeout=90), every_part(path))


@pytest.mark.network
@pytest.mark.slow
def test_accepted_host_names_on_one_machine_play_over_mqtt(tmp_path: Path, mosquitto: Any) -> None:
    """Two `--host` launchers on one machine, clock sync through the broker: both halves play."""
    path = playable(
        tmp_path,
        ACCEPTED["two_host_names_one_machine_mqtt_bus_sync"],
        at("bus.mqtt", {"host": mosquitto.host, "port": mosquitto.port}),
    )
    band_report = tmp_path / "report-band.json"
    band = subprocess.Popen(
        [sys.executable, str(ROOT / "run_ensemble.py"), str(path), "--host", "band", "--quiet",
         "--report", str(band_report)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stage = play_bars(path, 2, tmp_path, "--host", "stage", timeout=90)
        if band.poll() is None:  # agent-only launchers play on until stopped
            band.send_signal(signal.SIGTERM)
        _, err = band.communicate(timeout=30)
        assert band.returncode == 0, err
    finally:
        if band.poll() is None:
            band.kill()
            band.wait()
    played(stage, ("melody",))
    played(json.loads(band_report.read_text()), ("bass", "piano", "drums"))


@pytest.mark.network
@pytest.mark.slow
def test_a_launch_names_a_taken_port(tmp_path: Path) -> None:
    """What only the machine can say (a port another program holds) stops the launch, not --check."""
    path = playable(tmp_path)
    data = yaml.safe_load(path.read_text())
    taken = data["bus"]["osc"]["base_port"] + 2
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", taken))
        assert run_launcher([str(path), "--check"], timeout=60).returncode == 0
        proc = run_launcher([str(path), "--bars", "1", "--quiet"], timeout=60)
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: bus.osc.base_port: cannot listen on UDP 127.0.0.1:{taken}"), line
    assert "agent piano" in line


# -- the shipped multi-host example: --check on the band machine ---------------------------------------
MULTIHOST = ROOT / "ensembles" / "multihost.yaml"


def _check_lines(path: Path, *flags: str) -> tuple[int, list[str]]:
    """--check's exit status and lines, less the one a `cpu` install gives for the file's MIDI ports."""
    proc = run_launcher([str(path), "--check", *flags], timeout=60)
    lines = [ln for ln in proc.stderr.strip().splitlines() if "MIDI ports need the 'midi' extra" not in ln]
    return proc.returncode, lines


@pytest.mark.parametrize("host", [None, "band"])
@pytest.mark.parametrize("conductor_at", ["127.0.0.1", None], ids=["loopback", "left_out"])
def test_check_refuses_the_shipped_multihost_file_with_a_loopback_conductor(
    tmp_path: Path, conductor_at: str | None, host: str | None
) -> None:
    """ensembles/multihost.yaml as a user might leave it: conductor.address at loopback (or not given,
    so the default 127.0.0.1), checked on the band machine or with every host. The band's agents would
    ping their own machine and play on an unsynchronised clock, so --check says so, naming the field."""
    flags = ["--host", host] if host else []
    data = yaml.safe_load(MULTIHOST.read_text())
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(yaml.safe_dump(data, sort_keys=False))
    rc, lines = _check_lines(shipped, *flags)
    assert lines == [], lines  # the file as shipped passes (on a `cpu` install, but for its MIDI ports)
    if conductor_at is None:
        del data["conductor"]["address"]
    else:
        data["conductor"]["address"] = conductor_at
    broken = tmp_path / "band.yaml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))
    rc, lines = _check_lines(broken, *flags)
    assert rc == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {broken}: conductor.address: 127.0.0.1 is a loopback address"), lines


# -- several machines: two launchers in two network namespaces -------------------------------------------
@pytest.fixture
def rig() -> Iterator[NetRig]:
    reason = netns_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with NetRig(("stage", "band")) as r:
        yield r
    assert not r.leftovers(), f"namespaces left behind: {r.leftovers()}"


@pytest.mark.netns
@pytest.mark.slow
def test_accepted_two_host_file_plays_on_both(tmp_path: Path, rig: NetRig) -> None:
    stage, band = rig.host_ip("stage"), rig.host_ip("band")
    path = playable(tmp_path, hosts(("stage", stage), ("band", band), ("band", band), ("stage", stage)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }

    def launch(host: str) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            str(ROOT / "run_ensemble.py"),
            str(path),
            "--host",
            host,
            "--quiet",
            "--report",
            str(tmp_path / f"report-{host}.json"),
        ]
        if host == "stage":
            argv += ["--bars", "2"]
        return rig.popen(host, argv, cwd=ROOT, env=env, stderr=subprocess.PIPE)

    band_proc = launch("band")
    stage_proc = launch("stage")
    try:
        _, err = stage_proc.communicate(timeout=90)
        assert stage_proc.returncode == 0, err.decode()
        band_proc.send_signal(signal.SIGTERM)
        _, err = band_proc.communicate(timeout=30)
        assert band_proc.returncode == 0, err.decode()
    finally:
        for p in (stage_proc, band_proc):
            if p.poll() is None:
                p.kill()
                p.wait()
    wait_for(lambda: (tmp_path / "report-band.json").exists(), 5, "the band's report")
    played(json.loads((tmp_path / "report-band.json").read_text()), ("bass", "piano"))
    played(json.loads((tmp_path / "report-stage.json").read_text()), ("drums",))


# -- what a process says when the machine, not the file, is the problem ---------------------------------
def process(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, stderr=out)


@pytest.mark.network
@pytest.mark.parametrize("who", ["conductor", "bass"])
def test_a_taken_port_is_named_with_its_setting(who: str, tmp_path: Path) -> None:
    path = playable(tmp_path)
    data = yaml.safe_load(path.read_text())
    taken = data["control"]["port"] if who == "conductor" else data["bus"]["osc"]["base_port"] + 1
    log = tmp_path / "err.log"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", taken))
        args = [str(path), "--bars", "1"] if who == "conductor" else [str(path), who]
        proc = process("conductor" if who == "conductor" else "agents", *args, log=log)
        assert proc.wait(timeout=60) == 1
    setting = "control.port" if who == "conductor" else "bus.osc.base_port + 1 (agent bass)"
    name = "conductor" if who == "conductor" else "agent bass"
    [line] = [ln for ln in log.read_text().splitlines() if ln.startswith("error:")]
    assert line == (
        f"error: {name}: {setting}: cannot listen on UDP 127.0.0.1:{taken}: "
        "the port is in use (another ensemble still playing?)"
    )


@pytest.mark.network
def test_no_broker_is_named_with_its_address(tmp_path: Path) -> None:
    """No broker on bus.mqtt's port: the line says bus.mqtt, the address and why, without `[Errno 111]`."""
    port = free_port()  # nothing listens here
    path = playable(
        tmp_path, at("bus.transport", "mqtt"), at("bus.mqtt", {"host": "127.0.0.1", "port": port})
    )
    log = tmp_path / "err.log"
    proc = process("agents", str(path), "bass", log=log)
    try:
        wait_for(lambda: "bus.mqtt" in log.read_text(), 30, "the agent's MQTT warning")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    [line] = [ln for ln in log.read_text().splitlines() if "bus.mqtt" in ln][:1]
    assert line.endswith(f"bus.mqtt: cannot connect to 127.0.0.1:{port}: Connection refused"), line
    assert "Errno" not in log.read_text()


@pytest.mark.network
@pytest.mark.slow
def test_an_osc_output_nobody_listens_to_is_named(tmp_path: Path) -> None:
    """The synth is not running: the agent's line names its output and the host:port it sent to."""
    port = free_port()  # nothing listens here
    path = playable(tmp_path, at("agents.0.output", {"type": "osc", "host": "127.0.0.1", "osc_port": port}))
    proc = run_launcher([str(path), "--bars", "1", "--quiet"], timeout=90)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: agent bass: ")]
    assert lines and all(
        ln
        == f"error: agent bass: agents.bass.output (osc): OSC output 127.0.0.1:{port}: Connection refused; "
        "is the synth listening there?"
        for ln in lines
    ), proc.stderr
