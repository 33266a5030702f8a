"""Notes the recorder has not acknowledged, in process: what an agent keeps, sends again, and forgets.

The real faults (a conductor killed, a broker stopped) are in test_record_faults.py; these pin the
rules on a fake clock: nothing is sent again into silence, an ack (however packed) clears exactly its
notes, tries back off, and memory is bounded.
"""

from __future__ import annotations

import pytest

from agents.unacked import BATCH, HEARD_WITHIN_S, RESEND_AFTER_S, Unacked
from conductor.recorder import Recorder
from protocol import codec
from protocol.messages import MAX_TEXT, Note, NoteAck, NoteAgain, note_key


def note(beat: float, pitch: int = 60, source: str = "bass") -> Note:
    return Note(beat, 0.5, pitch, 90, 1, source)


def test_a_note_is_sent_again_only_once_the_conductor_is_heard_and_until_acked() -> None:
    u = Unacked()
    u.add(note(1.0), now=10.0)
    u.add(note(1.5, 62), now=10.1)
    assert u.due(20.0) == []  # the conductor silent (an outage): nothing is thrown at a dead link
    u.heard_conductor(20.0)
    assert [n.start_beat for n in u.due(20.0)] == [1.0, 1.5]
    assert u.due(20.0 + RESEND_AFTER_S) == []  # heard too long ago
    u.heard_conductor(22.0)
    assert [n.start_beat for n in u.due(22.0)] == [1.0, 1.5]  # 2 s later: tried again
    assert u.due(22.0 + 2 * RESEND_AFTER_S + 0.1) == []  # the next try waits 4 s (and needs a voice)
    u.heard_conductor(26.5)
    u.ack([note_key(1.0, 60)])
    assert [n.start_beat for n in u.due(26.5)] == [1.5]
    u.ack([note_key(1.5, 62), note_key(9.0, 60)])  # an unknown key changes nothing
    assert len(u) == 0 and u.stats() == {"pending": 0, "resent": 5, "acked": 2, "evicted": 0}


def test_a_fresh_note_is_not_sent_again_before_its_ack_could_come() -> None:
    u = Unacked()
    u.heard_conductor(5.0)
    u.add(note(2.0), now=5.0)
    assert u.due(5.0 + RESEND_AFTER_S - 0.01) == []
    u.heard_conductor(5.0 + RESEND_AFTER_S)
    assert len(u.due(5.0 + RESEND_AFTER_S)) == 1
    assert HEARD_WITHIN_S >= 0.5  # several broadcast periods (0.2 s) of the conductor


def test_a_backlog_goes_out_in_batches_and_memory_is_bounded() -> None:
    u = Unacked(limit=100)
    for k in range(150):
        u.add(note(k * 0.25, 40 + k % 40), now=0.0)
    assert len(u) == 100 and u.evicted == 50
    u.heard_conductor(3.0)
    first = u.due(3.0)
    assert len(first) == BATCH and first[0].start_beat == 50 * 0.25  # the oldest kept first
    assert len(u.due(3.0)) == 100 - BATCH


def test_acks_pack_within_the_text_limit_and_read_back_to_the_same_keys() -> None:
    keys = [note_key(1e6 + k / 3, k % 128) for k in range(1000)]
    acks = NoteAck.pack("piano", keys)
    assert len(acks) > 1 and all(len(a.notes) <= MAX_TEXT for a in acks)
    over_mqtt = [codec.from_mqtt("demo", codec.mqtt_topic("demo", a), codec.to_msgpack(a)) for a in acks]
    osc = [codec.to_osc("demo", a) for a in acks]
    over_osc = [codec.from_osc("demo", address, [v for _, v in args]) for address, args in osc]
    assert [k for a in over_mqtt for k in a.keys()] == keys
    assert over_osc == over_mqtt
    with pytest.raises(ValueError):
        NoteAck("piano", "1.5:60 x:61").keys()


def test_notes_sent_again_reach_only_the_recorder() -> None:
    """An agent never subscribes to another's resends (its model would hear a note twice) or acks."""
    bass = codec.mqtt_filters("demo", "bass")
    assert "barcelona/demo/record/ack/bass" in bass
    assert not [f for f in bass if f.startswith("barcelona/demo/record/note")]
    conductor = codec.mqtt_filters("demo", "conductor")
    assert "barcelona/demo/record/note/+" in conductor
    assert not [f for f in conductor if f.startswith("barcelona/demo/record/ack")]
    again = NoteAgain.of(note(3.0))
    assert codec.mqtt_topic("demo", again) == "barcelona/demo/record/note/bass" and again.note() == note(3.0)


def test_the_recorder_keeps_a_note_sent_again_once_and_counts_what_the_file_holds() -> None:
    rec = Recorder([("bass", 1, 33)])
    assert rec.add(note(1.0)) and not rec.add(NoteAgain.of(note(1.0)).note())
    assert rec.add(note(7.5))
    assert rec.count("bass") == 2 and rec.count("bass", until_beat=7.5) == 1
