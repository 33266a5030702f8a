"""The machine's output host (agents/output_host.py) over a real Unix socket: several parts' notes
written at their moments by one thread, the part's statistics back to its agent, and no stuck note
whichever way a part goes (a stop, a close, a connection that just ends)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ensembles import wait_for

from agents.output_host import OutputHost
from agents.output_link import HostedScheduler, OutputLink
from agents.outputs import NullOutput, OutputError
from protocol.messages import Note
from protocol.timeline import LocalTimeMap, Timeline

KEY = b"test-key"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[OutputHost, str]]:
    from multiprocessing.connection import Listener

    address = str(tmp_path / "outputs.sock")
    listener = Listener(address, family="AF_UNIX")  # as agents/output_host.py main: the join authenticates
    h = OutputHost(key=KEY)
    threading.Thread(target=h.serve, args=(listener,), daemon=True).start()
    runner = threading.Thread(target=h.run, kwargs={"realtime": False}, daemon=True)
    runner.start()
    yield h, address
    h.stop()
    runner.join(3.0)
    listener.close()
    assert not runner.is_alive()


def spec(part: str, channel: int) -> dict[str, object]:
    return {"type": "null", "name": f"barcelona-{part}", "channels": [channel]}


def join(address: str, part: str, channel: int) -> tuple[OutputLink, HostedScheduler]:
    link = OutputLink.connect(address, KEY, part, spec(part, channel), timeout_s=5.0)
    sched = HostedScheduler(link)
    sched.start()
    return link, sched


def playing_from(t0: float, tempo: float = 120.0) -> LocalTimeMap:
    """Beat 0 at local time t0."""
    return LocalTimeMap(Timeline(epoch=1, tempo_bpm=tempo, beat_origin=0.0, time_origin=t0, playing=True))


def output_of(h: OutputHost, part: str) -> NullOutput:
    out = wait_for(lambda: h.output(part), 5, f"{part} to join")
    assert isinstance(out, NullOutput)
    return out


def test_two_parts_play_at_their_moments_and_hear_their_statistics(host: tuple[OutputHost, str]) -> None:
    h, address = host
    bass, bass_sched = join(address, "bass", 1)
    piano, piano_sched = join(address, "piano", 2)
    tm = playing_from(time.monotonic() + 0.3)
    for sched in (bass_sched, piano_sched):
        sched.set_timemap(tm)
    for beat in range(4):  # both parts on the same beats, as a band plays
        bass_sched.schedule(Note(beat * 0.5, 0.4, 40 + beat, 90, 1, "bass"))
        for k in (60, 64, 67):
            piano_sched.schedule(Note(beat * 0.5, 0.4, k + beat, 80, 2, "piano"))
    bass_sched.schedule(Note(0.0, 0.1, 35, 90, 9, "bass"), tag="count-in")  # a click: not the part's note
    outs = {p: output_of(h, p) for p in ("bass", "piano")}
    outs["bass"].wait_for_notes(5, 5.0)
    outs["piano"].wait_for_notes(12, 5.0)
    for part, out in outs.items():
        ons = out.notes()
        for sent in ons:
            assert sent.due is not None
            # never early; how late is the benchmark's to measure (bench/timing.py), not a test's
            assert 0.0 <= sent.sent_at - sent.due < 0.1, f"{part}: {sent}"
        # every note-on at its beat: 0.25 s apart at 120 BPM
        starts = sorted({round(s.due - tm.timeline.time_origin, 3) for s in ons if s.channel != 9})
        assert starts == [0.0, 0.25, 0.5, 0.75]
    wait_for(lambda: outs["bass"].sounding() == 0 and outs["piano"].sounding() == 0, 5, "every note to end")
    bass.close()
    piano.close()
    assert bass_sched.stats()["count"] == 10  # 5 note-ons and 5 note-offs, the click's included
    assert piano_sched.stats()["count"] == 24
    assert 0.0 < bass_sched.stats()["p99"] < 100.0
    assert bass.sounding() == 0 and piano.sounding() == 0


def test_onsets_counted_are_the_parts_own(host: tuple[OutputHost, str]) -> None:
    h, address = host

    async def play() -> list[int]:
        link, sched = join(address, "drums", 9)
        link.start_reading()  # the answers read on the event loop, as an agent reads them
        counted: list[int] = []
        link.on_written = counted.append
        sched.set_timemap(playing_from(time.monotonic() + 0.2))
        sched.schedule(Note(0.0, 0.1, 37, 90, 9, "drums"), tag="count-in")
        for beat in (1.0, 1.5):
            sched.schedule(Note(beat, 0.1, 36, 90, 9, "drums"))
        out = await asyncio.to_thread(output_of, h, "drums")
        await asyncio.to_thread(out.wait_for_notes, 3, 5.0)  # the click and both notes started
        link.close()  # the last totals come back with the close
        return counted

    assert sum(asyncio.run(play())) == 2


def test_a_connection_that_ends_mid_note_releases_the_part(host: tuple[OutputHost, str]) -> None:
    """An agent SIGKILLed mid-chord leaves no cleanup code: its connection ending is all the host hears."""
    h, address = host
    link, sched = join(address, "pads", 3)
    sched.set_timemap(playing_from(time.monotonic() + 0.1))
    for k in (60, 64, 67):
        sched.schedule(Note(0.0, 64.0, k, 80, 3, "pads"))
    out = output_of(h, "pads")
    wait_for(lambda: out.sounding() == 3, 5, "the chord to sound")
    link._conn.close()  # the process is gone: no Close, no Clear
    wait_for(lambda: not out.is_open, 5, "the host to close the part's output")
    assert out.sounding() == 0
    offs = {s.message[1] for s in out.sent if s.is_note_off}
    assert {60, 64, 67} <= offs
    assert h.output("pads") is None


def test_clear_releases_what_sounds_and_forgets_the_rest(host: tuple[OutputHost, str]) -> None:
    h, address = host
    link, sched = join(address, "piano", 2)
    tm = playing_from(time.monotonic() + 0.1)
    sched.set_timemap(tm)
    sched.schedule(Note(0.0, 64.0, 60, 80, 2, "piano"))
    sched.schedule(Note(4.0, 1.0, 72, 80, 2, "piano"))  # 2 s on: never played
    out = output_of(h, "piano")
    wait_for(lambda: out.sounding() == 1, 5, "the note to sound")
    sched.clear()
    wait_for(lambda: out.sounding() == 0, 5, "the note to be released")
    link.close()
    assert [s.message[1] for s in out.sent if s.is_note_on] == [60]


def test_a_new_instance_of_a_part_replaces_the_old_one(host: tuple[OutputHost, str]) -> None:
    h, address = host
    _old, old_sched = join(address, "bass", 1)
    old_sched.set_timemap(playing_from(time.monotonic() + 0.05))
    old_sched.schedule(Note(0.0, 64.0, 40, 90, 1, "bass"))
    first = output_of(h, "bass")
    wait_for(lambda: first.sounding() == 1, 5, "the old note to sound")
    new, _ = join(address, "bass", 1)  # the launcher restarted the agent
    wait_for(lambda: h.output("bass") is not first, 5, "the new instance to join")
    assert first.sounding() == 0  # released at once; the output closes on a thread of its own
    wait_for(lambda: not first.is_open, 5, "the old instance's output to close")
    new.close()


def test_an_output_that_cannot_open_is_one_line_naming_it(host: tuple[OutputHost, str]) -> None:
    _, address = host
    with pytest.raises(OutputError, match=r"agents\.bass\.output") as err:
        OutputLink.connect(address, KEY, "bass", {"type": "null", "channels": [99]}, timeout_s=5.0)
    assert "\n" not in str(err.value)


def test_no_host_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no output host at"):
        OutputLink.connect(str(tmp_path / "none.sock"), KEY, "bass", spec("bass", 1), timeout_s=0.2)


def test_a_key_ends_only_when_its_last_overlapping_note_ends(host: tuple[OutputHost, str]) -> None:
    """Two notes on one key ending a fraction of a millisecond apart go out together: the key's
    note-off is sent once the second ends (prepared apart, both read a ledger holding two notes,
    and neither sent it)."""
    h, address = host
    link, sched = join(address, "piano", 2)
    sched.set_timemap(playing_from(time.monotonic() + 0.1))
    sched.schedule(Note(0.0, 1.0, 60, 80, 2, "piano"))
    sched.schedule(Note(0.5, 0.5005, 60, 80, 2, "piano"))  # ends 0.25 ms after the first
    out = output_of(h, "piano")
    wait_for(lambda: len(out.notes()) == 2, 5, "both notes to start")
    wait_for(lambda: out.sounding() == 0, 5, "the key to be released")
    assert [s.message[1] for s in out.sent if s.is_note_off] == [60]
    link.close()


def test_a_wrong_key_is_refused_and_the_next_part_still_joins(host: tuple[OutputHost, str]) -> None:
    _, address = host
    with pytest.raises(OutputError, match="refused"):
        OutputLink.connect(address, b"not-the-key", "bass", spec("bass", 1), timeout_s=2.0)
    link, _ = join(address, "bass", 1)
    link.close()
