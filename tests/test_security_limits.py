"""The limits docs/security.md states are the code's, and they hold under a flood.

The "What the code enforces" table is checked against the code's constants; a flood of 20,000 senders
leaves the display table at its documented size and the beat steady; and the control ranges the
integrations README gives are the protocol's, with their ends accepted as Max and TouchOSC send them.
"""

from __future__ import annotations

import itertools
import re
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from pythonosc.osc_message import OscMessage
from support.ensembles import ROOT, wait_for
from support.security import (
    ENS,
    ConductorProc,
    enforced,
    osc,
    sender,
)

from conductor.beat_loop import TICK_S
from conductor.control import (
    MAX_DISPLAYS,
    MAX_REFUSED_HOSTS,
    Allowlist,
    Displays,
    parse_control,
)
from protocol.controls import BY_NAME


def test_the_documented_limits_are_the_codes() -> None:
    rules = enforced()
    assert set(rules) == {"refused_before_parse", "bus_refused_before_parse", "bus_control_refused",
                          "max_displays", "max_refused_hosts", "listen_every_interface",
                          "listen_refused"}, rules  # fmt: skip
    assert int(rules["max_displays"]) == MAX_DISPLAYS
    assert int(rules["max_refused_hosts"]) == MAX_REFUSED_HOSTS
    allow = Allowlist(["127.0.0.1/32"])
    for i in range(MAX_REFUSED_HOSTS + 10):
        allow.allows(f"10.0.{i // 250}.{i % 250 + 1}")
    assert len(allow.refused) == MAX_REFUSED_HOSTS + 1 and allow.refused["other"] == 10
    displays = Displays()
    for port in range(1000, 1000 + 3 * MAX_DISPLAYS):
        displays.add(("127.0.0.1", port))
    displays.add(("127.0.0.1", 1000 + 2 * MAX_DISPLAYS))  # heard again: now the newest
    assert len(displays) == MAX_DISPLAYS and list(displays)[-1] == ("127.0.0.1", 1000 + 2 * MAX_DISPLAYS)
    assert next(iter(displays)) == ("127.0.0.1", 1000 + 2 * MAX_DISPLAYS + 1)  # the oldest left went first


class TickListener:
    """A display: sends the patches' hello, then stamps every beat tick on arrival, in a thread."""

    def __init__(self, control: tuple[str, int]) -> None:
        self.sock = sender("127.0.0.1")
        self.sock.settimeout(0.2)
        self.control = control
        self.ticks: list[tuple[float, int, int]] = []  # (arrival, bar, beat)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def hello(self) -> None:
        self.sock.sendto(osc(f"/barcelona/{ENS}/stop", ("f", 0.0)), self.control)  # a no-op control

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                dgram = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            now = time.monotonic()
            if dgram.startswith(f"/barcelona/{ENS}/beat\x00".encode()):
                bar, beat = OscMessage(dgram).params[:2]
                self.ticks.append((now, bar, beat))

    def collect(self, n: int, timeout: float) -> list[tuple[float, int, int]]:
        start = len(self.ticks)
        wait_for(lambda: len(self.ticks) >= start + n, timeout, f"{n} beat ticks")
        return self.ticks[start : start + n]

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        self.sock.close()


def jitter_ms(ticks: list[tuple[float, int, int]], period_s: float, bpb: int) -> float:
    """95th percentile of how far each beat-to-beat interval is from the beat's length."""
    devs = sorted(abs(b[0] - a[0] - period_s) * 1000 for a, b in itertools.pairwise(ticks)
                  if (b[1] - a[1]) * bpb + b[2] - a[2] == 1)  # fmt: skip
    assert len(devs) >= 10, ticks
    return devs[int(0.95 * (len(devs) - 1))]


@pytest.mark.network
@pytest.mark.slow
def test_twenty_thousand_senders_leave_the_display_table_bounded_and_the_beat_steady(tmp_path: Path) -> None:
    """Every new source port of an allowed host used to become a display for good: 20,000 of them
    made every beat cost 40,000 sends. Now the table holds the documented number, and the beat ticks'
    jitter with 20,000 senders behind it stays within twice the normal jitter: that of a second,
    unflooded conductor, measured over the same seconds (so a machine busier then than a moment
    before cannot pass for the flood's cost). The floor is one tick-loop period: a tick goes out at
    the loop's first turn after its beat, so a display sees the beat only to within that period, and
    the normal jitter can come out near zero when the loop's period happens to divide the beat."""
    cap = int(enforced()["max_displays"])
    tempo = 240.0
    overrides = {"tempo": tempo, "control": {"reply_port": None}}
    (tmp_path / "flooded").mkdir()
    (tmp_path / "normal").mkdir()
    cond = ConductorProc(tmp_path / "flooded", overrides)
    reference = ConductorProc(tmp_path / "normal", overrides)
    display, beside = TickListener(cond.control), TickListener(reference.control)
    period, bpb = 60.0 / tempo, cond.cfg.meter
    try:
        display.hello()
        beside.hello()
        sent, port = 0, 20000
        while sent < 20000 and port < 65536:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:  # in use: distinct ports are the point, so take the next one
                    port += 1
                    continue
                last = sent == 19999  # a control the conductor counts, so the test knows all arrived
                s.sendto(osc(f"/barcelona/{ENS}/{'no_such_control' if last else 'stop'}", ("f", 0.0)),
                         cond.control)  # fmt: skip
            sent, port = sent + 1, port + 1
        assert sent == 20000

        def counted() -> bool:
            """The marker counted: every packet before it was handled. A flood can overflow the
            socket's buffer and drop the marker itself, so it is sent again (from an allowed port
            behind the flood) until it arrives."""
            if cond.stats().get("invalid_reasons", {}).get("unknown_control", 0) >= 1:
                return True
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
                again.bind(("127.0.0.1", 0))
                again.sendto(osc(f"/barcelona/{ENS}/no_such_control", ("f", 0.0)), cond.control)
            return False

        wait_for(counted, 120, "the conductor handling all 20,000 senders", every=2.0)
        display.hello()  # the flood pushed it out as the oldest sender; a patch's hello brings it back
        ticks = display.collect(40, 30)
        loaded = jitter_ms(ticks, period, bpb)
        meanwhile = [t for t in list(beside.ticks) if ticks[0][0] <= t[0] <= ticks[-1][0]]
        normal = jitter_ms(meanwhile, period, bpb)
        s = cond.stats()
        assert s["displays"] == cap and s["playing"], s
    finally:
        display.close()
        beside.close()
        try:
            cond.stop()
        finally:
            reference.stop()
    floor = TICK_S * 1000
    print(f"beat-tick jitter p95: {loaded:.2f} ms with 20,000 senders, {normal:.2f} ms unflooded meanwhile")
    assert loaded <= 2 * max(normal, floor), (normal, loaded)


# -- 7. the integrations README's ranges are the protocol's, and their ends are accepted ---------------------
def test_the_readme_ranges_are_the_protocols_and_a_float32_end_is_accepted() -> None:
    """Every `name (lo–hi)` the integrations README gives for a control is the conductor's own range,
    and the low end as Max and TouchOSC send it (float32: 0.01 arrives as 0.0099999998) is taken."""
    text = re.sub(r"\s+", " ", (ROOT / "integrations" / "README.md").read_text(encoding="utf-8"))
    stated = re.findall(r"(temperature|density|top_p|top_k) \((\d+(?:\.\d+)?)–(\d+(?:\.\d+)?)", text)
    assert {name for name, _, _ in stated} == {"temperature", "density", "top_p", "top_k"}, stated
    for name, lo, hi in stated:
        spec = BY_NAME[("agent", name)]
        assert (float(lo), float(hi)) == (spec.lo, spec.hi), (name, lo, hi, spec)
        for end in (spec.lo, spec.hi):
            as_sent = struct.unpack(">f", struct.pack(">f", end))[0]
            ctl = parse_control(ENS, f"/barcelona/{ENS}/agent/bass/{name}", [as_sent])
            assert ctl.value == pytest.approx(end), (name, as_sent, ctl)
    tempo = re.findall(r"\((\d+)–(\d+)\) sends `/barcelona/demo/tempo`", text)
    assert tempo, "the tempo box's range"
    spec = BY_NAME[("ensemble", "tempo")]
    assert all(spec.lo <= int(lo) < int(hi) <= spec.hi for lo, hi in tempo), tempo
