"""The shipped ensembles/multihost.yaml, as a user runs it, on a NetRig of its own hosts (broker,
stage, band): it plays in sync across them, and agents pinging a wrong conductor address say unsynced.

WHY namespaces: each host has its own network stack and address, yet all share the kernel's monotonic
clock, so the true offset between hosts is 0 and whatever the agents estimate beyond that is their
error. The file is changed in its addresses only; its MIDI devices are real JACK ports named as the
file names them, so it is played exactly as written.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.ensembles import ROOT, read_json, recorded_notes, wait_for
from support.jack import MidiCapture
from support.multihost import (
    MIN_BEAT_SAMPLES,
    BeatSampler,
    launch,
    log_tail,
    start_broker,
)
from support.netns import NetRig, netns_missing_reason

pytestmark = [pytest.mark.netns, pytest.mark.slow]


# -- the shipped example, as a user runs it ---------------------------------------------------------
#
# ensembles/multihost.yaml on a rig of its own hosts (broker, stage, band), changed in its addresses
# only: its MIDI devices are real JACK ports named as the file names them ("FluidSynth" for the band's
# synth, "Keystation" for the player's keyboard), so the file is played exactly as written.

SHIPPED = ROOT / "ensembles" / "multihost.yaml"
SHIPPED_BARS = 6
# On one machine the true offset between hosts is 0: an estimate further off than this is an error.
SYNC_OFFSET_LIMIT_MS = 0.2


@pytest.fixture
def shipped_rig() -> Iterator[NetRig]:
    reason = netns_missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with NetRig(("broker", "stage", "band")) as r:
        yield r
    assert not r.leftovers(), f"namespaces left behind: {r.leftovers()}"


def differences(a: Any, b: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where two parsed YAML documents differ, as key paths."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in a.keys() | b.keys() for d in differences(a.get(k), b.get(k), (*path, k))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, (*path, i))]
    return [] if a == b else [path]


def shipped_on_rig(tmp: Path, rig: NetRig, name: str, conductor_at: str | None = None) -> Path:
    """The shipped file with the rig's addresses; `conductor_at` points the agents somewhere else."""
    shipped = yaml.safe_load(SHIPPED.read_text())
    data = yaml.safe_load(SHIPPED.read_text())
    data["bus"]["mqtt"]["host"] = rig.host_ip("broker")
    data["conductor"]["address"] = conductor_at or rig.host_ip(data["conductor"]["host"])
    data["human"]["address"] = rig.host_ip(data["human"]["host"])
    for agent in data["agents"]:
        agent["address"] = rig.host_ip(agent["host"])
    changed = differences(shipped, data)
    assert changed and all(p[-1] == "address" or p == ("bus", "mqtt", "host") for p in changed), changed
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Keyboard:
    """The player's MIDI keyboard: a JACK port named as the shipped file's human source names it."""

    def __init__(self, name: str) -> None:
        import rtmidi

        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name)
        self.out.open_virtual_port("out")
        self.sent = 0
        self.next_at = 0.0

    def play(self, pitch: int) -> None:
        """One short note, no more than twice a second."""
        if time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + 0.5
        self.out.send_message([0x90, pitch, 90])
        time.sleep(0.05)  # the length of the key press
        self.out.send_message([0x80, pitch, 0])
        self.sent += 1

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


def play_shipped(rig: NetRig, tmp: Path, stage_yaml: Path, band_yaml: Path) -> dict[str, Any]:
    """Start the band host, then the stage for SHIPPED_BARS bars with a player at the keyboard."""
    data = yaml.safe_load(stage_yaml.read_text())
    names = [a["name"] for a in data["agents"]]
    keys = Keyboard(data["human"]["source"]["port"])
    band_stats, stage_stats = tmp / "stats-band", tmp / "stats-stage"
    band = launch(rig, "band", band_yaml, tmp, "--stats-dir", str(band_stats))
    states: dict[str, list[str]] = {n: [] for n in names}  # heartbeat states the conductor heard, in turn
    try:
        paths = {n: band_stats / f"agent-{n}.json" for n in names}

        def band_up() -> bool:
            assert band.poll() is None, f"band launcher exited {band.returncode}\n{log_tail(tmp, 'band')}"
            return all(p.exists() for p in paths.values())

        wait_for(band_up, 30.0, "every agent on the band host to start and write its stats")
        sampler = BeatSampler(paths)
        stage = launch(rig, "stage", stage_yaml, tmp, "--bars", str(SHIPPED_BARS), "--record",
                       str(tmp / "out.mid"), "--stats-dir", str(stage_stats))  # fmt: skip
        deadline = time.monotonic() + SHIPPED_BARS * 4 * 60.0 / float(data["tempo"]) + 60.0
        while stage.poll() is None:
            assert time.monotonic() < deadline, f"stage did not finish\n{log_tail(tmp, 'stage')}"
            sampler.sample()
            cond = read_json(stage_stats / "conductor.json")
            for name, agent in (cond.get("agents") or {}).items():
                seen = states.setdefault(name, [])
                if agent.get("state") and seen[-1:] != [agent["state"]]:
                    seen.append(agent["state"])
            if cond.get("playing") and cond.get("beat", -1) >= 0:
                keys.play(57)
            time.sleep(0.02)  # the sampling period, not a wait for a condition
        assert band.poll() is None, f"band launcher died while playing\n{log_tail(tmp, 'band')}"
        band.send_signal(signal.SIGTERM)
        band_rc = band.wait(10.0)
    finally:
        keys.close()
        if band.poll() is None:
            band.kill()
            band.wait(5.0)
    return {"stage_rc": stage.returncode, "band_rc": band_rc, "beats": sampler.summary(),
            "heartbeat_states": states, "keys_sent": keys.sent}


def shipped_reports(tmp: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    logs = "\n".join(log_tail(tmp, h) for h in ("stage", "band"))
    return read_json(tmp / "report-stage.json"), read_json(tmp / "report-band.json"), logs


def test_shipped_multihost_yaml_plays_across_hosts_in_sync(
    shipped_rig: NetRig, tmp_path: Path, jack_server: Any
) -> None:
    rig = shipped_rig
    broker = start_broker(rig, tmp_path)
    path = shipped_on_rig(tmp_path, rig, "multihost.yaml")
    with MidiCapture(client_name="FluidSynth") as synth:
        result = play_shipped(rig, tmp_path, path, path)
        heard = len(synth.notes_on())
    stage, band, logs = shipped_reports(tmp_path)
    sync = {n: p["sync"] for n, p in band.get("parts", {}).items()}
    print(f"\nshipped multihost: sync {json.dumps(sync)} beats {json.dumps(result['beats'])} "
          f"synth heard {heard} note-ons, keyboard sent {result['keys_sent']}")  # fmt: skip
    assert result["stage_rc"] == 0 and result["band_rc"] == 0, logs
    assert broker.poll() is None, "mosquitto died during the run"
    assert band["unsynced"] == [] and stage["unsynced"] == [], logs
    assert sorted(sync) == ["bass", "pads"], band
    for name, s in sync.items():
        assert s["state"] == "synced" and s["via"] == "udp", (name, s)
        assert s["rtt_ms"] > 0, (name, s)
        assert abs(s["offset_ms"]) < SYNC_OFFSET_LIMIT_MS, (name, s)
        assert rig.host_ip("stage") in s["pings_to"], (name, s)
    beats = result["beats"]
    assert beats["samples"] >= MIN_BEAT_SAMPLES, beats
    # What the agents played by, sampled all through the run once synced: no sample beyond the limit.
    for name, worst in beats["abs_offset_ms_max"].items():
        assert worst < SYNC_OFFSET_LIMIT_MS, (name, beats)
    # The file's devices were really used: the band's synth port sounded, the keyboard reached the stage;
    # and every note a band agent played, on the other host, is in the stage's recording.
    counts = recorded_notes(tmp_path / "out.mid")
    assert heard > 0, (heard, counts)
    assert counts.get("keys", 0) > 0, (counts, result["keys_sent"], logs)
    for name in ("bass", "pads"):
        assert counts[name] == band["parts"][name]["notes"] > 0, (name, counts, band["parts"][name])
    assert all("playing" in states for states in result["heartbeat_states"].values()), result


def test_agents_pinging_a_wrong_conductor_address_say_unsynced(
    shipped_rig: NetRig, tmp_path: Path, jack_server: Any
) -> None:
    """The band machine's copy names the broker's address as the conductor's: nothing answers there."""
    rig = shipped_rig
    start_broker(rig, tmp_path)
    wrong = rig.host_ip("broker")
    stage_yaml = shipped_on_rig(tmp_path, rig, "stage.yaml")
    band_yaml = shipped_on_rig(tmp_path, rig, "band.yaml", conductor_at=wrong)
    with MidiCapture(client_name="FluidSynth"):
        result = play_shipped(rig, tmp_path, stage_yaml, band_yaml)
    _, band, logs = shipped_reports(tmp_path)
    assert result["stage_rc"] == 0 and result["band_rc"] == 0, logs
    assert band["unsynced"] == ["bass", "pads"], band
    band_log = (tmp_path / "band.log").read_text(errors="replace")
    for name in ("bass", "pads"):
        part = band["parts"][name]
        assert part["sync"]["state"] == "unsynced" and part["sync"]["rtt_ms"] == 0.0, part
        assert part["sync"]["unsynced_s"] > SHIPPED_BARS * 4 * 60.0 / 96.0 / 2, part
        assert part["notes"] > 0, part  # it plays on, on its own clock
        warned = [line for line in band_log.splitlines() if f"{name}: unsynced" in line]
        assert len(warned) == 1 and f"{wrong}:" in warned[0], band_log[-3000:]
        assert f"warning: agent {name} is unsynced" in band_log
        # The stage hears it too: once 2 s have passed with no pong, the heartbeats say unsynced, and
        # never playing again (ready/playing before that is the 2 s it is given).
        states = result["heartbeat_states"][name]
        assert "unsynced" in states and states[-1] == "unsynced", result["heartbeat_states"]
        assert "playing" not in states[states.index("unsynced"):], result["heartbeat_states"]
    assert "synced again" not in band_log
