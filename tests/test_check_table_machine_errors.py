"""What only the machine can say stops a launch with one line naming the setting, not `--check`.

A port another program holds, a broker that is not there, a synth nobody runs: a valid file (from
support/check_files.py) passes --check, and the process that meets the problem names the setting,
the address and why, without a traceback or an errno.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.check_files import at, playable
from support.ensembles import ROOT, run_launcher, wait_for
from support.net_fixtures import free_port


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
