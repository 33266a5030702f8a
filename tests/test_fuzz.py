"""Hostile input: every decoder refuses garbage with its own error, and a playing ensemble shrugs off
a burst of it with every packet counted.

The property tests drive each decoder the bus and the control surface rely on with random and
mutated input and demand only the error type its caller catches: any other exception would end the
caller's receive loop (one packet silencing a band). The live test sends thousands of hostile OSC
datagrams to real processes and checks crashes, state and the books: each packet sent must appear
in the receivers' invalid counters (or in the kernel's drop count, which no process can see).
"""

from __future__ import annotations

import math
import random
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pythonosc.parsing import osc_types
from support.ensembles import DEFAULT, write_ensemble
from support.monitor import BusMonitor
from support.net_fixtures import free_port

from bench.fuzz import Ensemble, fuzz_osc
from bench.fuzz_packets import Mutator
from conductor.control import ControlError, parse_control
from protocol import codec
from protocol.controls import BY_NAME
from protocol.ensemble import EnsembleError, parse_ensemble
from protocol.harmony import ChordError, ChordPlan, parse_chord
from protocol.messages import AgentParams, PlanState
from protocol.osc_wire import MAX_ARRAY_DEPTH, MalformedDatagramError, decode_datagram
from protocol.timeline import Timeline

ENS = "demo"
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What python-osc can hand a decoder: every OSC type, plus the hostile values of each.
osc_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.binary(max_size=40),
    st.booleans(),
    st.none(),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=3), max_leaves=6),
)
control_names = sorted({name for _, name in BY_NAME} | {"human/note", "agent", "x"})
control_addresses = st.one_of(
    st.builds(lambda n: f"/barcelona/{ENS}/{n}", st.sampled_from(control_names)),
    st.builds(
        lambda a, n: f"/barcelona/{ENS}/agent/{a}/{n}",
        st.one_of(st.sampled_from(["bass", "*", "{bass,piano}", "[ab]*", "?ass", ""]), st.text(max_size=90)),
        st.sampled_from(control_names),
    ),
    st.builds(lambda n: f"/{n}", st.sampled_from(control_names)),
    st.builds(
        lambda e, n: f"/barcelona/{e}/{n}",
        st.sampled_from(["*", "other", ""]),
        st.sampled_from(control_names),
    ),
    st.text(max_size=60),
)


# -- the control surface ------------------------------------------------------------------------------
@FAST
@given(address=control_addresses, args=st.lists(osc_values, max_size=6))
def test_parse_control_refuses_with_control_error_and_accepts_only_in_range(
    address: str, args: list[Any]
) -> None:
    try:
        ctl = parse_control(ENS, address, args)
    except ControlError as exc:
        assert exc.reason, "a refusal needs a counter key"
        return
    except (TypeError, ValueError) as exc:
        # The one other refusal: the Control message's own field check (an agent pattern over 64
        # characters). The conductor's surface loop catches and counts it as `rejected.ValueError`.
        assert str(exc).startswith("Control."), exc
        return
    # `/agent//density` parses with an empty target; the conductor's state then refuses it (counted).
    spec = BY_NAME.get(("agent" if ctl.target else "ensemble", ctl.param)) or BY_NAME[("agent", ctl.param)]
    v = ctl.value
    if spec.kind in ("float", "int", "trigger", "bool"):
        assert isinstance(v, float) and math.isfinite(v)
    if spec.kind in ("float", "int"):
        assert spec.lo is not None and spec.hi is not None and spec.lo <= v <= spec.hi
    if spec.kind == "int":
        assert v == int(v)
    if spec.kind == "bool":
        assert v in (0.0, 1.0)
    if spec.kind == "text":
        assert isinstance(v, str) and len(v) <= 4096
    if spec.kind == "bar":
        index, _, symbols = v.partition(" ")
        assert 1 <= int(index) <= 1024 and len(symbols) <= 256


# -- the OSC datagram parser --------------------------------------------------------------------------
MUT = Mutator(random.Random(0), ENS)


@st.composite
def mutated_datagrams(draw: st.DrawFn) -> bytes:
    """A real valid datagram (bus or control), then bit flips, cuts, splices and inserted bytes."""
    data = bytearray(draw(st.sampled_from(MUT.bus_seeds + MUT.control_seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set4"]))
        i = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "set4" and len(data) >= i + 4:
            data[i : i + 4] = struct.pack(">i", draw(st.sampled_from([-1, 0, 1 << 30, 7, 65536])))
    return bytes(data)


@st.composite
def tagged_datagrams(draw: st.DrawFn) -> bytes:
    """Any type-tag string over a random body, or arrays nested up to thousands deep (no body needed)."""
    address = draw(
        st.sampled_from([f"/barcelona/{ENS}/{k.address}" for k in codec.KINDS] + ["/plan", "/bar"])
    )
    if draw(st.booleans()):
        tags, body = draw(st.text(alphabet="ihfdsbrmtTFN[]", max_size=20)), draw(st.binary(max_size=200))
    else:  # a few ints (so the array lands on a later field, a flag say), then the nested array
        depth, ints = (
            draw(st.one_of(st.integers(0, 12), st.sampled_from([500, 3000]))),
            draw(st.integers(0, 5)),
        )
        tags = "i" * ints + "[" * depth + draw(st.text(alphabet="TFN", max_size=2)) + "]" * depth
        body = b"\x00\x00\x00\x01" * ints
    return osc_types.write_string(address) + osc_types.write_string("," + tags) + body


datagrams = st.one_of(
    st.binary(max_size=300),
    mutated_datagrams(),
    tagged_datagrams(),
    st.builds(lambda b: b"#bundle\x00" + b, st.binary(max_size=120)),
)


@FAST
@given(data=datagrams)
def test_decode_datagram_only_raises_malformed_datagram(data: bytes) -> None:
    try:
        items = decode_datagram(data)
    except MalformedDatagramError as exc:
        assert exc.reason
        return
    for address, args, timetag in items:
        assert address.startswith("/") and isinstance(args, tuple)
        assert timetag is None or isinstance(timetag, float)


DEEP_PLAN = osc_types.write_string(f"/barcelona/{ENS}/plan") + osc_types.write_string(
    "," + "[" * 3000 + "]" * 3000
)
DEEP_FLAG = (  # PlanState(epoch 1, text "C", loop = the array, key "C")
    osc_types.write_string(f"/barcelona/{ENS}/plan")
    + osc_types.write_string(",is" + "[" * 3000 + "]" * 3000 + "s")
    + b"\x00\x00\x00\x01C\x00\x00\x00C\x00\x00\x00"
)


@FAST
@example(data=DEEP_PLAN)  # once a RecursionError in the surface's text join (str() of the array)
@example(data=DEEP_FLAG)  # and in a flag's error text (its repr), which ended the bus's loop
@given(data=datagrams)
def test_what_the_parser_passes_up_never_breaks_the_bus_or_the_surface(data: bytes) -> None:
    """The bus catches DecodeError/TypeError/ValueError and the surface ControlError/TypeError/
    ValueError; anything else escaping (a RecursionError from a deep OSC array did) ends their loop."""
    try:
        items = decode_datagram(data)
    except MalformedDatagramError:
        return
    for address, args, _ in items:
        for decode in (codec.from_osc, parse_control):
            try:
                decode(ENS, address, args)
            except (codec.DecodeError, ControlError, TypeError, ValueError):
                pass


def test_deep_osc_arrays_are_refused_by_the_parser() -> None:
    def nested(n: int) -> bytes:
        return osc_types.write_string(f"/barcelona/{ENS}/plan") + osc_types.write_string(
            "," + "[" * n + "]" * n
        )

    assert decode_datagram(nested(MAX_ARRAY_DEPTH))
    with pytest.raises(MalformedDatagramError) as err:
        decode_datagram(nested(3000))
    assert err.value.reason == "array_too_deep"


# -- chord symbols and plans ----------------------------------------------------------------------------
symbol_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet="ABCDEFGabcdefg#b♭♯mMajdimaugsus24679/+-()ø°x% ", max_size=16),
)
plan_text = st.lists(
    st.one_of(symbol_text, st.sampled_from(["|", "|:", ":|", "x3", "x99999", "%", "||"])), max_size=30
).map(" ".join)


@FAST
@given(symbol=st.one_of(symbol_text, osc_values))
def test_parse_chord_refuses_with_chord_error_or_type_error(symbol: Any) -> None:
    try:
        chord = parse_chord(symbol)
    except (ChordError, TypeError):
        return
    assert all(0 <= pc <= 11 for pc in chord.tones) or chord.is_no_chord


@FAST
@given(
    text=st.one_of(plan_text, st.text(max_size=200), osc_values),
    loop=st.one_of(st.booleans(), osc_values),
    key=st.one_of(st.sampled_from(["C", "F#", "Bbm", "Am", "H", ""]), osc_values),
)
def test_chord_plan_parse_refuses_with_its_own_errors(text: Any, loop: Any, key: Any) -> None:
    try:
        plan = ChordPlan.parse(text, loop=loop, key=key)
    except (ChordError, ValueError, TypeError):
        return
    assert plan.bars and plan.length_beats(4) >= 4
    assert ChordPlan.parse(plan.to_text(), loop=plan.loop, key=plan.key).bars == plan.bars


# -- the ensemble YAML ------------------------------------------------------------------------------------
SCHEMA_KEYS = [
    "name",
    "tempo",
    "meter",
    "key",
    "chords",
    "loop",
    "bus",
    "transport",
    "osc",
    "mqtt",
    "control",
    "listen",
    "port",
    "allow",
    "timing",
    "agents",
    "human",
    "engine",
    "output",
    "type",
    "channel",
    "range",
    "host",
    "address",
    "tls",
    "ca_file",
    "rhythm",
    "beat",
    "source",
    "path",
    "zz",
]
leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["osc", "mqtt", "127.0.0.1", "0.0.0.0/0", "C | G7", "null"]),
)
nested = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(SCHEMA_KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)


@FAST
@given(data=st.one_of(nested, st.dictionaries(st.sampled_from(SCHEMA_KEYS), nested, max_size=8)))
def test_parse_ensemble_refuses_only_with_ensemble_error(data: Any) -> None:
    try:
        ens = parse_ensemble(data, "fuzz.yaml")
    except EnsembleError as exc:
        assert str(exc).startswith("fuzz.yaml: ") and "\n" not in str(exc)
        return
    assert ens.name and 20 <= ens.tempo <= 400


# -- live: a playing ensemble under a burst of hostile OSC -----------------------------------------------
LIVE_PACKETS = 5000


@pytest.mark.network
@pytest.mark.slow
def test_a_playing_ensemble_survives_a_burst_of_hostile_osc(tmp_path: Path) -> None:
    """Conductor + 2 agents on the OSC bus; 5,000 refused datagrams (random, mutated, up to 64 KB)
    round-robin to the conductor's bus port, an agent's bus port and the control port, ~2 % of them
    well-formed steering from 127.0.0.2, outside `control.allow`. Nothing dies or restarts, tempo,
    plan and mix stay as they were, and every packet is counted (or dropped by the kernel)."""
    agents = [a for a in yaml.safe_load(DEFAULT.read_text())["agents"] if a["name"] in ("bass", "piano")]
    monitor_port = free_port()
    path = write_ensemble(tmp_path, {"agents": agents, "bus": {"osc": {"monitor_port": monitor_port}}})
    mon = BusMonitor(ENS, monitor_port)
    ens = Ensemble(path, tmp_path / "stats", ("bass", "piano"))
    try:
        ens.start()
        before, pids = ens.snapshot(), ens.pids()
        started = time.monotonic()
        tally, procs = fuzz_osc(ens, ENS, LIVE_PACKETS, seed=7)
        assert not tally.shortfalls, tally.shortfalls
        assert ens.proc is not None and ens.proc.poll() is None, "the launcher died"
        assert ens.pids() == pids, "a process was replaced"
        assert ens.snapshot() == before
        cond = ens.conductor()
        assert cond["playing"] and cond["beat"] > 0
        for p in procs.values():
            assert p.invalid() + p.dropped() >= p.expected > 0, p
        assert tally.stranger > 0 and int(cond["refused"].get("127.0.0.2", 0)) >= tally.stranger - sum(
            p.dropped() for p in procs.values()
        )
        assert sum(cond["invalid_reasons"].values()) == cond["invalid_messages"]
        # What the agents heard on the bus during the burst: one tempo, one plan, nobody muted.
        heard = [m for t, m in mon.messages if t >= started]
        assert {m.tempo_bpm for m in heard if isinstance(m, Timeline)} == {120.0}
        assert not [m for m in heard if isinstance(m, Timeline) and (m.next_tempo_bpm or not m.playing)]
        assert len({(m.epoch, m.text) for m in heard if isinstance(m, PlanState)}) == 1
        assert not [m for m in heard if isinstance(m, AgentParams) and m.muted]
        rc, err = ens.stop()
    finally:
        mon.close()
        ens.stop()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "exited with" not in err, err[-3000:]
    report = ens.report()
    assert all(p["restarts"] == 0 for p in report["parts"].values()), report["parts"]
    print(
        f"sent {sum(tally.sent.values())} + {tally.stranger} stranger, "
        f"skipped {sum(tally.skipped.values())}, "
        f"{tally.seconds:.1f} s; conductor reasons {cond['invalid_reasons']}"
    )
