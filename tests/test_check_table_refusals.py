"""`run_ensemble.py --check` refuses every file a run would trip on, each with one line naming the field.

A table of broken files, each made from one valid base (support/check_files.py) by breaking exactly
one thing: the whole table through launcher.check.check_file (what --check runs), a subset through
the real command line, and the shipped multi-host example with a loopback conductor. Kept apart from
the accepted variations so that the table, which is most of the file, reads as one list.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.check_files import (
    BASE_PORT,
    CONTROL_PORT,
    MQTT,
    NO_PARTS,
    PEM,
    TWO_HOSTS,
    Case,
    at,
    drop,
    each,
    file_at,
    write,
)
from support.ensembles import ROOT, run_launcher

from launcher.check import check_file

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
