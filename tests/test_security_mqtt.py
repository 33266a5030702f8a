"""Over MQTT, credentials, TLS and the broker's ACL decide who may publish what.

docs/security.md tells a user how to set up a broker: a password, TLS, and an ACL under which a
display may listen but never steer. These tests run a real mosquitto set up exactly that way (the ACL
text is read from the docs) and play an ensemble through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.broker import Mosquitto
from support.ensembles import read_json, run_launcher, wait_for, write_ensemble
from support.security import (
    DOCS_ACL,
    ENS,
    agents_named,
    launch,
    stop,
)

from protocol import codec
from protocol.messages import Control
from protocol.timeline import Timeline


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
