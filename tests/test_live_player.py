"""A player on a real MIDI keyboard (a JACK MIDI port, the dummy driver) in E-flat, with no plan
written: the launched ensemble hears the notes as they are played, records each once, and the band
plays in the player's key. End to end: keyboard port, conductor, bus, agents, recording."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.ensembles import ROOT, write_ensemble
from support.jack import JackServer
from support.monitor import BusMonitor
from support.net_fixtures import free_port

from conductor.human import read_midi_notes
from protocol.messages import Note
from protocol.timeline import LocalTimeMap, Timeline

pytestmark = [pytest.mark.network, pytest.mark.slow]

MAJOR = (0, 2, 4, 5, 7, 9, 11)
EB = 3
BARS = 10
START_BEAT = 4.0  # the player comes in at bar 2
_names = itertools.count()


def test_a_player_on_a_midi_keyboard_leads_the_band_into_their_key(
    tmp_path: Path, jack_server: JackServer
) -> None:
    rtmidi = pytest.importorskip("rtmidi")
    name = f"keys{next(_names)}"
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name)
    keyboard.open_virtual_port("out")
    monitor_port = free_port()
    path = write_ensemble(tmp_path, {
        "bus": {"osc": {"monitor_port": monitor_port}},
        "human": {"source": {"type": "midi", "port": f"{name}:out", "api": "jack"}},
    })
    text = path.read_text().replace("chords:", "# chords:")  # no plan: the conductor follows the player
    path.write_text(text)
    melody = read_midi_notes(ROOT / "ensembles" / "melodies" / "ode_to_joy.mid")
    mon = BusMonitor("demo", monitor_port)
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_ensemble.py"), str(path), "--bars", str(BARS),
                             "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    played = 0
    try:
        tl = mon.wait(lambda: next((m for _, m in reversed(mon.of(Timeline)) if m.playing), None), 30.0,
                      "the transport to start")
        tm = LocalTimeMap(tl)
        events = sorted([(n.start + START_BEAT, 0x90, n.pitch + EB, n.velocity) for n in melody]
                        + [(n.start + n.duration + START_BEAT - 0.02, 0x80, n.pitch + EB, 0)
                           for n in melody])
        end_beat = BARS * tl.beats_per_bar - 2.0
        for beat, status, pitch, velocity in events:
            if beat >= end_beat:
                break
            due = tm.time_at(beat)
            assert due is not None
            # a performer's clock: each key goes down when its beat comes (this is the stimulus,
            # not a wait on the system under test)
            time.sleep(max(0.0, due - time.monotonic()))
            keyboard.send_message([status, pitch, velocity])
            played += status == 0x90
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        heard = sorted(mon.notes("melody"), key=lambda n: n.start_beat)
        band = [n for part in ("bass", "piano") for n in mon.notes(part) if n.start_beat >= START_BEAT + 8]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        mon.close()
        keyboard.close_port()
    # Every key the player pressed and released reached the band once, as a note with its length.
    assert played - 2 <= len({(round(n.start_beat, 2), n.pitch) for n in heard}) <= played
    assert all(isinstance(n, Note) and n.duration_beats > 0 for n in heard)
    assert all((n.pitch - EB) % 12 in MAJOR for n in heard)
    # Two bars after the player came in, the band plays in E-flat with them.
    assert len(band) > 20
    share = sum((n.pitch - EB) % 12 in MAJOR for n in band) / len(band)
    assert share >= 0.9, f"{share:.2f} of the band's notes in E-flat"

