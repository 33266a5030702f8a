"""Agent notes through real JACK MIDI ports: in order, released, and at the moment the beat says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.ensembles import ROOT, write_ensemble
from support.jack import JackServer, MidiCapture
from support.monitor import BusMonitor
from support.net_fixtures import free_port

from protocol.timeline import LocalTimeMap, Timeline

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_agent_notes_arrive_at_a_real_midi_input_in_order_and_in_time(
    tmp_path: Path, jack_server: JackServer
) -> None:
    monitor_port = free_port()
    yaml_path = write_ensemble(
        tmp_path,
        {
            "bus": {"osc": {"monitor_port": monitor_port}},
            "agents": [
                {
                    "name": "bass",
                    "channel": 1,
                    "program": 33,
                    "range": [28, 52],
                    "engine": {
                        "type": "pattern",
                        "voicing": "root_fifth",
                        "rhythm": [{"beat": b / 2, "duration": 0.25} for b in range(8)],
                    },
                    "output": {"type": "midi", "port": "bcap:in", "api": "jack"},
                }
            ],
        },
    )
    bars = 3
    with MidiCapture(client_name="bcap") as cap:
        mon = BusMonitor("demo", monitor_port)
        try:
            proc = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "run_ensemble.py"),
                    str(yaml_path),
                    "--bars",
                    str(bars),
                    "--quiet",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, proc.stderr
            committed = sorted(mon.notes("bass"), key=lambda n: n.start_beat)
            playing = [m for _, m in mon.of(Timeline) if m.playing]
            timeline = max(playing, key=lambda m: m.epoch) if playing else None
        finally:
            mon.close()
        ons = cap.notes_on()
        assert cap.stuck_notes() == set()
    assert timeline is not None
    # Eight notes a bar for `bars` bars; the JACK connection may drop what came before it was live.
    assert len(ons) >= 8 * bars - 1
    tm = LocalTimeMap(timeline)  # same host: the conductor's clock is ours
    matched_beats, errors_ms = [], []
    for captured in ons:
        # The committed note this arrival belongs to: same pitch, nearest due time.
        due, note = min(
            ((tm.time_at(n.start_beat) or 0.0), n)
            for n in committed
            if n.pitch == captured.message[1] and abs((tm.time_at(n.start_beat) or 0.0) - captured.time) < 0.2
        )
        matched_beats.append(note.start_beat)
        errors_ms.append((captured.time - due) * 1000.0)
    assert matched_beats == sorted(matched_beats) and len(set(matched_beats)) == len(matched_beats), (
        "out of order"
    )
    # A wrong beat-to-time mapping is off by tens of ms or more; JACK's dummy driver adds ~1.3 ms.
    assert max(abs(e) for e in errors_ms) < 15.0, errors_ms
