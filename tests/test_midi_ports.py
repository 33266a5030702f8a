"""One rule finds a MIDI port for every part that opens one: the agent's output, the conductor's MIDI
clock and the human's input, against real JACK MIDI ports (the dummy driver)."""

from __future__ import annotations

import itertools

import pytest
from support.jack import JackServer, MidiCapture

from protocol.midi_ports import MidiPortError, match_port

_names = itertools.count()

PORTS = ["Midi Through:Midi Through Port-0 14:0", "Surge XT:Surge XT 130:0", "Surge XT:Surge XT 131:0",
         "capture7:in"]


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def test_the_exact_name_wins_then_one_port_that_holds_the_words() -> None:
    assert match_port("capture7:in", PORTS) == 3
    assert match_port("midi through", PORTS) == 0  # any case, any part of the name
    assert match_port("Surge XT 131", PORTS) == 2
    assert match_port("Hydrogen", PORTS) is None


def test_words_that_fit_several_ports_are_refused_with_their_names() -> None:
    with pytest.raises(MidiPortError, match="ambiguous") as err:
        match_port("surge", PORTS)
    assert "Surge XT 130" in str(err.value) and "Surge XT 131" in str(err.value)


@pytest.mark.network
def test_output_clock_and_human_input_find_a_port_by_the_same_rule(jack_server: JackServer) -> None:
    """Two capture ports whose names share a word: every opener refuses the shared word, and every
    opener finds the one port from a word only it has."""
    pytest.importorskip("rtmidi")
    from agents.outputs.midi import MidiPortOutput, PortNotFoundError
    from conductor.human import MidiInput
    from conductor.midi_clock import MidiClockError, MidiClockOut

    shared = unique("synthz")
    with MidiCapture(client_name=f"{shared}a") as a, MidiCapture(client_name=f"{shared}b") as b:
        out = MidiPortOutput(shared, api="jack", client_name=unique("agent"))
        with pytest.raises(PortNotFoundError, match="ambiguous"):
            out.open()
        with pytest.raises(MidiClockError, match="ambiguous"):
            MidiClockOut(shared, api="jack", client_name=unique("clock")).start()
        out = MidiPortOutput(f"{shared}b:IN", api="jack", client_name=unique("agent"))  # any case
        out.open()
        try:
            assert out.port_name == b.port_name
        finally:
            out.close()
        assert a.port_name != b.port_name
    # the human's input: a JACK output port to read from, found by a word of its name
    source_client = unique("keyboard")
    source = MidiPortOutput(virtual=True, port="keys", api="jack", client_name=source_client)
    source.open()
    try:
        midi_in = MidiInput(source_client, api="jack")
        midi_in.close()
        with pytest.raises(ValueError, match="human.source.port"):
            MidiInput(unique("no-such-keyboard"), api="jack")
    finally:
        source.close()
