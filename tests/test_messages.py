"""Every bus message in both encodings: golden bytes, round trips, and refusals that name the field."""

from __future__ import annotations

import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonosc.osc_message_builder import OscMessageBuilder

from protocol import codec
from protocol.messages import AgentParams, Control, Note, PlanState, SyncPing, SyncPong
from protocol.status_messages import AgentStatus, BeatTick, Roster
from protocol.timeline import Timeline

ENS = "demo"

SAMPLES = [
    Timeline(3, 97.5, 12.25, 1234.5678901234, 3, True, 140.0, 16.0),
    PlanState(2, "Dm7 G7 | Cmaj7", True, "C"),
    Roster(4, "bass,piano"),
    AgentParams("bass", 7, True, 0.9, 1.5, 0.95, 12),
    Note(8.5, 0.25, 36, 100, 9, "drums"),
    AgentStatus("piano", 5, "playing", 4242, 10, 1, 2, 0.5, 1.25, 150.0, -0.01, 0.2),
    SyncPing("bass", 1, 5000.123456789),
    SyncPong("bass", 1, 5000.123456789, 5000.2, 5000.2001),
    Control("tempo", 132.0),
    Control("mute", 1.0, "bass"),
    BeatTick(3, 2, "G7", 120.0),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_osc_round_trip(msg: object) -> None:
    address, args = codec.to_osc(ENS, msg)
    assert address.startswith(f"/barcelona/{ENS}/")
    assert all(tag != "f" for tag, _ in args), "float32 would lose time precision"
    assert codec.from_osc(ENS, address, [v for _, v in args]) == msg


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_msgpack_round_trip(msg: object) -> None:
    topic = codec.mqtt_topic(ENS, msg)
    assert topic.startswith(f"barcelona/{ENS}/")
    assert codec.from_mqtt(ENS, topic, codec.to_msgpack(msg)) == msg


def test_note_golden_bytes() -> None:
    """The OSC datagram of a note, byte for byte: other implementations can test against it."""
    address, args = codec.to_osc(ENS, Note(1.0, 0.5, 60, 100, 2, "bass"))
    b = OscMessageBuilder(address)
    for tag, value in args:
        b.add_arg(value, tag)
    dgram = b.build().dgram
    assert dgram == (
        b"/barcelona/demo/note\x00\x00\x00\x00,ddiiis\x00"
        b"?\xf0\x00\x00\x00\x00\x00\x00?\xe0\x00\x00\x00\x00\x00\x00"
        b"\x00\x00\x00<\x00\x00\x00d\x00\x00\x00\x02bass\x00\x00\x00\x00"
    )


def test_doubles_keep_timestamps_exact() -> None:
    t = 1_700_000_000.123456
    address, args = codec.to_osc(ENS, SyncPing("a", 0, t))
    assert codec.from_osc(ENS, address, [v for _, v in args]).t_local == t


def test_state_topics_are_retained_and_notes_are_qos0() -> None:
    kinds = {k.cls: k for k in codec.KINDS}
    assert kinds[Timeline].retain and kinds[PlanState].retain and kinds[Roster].retain
    assert kinds[Note].qos == 0 and not kinds[Note].retain
    assert kinds[Control].qos == 1 and kinds[PlanState].qos == 1


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([1.0, 0.5, 128, 100, 0, "x"], "note.pitch"),
        ([1.0, 0.5, 60, 0, 0, "x"], "note.velocity"),
        ([1.0, -0.5, 60, 100, 0, "x"], "note.duration_beats"),
        ([math.nan, 0.5, 60, 100, 0, "x"], "note.start_beat"),
        ([1.0, math.inf, 60, 100, 0, "x"], "note.duration_beats"),
        ([1.0, 0.5, 60, 100, 16, "x"], "note.channel"),
        ([1.0, 0.5, 60.5, 100, 0, "x"], "note.pitch"),
        ([1.0, 0.5, "60", 100, 0, "x"], "note.pitch"),
        ([1.0, 0.5, 60, 100, 0, "no spaces"], "note.source"),
        ([1.0, 0.5, 60], "note.arity"),
    ],
)
def test_bad_note_is_refused_naming_the_field(args: list[object], reason: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.from_osc(ENS, f"/barcelona/{ENS}/note", args)
    assert err.value.reason == reason


@pytest.mark.parametrize("tempo", [math.nan, -1.0, 0.0, 10_000.0, math.inf])
def test_absurd_tempo_is_refused(tempo: float) -> None:
    tl = Timeline(tempo_bpm=120.0)
    data = msgpack.packb({**{f: getattr(tl, f) for f in tl.__dataclass_fields__}, "tempo_bpm": tempo})
    with pytest.raises(codec.DecodeError) as err:
        codec.from_mqtt(ENS, f"barcelona/{ENS}/timeline", data)
    assert err.value.reason == "timeline.tempo_bpm"


def test_mqtt_refusals() -> None:
    with pytest.raises(codec.DecodeError, match="bad_msgpack"):
        codec.from_mqtt(ENS, f"barcelona/{ENS}/note/x", b"\xc1garbage")
    with pytest.raises(codec.DecodeError, match="oversize"):
        codec.from_mqtt(ENS, f"barcelona/{ENS}/note/x", b"\x00" * (codec.MAX_PAYLOAD + 1))
    with pytest.raises(codec.DecodeError, match="unknown_field"):
        codec.from_mqtt(ENS, f"barcelona/{ENS}/roster", msgpack.packb({"epoch": 1, "agents": "", "x": 1}))
    note = Note(1.0, 1.0, 60, 90, 0, "bass")
    with pytest.raises(codec.DecodeError, match="topic_mismatch"):
        codec.from_mqtt(ENS, f"barcelona/{ENS}/note/piano", codec.to_msgpack(note))
    with pytest.raises(codec.DecodeError, match="unknown_topic"):
        codec.from_mqtt(ENS, f"barcelona/{ENS}/nonsense", codec.to_msgpack(note))


def test_oversized_strings_are_refused() -> None:
    with pytest.raises(codec.DecodeError, match=r"plan\.text"):
        codec.from_osc(ENS, f"/barcelona/{ENS}/plan", [1, "C " * 5000, 1, "C"])


values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.booleans(),
    st.none(),
    st.binary(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    address=st.sampled_from([k.address for k in codec.KINDS] + ["x", "note/extra"]),
    args=st.lists(values, max_size=10),
)
def test_osc_decoder_only_ever_raises_decode_error(address: str, args: list[object]) -> None:
    try:
        msg = codec.from_osc(ENS, f"/barcelona/{ENS}/{address}", args)
    except codec.DecodeError:
        return
    assert codec.from_osc(ENS, *_plain(codec.to_osc(ENS, msg))) == msg


@settings(max_examples=300, deadline=None)
@given(
    topic=st.sampled_from([k.address for k in codec.KINDS]),
    payload=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["epoch", "agent", "pitch", "text", "tempo_bpm", "seq", "zz"]), values
        ).map(lambda d: msgpack.packb(d, use_bin_type=True)),
    ),
)
def test_msgpack_decoder_only_ever_raises_decode_error(topic: str, payload: bytes) -> None:
    try:
        codec.from_mqtt(ENS, f"barcelona/{ENS}/{topic}", payload)
    except codec.DecodeError:
        pass


def _plain(encoded: tuple[str, list[tuple[str, object]]]) -> tuple[str, list[object]]:
    address, args = encoded
    return address, [v for _, v in args]
