"""Every variation `--check` accepts is accepted, and starts and plays.

A file --check passes but a run cannot start would be worse than a refusal, so each accepted
variation of the base (support/check_files.py) is also played: most through one launcher, the rest
(two hosts, a broker, a MIDI system) by a test of their own, and a check that none is left unstarted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.check_files import (
    MELODY,
    MQTT_BUS_SYNC,
    TWO_HOSTS,
    Case,
    Edit,
    at,
    drop,
    each,
    file_at,
    hosts,
    playable,
    write,
)
from support.ensembles import ROOT, play_bars, wait_for
from support.netns import NetRig, netns_missing_reason

from launcher.check import check_file


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
    "two_hosts_over_mqtt": "test_multihost_ensemble.py::test_mqtt_ensemble_across_four_hosts",
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
