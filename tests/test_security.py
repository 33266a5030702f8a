"""Keeping strangers out: the allowlist, what the processes bind, and MQTT auth, TLS and ACLs.

docs/security.md is the recipe these tests hold to: a stranger on the venue network cannot steer
(and is counted per address), nothing listens beyond the addresses the YAML names, and over MQTT
credentials, TLS and a broker ACL decide who may publish what.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pythonosc.osc_message_builder import OscMessageBuilder
from support.broker import Mosquitto
from support.ensembles import DEFAULT, ROOT, read_json, run_launcher, wait_for, write_ensemble
from support.netns import NetRig, netns_missing_reason

from bench.fuzz import Ensemble
from protocol import codec
from protocol.ensemble import load_ensemble
from protocol.messages import Control
from protocol.timeline import Timeline

ENS = "demo"
DOCS_ACL = ROOT / "docs" / "security.md"


# -- helpers ---------------------------------------------------------------------------------------
def osc(address: str, *args: tuple[str, Any]) -> bytes:
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    return b.build().dgram


def descendants(pid: int) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [
                int(k)
                for t in Path(f"/proc/{p}/task").iterdir()
                for k in (t / "children").read_text().split()
            ]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def _ip(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))


def listening(pids: list[int]) -> set[tuple[str, str, int]]:
    """(protocol, address, port) of every bound UDP socket and listening TCP socket the processes hold,
    read from /proc in each process's own network namespace (what `ss -lunp`/`ss -ltnp` show)."""
    found = set()
    for pid in pids:
        try:
            inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
                      if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}  # fmt: skip
            tables = {
                proto: Path(f"/proc/{pid}/net/{proto}").read_text()
                for proto in ("udp", "udp6", "tcp", "tcp6")
            }
        except OSError:
            continue  # the process ended meanwhile
        for proto, table in tables.items():
            for line in table.splitlines()[1:]:
                f = line.split()
                hex_ip, hex_port = f[1].split(":")
                if f[9] in inodes and int(hex_port, 16) and (proto.startswith("udp") or f[3] == "0A"):
                    found.add((proto, _ip(hex_ip), int(hex_port, 16)))
    return found


def launch(yaml_path: Path, log: Path, *extra: str, wrap: Callable[[list[str]], list[str]] = list,
           ) -> subprocess.Popen[bytes]:  # fmt: skip
    argv = [sys.executable, str(ROOT / "run_ensemble.py"), str(yaml_path), "--quiet", *extra]
    with open(log, "wb") as out:
        return subprocess.Popen(wrap(argv), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def agents_named(*names: str) -> list[dict[str, Any]]:
    return [a for a in yaml.safe_load(DEFAULT.read_text())["agents"] if a["name"] in names]


# -- 1. a stranger on the network cannot steer -------------------------------------------------------
@pytest.fixture
def rig() -> Iterator[NetRig]:
    reason = netns_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with NetRig(["stage", "allowed", "stranger"]) as r:
        yield r
    assert not r.leftovers()


@pytest.mark.netns
@pytest.mark.slow
def test_a_stranger_is_refused_and_counted_while_the_allowed_host_steers(rig: NetRig, tmp_path: Path) -> None:
    """Control surface on the stage's own address, `control.allow` = the allowed host's /32. The
    stranger's /stop and tempo (to the control port, and as bus `Control` messages to the
    conductor's bus port) are refused and counted under its address; the allowed host's tempo
    lands; the band never stops; every socket is bound to the stage's address only."""
    stage, allowed, stranger = (rig.host_ip(h) for h in ("stage", "allowed", "stranger"))
    path = write_ensemble(tmp_path, {"agents": agents_named("bass", "piano"), "conductor": {"address": stage},
                                     "control": {"listen": stage, "allow": [f"{allowed}/32"]}})  # fmt: skip
    data = yaml.safe_load(path.read_text())
    for part in [*data["agents"], data["human"]]:
        part["address"] = stage
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    ctl, bus = (stage, int(data["control"]["port"])), (stage, int(data["bus"]["osc"]["base_port"]))
    ens = Ensemble(path, tmp_path / "stats", ("bass", "piano"))
    ens.wrap = lambda argv: rig.command("stage", argv)
    try:
        ens.start()
        assert ens.proc is not None
        bound = listening(descendants(ens.proc.pid))
        assert {a for _, a, _ in bound} == {stage}, bound  # nothing on 0.0.0.0, nor even on lo
        assert ("udp", *ctl) in bound and ("udp", *bus) in bound

        def send(datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for d, to in datagrams:
                    s.sendto(d, to)

        hostile = [(osc(f"/barcelona/{ENS}/stop"), ctl), (osc(f"/barcelona/{ENS}/tempo", ("f", 60.0)), ctl),
                   (osc(f"/barcelona/{ENS}/agent/*/mute", ("f", 1.0)), ctl),
                   (codec_osc(Control("stop", 1.0)), bus),
                   (codec_osc(Control("tempo", 60.0)), bus)]  # fmt: skip
        notes_before = ens.agent("bass").get("notes", 0)
        rig.call_in("stranger", send, hostile)
        wait_for(lambda: ens.conductor().get("refused", {}).get(stranger, 0) >= len(hostile), 10, "refusals")
        rig.call_in("allowed", send, [(osc(f"/barcelona/{ENS}/tempo", ("f", 140.0)), ctl)])
        wait_for(lambda: ens.conductor().get("tempo") == 140.0, 15, "the allowed tempo change")
        wait_for(lambda: ens.agent("bass").get("notes", 0) > notes_before + 4, 15, "the band playing on")
        cond, state = ens.conductor(), read_json(tmp_path / "stats" / "state.json")
        assert cond["playing"] and cond["refused"] == {stranger: len(hostile)}, cond["refused"]
        assert cond["invalid_reasons"].get("refused") == len(hostile)
        assert state["params_epoch"] == 0 and not any(m["mute"] for m in state["mix"].values())
        rc, err = ens.stop()
    finally:
        ens.stop()
    assert rc == 0 and "Traceback" not in err, err[-3000:]


def codec_osc(msg: Any) -> bytes:
    address, args = codec.to_osc(ENS, msg)
    return osc(address, *args)


# -- 2. nothing listens beyond what the YAML names ------------------------------------------------------
@pytest.mark.network
@pytest.mark.slow
def test_nothing_listens_beyond_the_addresses_the_yaml_names(tmp_path: Path) -> None:
    """The default ensemble, running: every socket its processes (launcher and children) hold is
    bound to an address the YAML names (loopback) and to exactly the bus and control ports; nothing
    on 0.0.0.0, no TCP listener, no IPv6."""
    path = write_ensemble(tmp_path)
    cfg = load_ensemble(path)
    base, n = cfg.bus.osc.base_port, len(cfg.agents)
    named = {cfg.control.listen, cfg.conductor.address, *(a.address for a in cfg.agents)}
    ens = Ensemble(path, tmp_path / "stats", tuple(a.name for a in cfg.agents))
    try:
        ens.start()
        assert ens.proc is not None
        bound = listening(descendants(ens.proc.pid))
    finally:
        ens.stop()
    assert named == {"127.0.0.1"}
    assert {a for _, a, _ in bound} <= named, bound
    assert {p for _, _, p in bound} == {cfg.control.port, *range(base, base + n + 1)}, bound
    assert not [b for b in bound if b[0] != "udp"], "no TCP listener and no IPv6 socket"


# -- 3, 4. MQTT with a password, and over TLS ------------------------------------------------------------
def mqtt_yaml(tmp: Path, mqtt: dict[str, Any], name: str = "ensemble.yaml") -> Path:
    sub = tmp / name.removesuffix(".yaml")
    sub.mkdir()
    return write_ensemble(
        sub, {"agents": agents_named("bass", "piano"), "bus": {"transport": "mqtt", "mqtt": mqtt}}
    )


def plays(tmp: Path, yaml_path: Path) -> dict[str, Any]:
    report = tmp / "report.json"
    result = run_launcher([str(yaml_path), "--bars", "2", "--quiet", "--report", str(report)], timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    parts = read_json(report)["parts"]
    assert all(parts[a]["notes"] > 0 for a in ("bass", "piano")), parts
    return parts


@pytest.mark.network
@pytest.mark.slow
def test_mqtt_with_a_password_plays_and_a_wrong_one_is_a_clear_error(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    """Right credentials: it plays. Wrong ones: every process says so in one line (no traceback) and
    exits 1; the launcher retries a process that fails at start twice, then gives up and exits 1."""
    broker = mosquitto_factory(allow_anonymous=False, users={"band": "s3cret"})
    mqtt = {"host": broker.host, "port": broker.port, "username": "band"}
    plays(tmp_path, mqtt_yaml(tmp_path, {**mqtt, "password": "s3cret"}, "good.yaml"))
    log = tmp_path / "wrong.log"
    proc = launch(mqtt_yaml(tmp_path, {**mqtt, "password": "wrong"}, "wrong.yaml"), log)
    try:
        assert proc.wait(timeout=90) == 1
        text = log.read_text(errors="replace")
    finally:
        stop(proc)
    assert "keeps failing at start; giving up" in text, text[-3000:]
    lines = text.splitlines()
    for who in ("agent bass", "agent piano", "conductor"):
        assert any(ln.startswith(f"error: {who}: bus.mqtt: cannot connect to {broker.host}:{broker.port}: ")
                   and "Not authorized" in ln for ln in lines), text  # fmt: skip
    assert "Traceback" not in text, text[-3000:]


@pytest.mark.network
@pytest.mark.slow
def test_mqtt_over_tls_plays(mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path) -> None:
    broker = mosquitto_factory(tls=True)
    assert broker.tls_port is not None
    plays(
        tmp_path,
        mqtt_yaml(
            tmp_path, {"host": "127.0.0.1", "port": broker.tls_port, "tls": {"ca_file": broker.ca_file}}
        ),
    )


# -- 5. the broker's ACL: a display may listen, never steer ------------------------------------------------
def documented_acl() -> str:
    """The ACL text from docs/security.md (the one fenced block after 'acl_file'), so the test runs
    exactly what the docs tell a user to install."""
    text = DOCS_ACL.read_text()
    block = text.split("```text\n# mosquitto acl_file", 1)[1].split("```", 1)[0]
    return "# mosquitto acl_file" + block


class Client:
    """A paho MQTT v5 client that records PUBACK reason codes (v5 says *why* a publish was refused)."""

    def __init__(self, broker: Mosquitto, user: str, password: str) -> None:
        import paho.mqtt.client as paho

        self.acks: dict[int, Any] = {}
        self.timelines: list[Timeline] = []
        self.cond = threading.Condition()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"test-{user}", protocol=paho.MQTTv5)
        self.c.username_pw_set(user, password)
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self.cond:
            self.acks[mid] = reason
            self.cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        decoded = codec.from_mqtt(ENS, msg.topic, msg.payload)
        with self.cond:
            self.timelines.append(decoded)

    def publish_control(self, ctl: Control) -> Any:
        info = self.c.publish(f"barcelona/{ENS}/control", codec.to_msgpack(ctl), qos=1)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.acks, 10), "no PUBACK"
            return self.acks[info.mid]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.network
@pytest.mark.slow
def test_the_documented_acl_lets_the_band_play_and_a_display_only_listen(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    """Conductor and band machines each run the same ensemble with their own user (the YAML holds one
    user, so each machine's copy names its own). Under the ACL from docs/security.md the band plays; a
    display's publish to `control` is refused by the broker (MQTT v5 PUBACK: not authorised) and the
    tempo never moves, while the same publish from the `surface` user lands."""
    users = {"conductor": "c-pass", "band": "b-pass", "surface": "s-pass", "display": "d-pass"}
    broker = mosquitto_factory(allow_anonymous=False, users=users, acl=documented_acl())
    placed = [{**a, "host": "band"} for a in agents_named("bass", "piano")]
    procs, paths = [], {}
    for user, host in (("band", "band"), ("conductor", "stage")):
        sub = tmp_path / user
        sub.mkdir()
        paths[user] = write_ensemble(sub, {"agents": placed, "conductor": {"host": "stage"}, "bus": {
            # one machine under two host names: clock sync through the broker, not UDP to a loopback
            # address that would not be the conductor's on two real machines (--check refuses that)
            "transport": "mqtt", "sync": "bus",
            "mqtt": {"host": broker.host, "port": broker.port, "username": user,
                     "password": users[user]}}})  # fmt: skip
        procs.append(launch(paths[user], sub / "log", "--host", host, "--stats-dir", str(sub / "stats")))
    stats = tmp_path / "conductor" / "stats" / "conductor.json"
    display = Client(broker, "display", users["display"])
    surface = Client(broker, "surface", users["surface"])
    try:
        wait_for(lambda: (s := read_json(stats)).get("playing") and s.get("roster") == ["bass", "piano"]
                 and all(a["notes"] > 0 for a in s.get("agents", {}).values()),
                 60, "the band playing")  # fmt: skip
        display.c.subscribe(f"barcelona/{ENS}/timeline", qos=1)
        wait_for(lambda: display.timelines, 10, "the display hearing the timeline")
        refused = display.publish_control(Control("tempo", 200.0))
        assert refused.is_failure and refused.value == 0x87, refused  # Not authorized
        ok = surface.publish_control(Control("tempo", 90.0))
        assert not ok.is_failure, ok
        wait_for(lambda: any(t.next_tempo_bpm == 90.0 or t.tempo_bpm == 90.0 for t in display.timelines), 10,
                 "the surface's tempo change")  # fmt: skip
        assert not [t for t in display.timelines if 200.0 in (t.tempo_bpm, t.next_tempo_bpm)]
        wait_for(lambda: read_json(stats).get("tempo") == 90.0, 15, "tempo 90 at the next bar")
    finally:
        display.close()
        surface.close()
        for p in procs:
            stop(p)
    for user in users.keys() & {"band", "conductor"}:
        log = (tmp_path / user / "log").read_text(errors="replace")
        assert "Traceback" not in log and "Not authorized" not in log, log[-3000:]
