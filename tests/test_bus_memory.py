"""The OSC bus on an in-memory loopback (protocol/bus_memory.py): the same bytes, parser and counters
as a UDP socket, for ensembles run in one event loop. The real transports keep their own tests
(test_transports.py); these check that the stand-in behaves like them where the ensemble looks."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from support.until import until

from protocol import codec
from protocol.bus import OscBus, bus_senders, open_bus, open_sync_bus
from protocol.bus_memory import MemoryNetwork
from protocol.ensemble import parse_ensemble
from protocol.messages import Control, HeldNote, Note, NoteAck, PlanState, SyncPing
from protocol.timeline import Timeline
from protocol.virtual_time import ManualClock, run

ENS = "demo"
A, B, C = ("127.0.0.1", 5001), ("127.0.0.1", 5002), ("127.0.0.1", 5003)
MESSAGES = [
    Timeline(3, 97.5, 12.25, 1234.5678901234, 4, True, 140.0, 16.0),
    PlanState(2, "Dm7 G7 | Cmaj7", True, "C"),
    Note(8.5, 0.25, 36, 100, 9, "drums"),
    HeldNote(4.0, 64, 90, 0, "melody"),
    NoteAck.pack("bass", [(16, 60), (24, 62)])[0],
    SyncPing("bass", 1, 5000.123456789),
    Control("mute", 1.0, "bass"),
]


async def drain(bus: OscBus, n: int) -> list[tuple[Any, Any, float]]:
    it = bus.messages().__aiter__()
    return [await asyncio.wait_for(it.__anext__(), 1.0) for _ in range(n)]


def test_every_message_arrives_whole_at_every_peer_and_not_at_the_sender() -> None:
    clock = ManualClock(1000.0)
    net = MemoryNetwork(clock)

    async def main() -> tuple[list[Any], list[Any], int]:
        async with OscBus(ENS, A, [B, C], network=net) as a, OscBus(ENS, B, [A, C], network=net) as b, \
                OscBus(ENS, C, [A, B], network=net) as c:
            for msg in MESSAGES:
                await a.publish(msg)
            got_b, got_c = await drain(b, len(MESSAGES)), await drain(c, len(MESSAGES))
            await asyncio.sleep(0.1)  # an echo's chance to land: no arrival to wait on (virtual time)
            return got_b, got_c, a.raw.stats.datagrams_in

    got_b, got_c, echoed = run(main(), clock)
    assert [m for m, _, _ in got_b] == MESSAGES == [m for m, _, _ in got_c]
    assert {sender for _, sender, _ in got_b} == {A}
    assert {t for _, _, t in got_b} == {1000.0}  # stamped on arrival, on the network's clock
    assert echoed == 0
    assert net.delivered == 2 * len(MESSAGES) and net.lost == 0


def test_to_reaches_one_peer_and_a_datagram_to_nobody_is_lost() -> None:
    net = MemoryNetwork()

    async def main() -> tuple[int, int]:
        async with OscBus(ENS, A, [B, C], network=net) as a, OscBus(ENS, B, [], network=net) as b, \
                OscBus(ENS, C, [], network=net) as c:
            await a.publish(MESSAGES[2], to=C)
            await a.publish(MESSAGES[2], to=("127.0.0.1", 5999))
            await drain(c, 1)
            await asyncio.sleep(0)  # a turn of the loop for a stray datagram to land: nothing to wait on
            return b.raw.stats.datagrams_in, c.received

    assert run(main()) == (0, 1)
    assert net.lost == 1


def test_garbage_and_strangers_are_counted_as_a_socket_counts_them() -> None:
    net = MemoryNetwork()

    async def main() -> tuple[dict[str, int], int, dict[str, int]]:
        guarded = net.transport(B, accept=lambda host: host == "127.0.0.1")
        async with net.transport(A, [B]) as a, net.transport(("127.0.0.2", 5001), [B]) as stranger, \
                guarded, OscBus(ENS, C, [], network=net) as c:
            reader = asyncio.create_task(drain(c, 1))  # the bus decodes (and refuses) as it is read
            a.send_raw(b"not osc at all")
            stranger.send("/barcelona/demo/control", [("s", "mute"), ("d", 1.0), ("s", "bass")])
            a.send("/barcelona/other/control", [("s", "tempo"), ("d", 90.0), ("s", "")], to=C)
            a.send("/barcelona/demo/note", [("d", 1.0)], to=C)
            await until(lambda: guarded.stats.datagrams_in == 2 and sum(c.invalid.values()) == 2, 1.0,
                        "the four datagrams to be taken in at B and decoded (and refused) at C")
            reader.cancel()
            return dict(guarded.stats.invalid), guarded.stats.refused, dict(c.invalid)

    invalid, refused, bus_invalid = run(main())
    assert invalid == {"not_osc": 1}
    assert refused == 1
    assert bus_invalid == {"foreign_address": 1, "note.arity": 1}


def test_a_bus_refuses_senders_its_ensemble_does_not_name_before_parsing() -> None:
    """A bus port takes datagrams from loopback, the conductor's and agents' addresses and
    `control.allow`; a stranger's, valid or not, are refused unread and counted per sender, in the
    table the caller gives (the conductor gives its control port's: one count per stranger)."""
    ens = parse_ensemble({"name": ENS, "control": {"allow": ["10.1.0.0/16"]},
                          "agents": [{"name": "bass", "instrument": "bass", "address": "127.0.0.3"}]})
    assert bus_senders(ens) == ["127.0.0.1", "::1", "127.0.0.3", "10.1.0.0/16"]
    net, table = MemoryNetwork(), Counter({"10.9.9.9": 2})  # a stranger the control port refused
    port = ens.osc_endpoint("conductor")

    async def main() -> tuple[list[Any], dict[str, int], dict[str, int], dict[str, int]]:
        async with open_bus(ens, "conductor", network=net, refused=table) as bus, \
                net.transport(("127.0.0.2", 6000)) as stranger, net.transport(("127.0.0.3", 6000)) as band, \
                net.transport(("10.1.2.3", 6000)) as surface:
            reader = asyncio.create_task(drain(bus, 2))
            for msg in MESSAGES:
                stranger.send(*codec.to_osc(ENS, msg), to=port)
            stranger.send_raw(b"not osc at all", to=port)
            band.send(*codec.to_osc(ENS, MESSAGES[2]), to=port)
            surface.send(*codec.to_osc(ENS, MESSAGES[-1]), to=port)
            got = await reader
            return got, bus.refused, bus.transport_invalid(), dict(bus.invalid)

    got, refused, transport, invalid = run(main())
    assert [m for m, _, _ in got] == [MESSAGES[2], MESSAGES[-1]]
    assert refused == dict(table) == {"10.9.9.9": 2, "127.0.0.2": len(MESSAGES) + 1}
    assert transport == {"refused": len(MESSAGES) + 1} and invalid == {}  # nothing reached a decoder


def test_an_address_taken_is_refused_naming_the_setting() -> None:
    net = MemoryNetwork()

    async def main() -> None:
        async with net.transport(A):
            async with net.transport(A, setting="control.port"):
                pass

    with pytest.raises(OSError, match=r"control.port: cannot listen on 127.0.0.1:5001: the port is in use"):
        run(main())


def test_a_wildcard_listener_hears_loopback_and_answers_from_it() -> None:
    net = MemoryNetwork()

    async def main() -> tuple[Any, Any]:
        async with net.transport(("0.0.0.0", 5300)) as surface, net.transport(A, [("127.0.0.1", 5300)]) as a:
            a.send("/x", [("i", 1)])
            packet = await asyncio.wait_for(surface.incoming().__anext__(), 1.0)
            surface.send("/y", [("i", 2)], to=packet.sender)
            answer = await asyncio.wait_for(a.incoming().__anext__(), 1.0)
            return packet.sender, answer.sender

    assert run(main()) == (A, ("127.0.0.1", 5300))


def test_latency_delays_each_datagram_on_the_loops_clock() -> None:
    clock = ManualClock(1000.0)
    net = MemoryNetwork(clock, latency_s=0.004)

    async def main() -> list[float]:
        async with OscBus(ENS, A, [B], network=net) as a, OscBus(ENS, B, [], network=net) as b:
            await a.publish(MESSAGES[2])
            await asyncio.sleep(0.001)  # the second send 1 ms later on the virtual clock: what is checked
            await a.publish(MESSAGES[3])
            return [t for _, _, t in await drain(b, 2)]

    assert run(main(), clock) == pytest.approx([1000.004, 1000.005])


def test_open_bus_takes_the_network_only_when_given_one() -> None:
    """An MQTT ensemble's processes meet on the in-memory OSC bus at their OSC addresses; nothing in
    an ensemble's YAML selects it."""
    ens = parse_ensemble({"name": ENS, "bus": {"transport": "mqtt", "sync": "udp"},
                          "agents": [{"name": "bass", "instrument": "bass"}]})
    net = MemoryNetwork()
    bus = open_bus(ens, "bass", network=net)
    assert isinstance(bus, OscBus) and type(bus.raw).__name__ == "MemoryTransport"
    assert bus.raw.address == ens.osc_endpoint("bass") and bus.raw.peers == tuple(ens.osc_peers("bass"))
    assert open_sync_bus(ens, "bass", network=net) is None  # the in-memory bus carries the pings
    assert open_sync_bus(ens, "bass") is not None
    assert type(open_bus(ens, "bass")).__name__ == "MqttBus"


def test_the_wire_is_the_codec_s() -> None:
    """What the receiver decodes is what the codec encodes, byte for byte through the OSC encoder."""
    from protocol.osc_wire import decode_datagram, encode_message

    for msg in MESSAGES:
        address, args = codec.to_osc(ENS, msg)
        [(addr, values, _)] = decode_datagram(encode_message(address, args))
        assert codec.from_osc(ENS, addr, values) == msg
