"""A stranger cannot steer: what it sends is refused, counted under its address, and never parsed.

docs/security.md promises that a sender outside `control.allow` (or, on the bus ports, outside the
hosts the bus names) changes nothing while the allowed host steers, and that its packets are turned
away before a decoder sees them; these tests send from such addresses to a running conductor and band.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.ensembles import read_json, wait_for, write_ensemble
from support.netns import NetRig, netns_missing_reason
from support.procs import descendants, listening
from support.security import (
    ENS,
    ConductorProc,
    agents_named,
    codec_osc,
    enforced,
    osc,
    sender,
)

from bench.fuzz import Ensemble
from bench.fuzz_packets import SAMPLES
from protocol.ensemble import load_ensemble
from protocol.messages import Control
from protocol.status_messages import AgentStatus


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


GARBAGE = [
    b"", b"\x00" * 7, b"not osc at all", b"#bundle\x00" + b"\xff" * 20, b"/x\x00\x00,zz\x00\x00",
    b"/barcelona/demo/tempo\x00\x00\x00,f\x00\x00", *(bytes([i]) * (i + 1) for i in range(1, 60)),
]


@pytest.mark.network
@pytest.mark.slow
def test_a_strangers_packets_are_refused_before_they_are_parsed(tmp_path: Path) -> None:
    """From 127.0.0.2 (outside 127.0.0.1/32): garbage and well-formed controls to the control port are
    all counted as refused and none as malformed; the same garbage from the allowed address is counted
    as malformed, so the malformed counter is not just stuck. (The bus ports: the next test.)"""
    assert enforced()["refused_before_parse"] == "yes"
    stranger, friend = sender("127.0.0.2"), sender("127.0.0.1")
    cond = ConductorProc(tmp_path, {}, "--no-autostart")
    valid = [osc(f"/barcelona/{ENS}/tempo", ("f", 60.0)), osc(f"/barcelona/{ENS}/stop"), osc("/play"),
             osc(f"/barcelona/{ENS}/agent/*/mute", ("f", 1.0)),
             osc(f"/barcelona/{ENS}/plan", ("s", "Am"))]  # fmt: skip
    hostile = GARBAGE + valid * 10
    try:
        for d in hostile:
            stranger.sendto(d, cond.control)
        wait_for(lambda: cond.stats().get("refused", {}).get("127.0.0.2") == len(hostile), 15, "the refusals")
        s = cond.stats()
        assert s["invalid_reasons"] == {"refused": len(hostile)}, s["invalid_reasons"]  # nothing was parsed
        assert s["tempo"] == cond.cfg.tempo and s["displays"] == 0
        for d in GARBAGE:
            friend.sendto(d, cond.control)
        wait_for(lambda: cond.stats().get("invalid_messages", 0) >= 2 * len(hostile) - len(valid) * 10, 15,
                 "the allowed sender's garbage counted as malformed")  # fmt: skip
        s = cond.stats()
        assert s["invalid_reasons"]["refused"] == len(hostile) and s["displays"] == 1
        assert sum(v for k, v in s["invalid_reasons"].items() if k != "refused") == len(GARBAGE)
    finally:
        stranger.close()
        friend.close()
        cond.stop()


def malformed(stats: dict[str, Any]) -> int:
    """What a process's decoders counted: every reason but `refused` (a sender turned away unread)."""
    return sum(v for k, v in stats.get("invalid_reasons", {}).items() if k != "refused")


BAND_HOST = "127.0.0.3"  # the agent's address: a host the bus takes, outside control.allow


@pytest.mark.network
@pytest.mark.slow
def test_a_strangers_packets_to_the_bus_ports_are_refused_before_they_are_parsed(tmp_path: Path) -> None:
    """A playing OSC-bus ensemble (the conductor on 127.0.0.1, bass on 127.0.0.3). From 127.0.0.2,
    which neither the bus nor `control.allow` names: well-formed bus messages (a stop and a tempo as
    `Control`, a timeline, a plan, a mute, a clock ping, a farewell for bass) and garbage, to the
    conductor's and the agent's bus ports. Each is counted as refused under the stranger's address,
    none among the malformed (the decoders never saw them), the ping gets no pong and nothing
    changes. The same garbage from loopback is counted as malformed, so those counters are not
    stuck; a `Control` from the band's own host is decoded, then refused (it plays, not steers)."""
    rules = enforced()
    assert rules["bus_refused_before_parse"] == "yes" and rules["bus_control_refused"] == "yes"
    path = write_ensemble(tmp_path, {"agents": [{**agents_named("bass")[0], "address": BAND_HOST}]})
    cfg = load_ensemble(path)
    to_conductor, to_agent = cfg.osc_endpoint("conductor"), cfg.osc_endpoint("bass")
    farewell = dataclasses.replace(next(m for m in SAMPLES if isinstance(m, AgentStatus)), agent="bass",
                                   state="gone")  # fmt: skip
    valid = [codec_osc(m) for m in (*SAMPLES, farewell, Control("stop", 1.0), Control("tempo", 60.0))]
    hostile = valid + GARBAGE
    ens = Ensemble(path, tmp_path / "stats", ("bass",))
    stranger, friend, band = sender("127.0.0.2"), sender("127.0.0.1"), sender(BAND_HOST)
    try:
        ens.start()
        before, notes = ens.snapshot(), ens.agent("bass").get("notes", 0)
        cond_malformed, agent_malformed = malformed(ens.conductor()), malformed(ens.agent("bass"))
        for d in hostile:
            stranger.sendto(d, to_conductor)
            stranger.sendto(d, to_agent)
        counted = {"127.0.0.2": len(hostile)}
        wait_for(lambda: ens.conductor().get("refused") == counted, 15, "the conductor's refusals")
        wait_for(lambda: ens.agent("bass").get("refused") == counted, 15, "the agent's refusals")
        stranger.setblocking(False)
        with pytest.raises(BlockingIOError):
            stranger.recv(65536)  # the ping was never read, so never answered
        wait_for(lambda: ens.agent("bass").get("notes", 0) > notes + 4, 15, "the band playing on")
        cond, agent = ens.conductor(), ens.agent("bass")
        assert ens.snapshot() == before
        assert malformed(cond) == cond_malformed and malformed(agent) == agent_malformed
        assert cond["invalid_reasons"]["refused"] == agent["invalid_reasons"]["refused"] == len(hostile)
        assert cond["roster"] == ["bass"] and not cond["ended_by"], cond

        for d in GARBAGE:
            friend.sendto(d, to_agent)
        wait_for(lambda: malformed(ens.agent("bass")) == agent_malformed + len(GARBAGE), 15,
                 "loopback's garbage counted as malformed")  # fmt: skip
        band.sendto(codec_osc(Control("tempo", 60.0)), to_conductor)
        wait_for(lambda: ens.conductor()["refused"].get(BAND_HOST) == 1, 15, "the band host's Control")
        assert ens.snapshot() == before and ens.agent("bass")["refused"] == counted
        rc, err = ens.stop()
    finally:
        for s in (stranger, friend, band):
            s.close()
        ens.stop()
    assert rc == 0 and "Traceback" not in err, err[-3000:]
