"""What a run would trip on, found before any process starts: `--check` and every launch run this.

The schema (protocol/ensemble.py) judges each field alone. Here are the rules that need the whole
file (ports and channels shared between parts, parts spread over machines), the filesystem (melody,
model, soundfont, TLS files), the network (names that must resolve, ports that must be free) and
this install (python-rtmidi, where the file opens a MIDI port).
Each problem is one line that starts with the field it is about, so a file that breaks one thing
gives one line, and the launcher never starts a process that would fail at start-up.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from launcher.file_checks import file_problems
from protocol.ensemble import Ensemble, EnsembleError, load_ensemble
from protocol.midi_backend import midi_ports_error

__all__ = ["Binding", "bindings", "check_ensemble", "check_file", "check_ports_free"]

RESOLVE_WAIT_S = 3.0
MAX_PORT = 65535


@dataclass(frozen=True)
class Binding:
    """A UDP port some process listens on: who (the field that places it), which machine, address."""

    field: str
    who: str
    host: str  # the YAML's `host:` name: ports clash only on one machine
    address: str
    port: int


def _wildcard(address: str) -> bool:
    return ipaddress.ip_address(address).is_unspecified


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _udp_sync(ens: Ensemble) -> bool:
    """Whether the processes listen on their bus ports: always on the OSC bus, and beside an MQTT bus
    when clock sync pings go straight over UDP (`bus.sync: udp`, protocol/bus.py open_sync_bus)."""
    return ens.bus.transport == "osc" or ens.bus.sync == "udp"


def bindings(ens: Ensemble) -> list[Binding]:
    """Every UDP port the ensemble's own processes bind (Ensemble.osc_endpoint, the control surface)."""
    out: list[Binding] = []
    if _udp_sync(ens):
        addr, port = ens.osc_endpoint("conductor")
        out.append(
            Binding(
                "bus.osc.base_port",
                "the conductor's bus port (bus.osc.base_port)",
                ens.conductor.host,
                addr,
                port,
            )
        )
        for i, a in enumerate(ens.agents):
            addr, port = ens.osc_endpoint(a.name)
            out.append(
                Binding(
                    "bus.osc.base_port",
                    f"agent {a.name}'s bus port (bus.osc.base_port + {1 + i})",
                    a.host,
                    addr,
                    port,
                )
            )
    out.append(
        Binding(
            "control.port",
            "the control surface",
            ens.conductor.host,
            ens.control.bind_host,
            ens.control.port,
        )
    )
    return out


def _listeners(ens: Ensemble) -> list[Binding]:
    """Ports others listen on beside the ensemble's own: the bus monitor and the surfaces' reply port."""
    out = bindings(ens)
    if ens.bus.transport == "osc" and ens.bus.osc.monitor_port:
        out.append(
            Binding(
                "bus.osc.monitor_port",
                "the bus monitor",
                ens.conductor.host,
                ens.conductor.address,
                ens.bus.osc.monitor_port,
            )
        )
    if ens.control.reply_port:
        # a surface on the conductor's machine receives its ticks there, on whichever address
        out.append(
            Binding(
                "control.reply_port",
                "the surfaces' replies",
                ens.conductor.host,
                "0.0.0.0",
                ens.control.reply_port,
            )
        )
    return out


def _named(b: Binding) -> str:
    """`agent piano's bus port (bus.osc.base_port + 2) on 127.0.0.1`: who, the setting, the address."""
    who = b.who if b.field in b.who else f"{b.who} ({b.field})"
    return f"{who} on {'any address' if _wildcard(b.address) else b.address}"


def _clash(a: Binding, b: Binding) -> bool:
    if a.host != b.host or a.port != b.port:
        return False
    # A wildcard takes the port on every address (`::` on Linux on IPv4 too): it clashes with all.
    return _wildcard(a.address) or _wildcard(b.address) or a.address == b.address


def _port_problems(ens: Ensemble) -> Iterator[str]:
    if _udp_sync(ens) and ens.agents:
        last = ens.bus.osc.base_port + len(ens.agents)
        if last > MAX_PORT:
            i = MAX_PORT - ens.bus.osc.base_port  # the first agent past the end
            yield (
                f"bus.osc.base_port: {ens.bus.osc.base_port} puts agents.{i} ({ens.agents[i].name}) on port "
                f"{ens.bus.osc.base_port + 1 + i}, past {MAX_PORT}; with {len(ens.agents)} agents it can be "
                f"at most {MAX_PORT - len(ens.agents)}"
            )
            return
    taken: list[Binding] = []
    for b in _listeners(ens):
        other = next((t for t in taken if _clash(t, b)), None)
        if other is not None:
            yield (
                f"{b.field}: port {b.port}, wanted by {_named(b)}, is already {_named(other)} "
                f"(both on host {b.host})"
            )
        taken.append(b)
    for i, a in enumerate(ens.agents):
        o = a.output
        if o.type != "osc" or o.osc_port is None:
            continue
        for t in taken:
            same_machine = (_loopback(o.host) and t.host == a.host) or o.host == t.address
            if same_machine and t.port == o.osc_port:
                yield (
                    f"agents.{i}.output.osc_port: {o.host}:{o.osc_port} is {t.who}, not a synth: the notes "
                    f"would go into the ensemble itself"
                )
                break


def _channel_problems(ens: Ensemble) -> Iterator[str]:
    seen: dict[int, str] = {}
    parts = ([("human", ens.human)] if ens.human else []) + [
        (f"agents.{i}", a) for i, a in enumerate(ens.agents)
    ]
    for field, part in parts:
        first = seen.get(part.channel)
        if first is not None and not part.share_channel:
            yield (
                f"{field}.channel: {part.channel} is also {first}'s channel; give each part its own channel, "
                f"or set share_channel: true on {field} to mix them on one"
            )
        seen.setdefault(part.channel, f"{field} ({part.name})")


def _host_problems(ens: Ensemble) -> Iterator[str]:
    hosts = sorted({ens.conductor.host, *(a.host for a in ens.agents)})
    if len(hosts) < 2:
        return
    listed = ", ".join(hosts)
    if _udp_sync(ens) and _loopback(ens.conductor.address):
        yield (
            f"conductor.address: {ens.conductor.address} is a loopback address, but parts run on hosts "
            f"{listed}: agents on another host would reach their own machine, not the conductor; give "
            f"the conductor's address on the network"
        )
    if not _udp_sync(ens):
        return
    for i, a in enumerate(ens.agents):
        if a.host != ens.conductor.host and _loopback(a.address):
            yield (
                f"agents.{i}.address: {a.address} is a loopback address, but agent {a.name} runs on host "
                f"{a.host} and the conductor on {ens.conductor.host}; give {a.host}'s address on the network"
            )


def _family_problems(ens: Ensemble) -> Iterator[str]:
    """UDP peers must share the conductor's IP version: a socket cannot send from IPv4 to IPv6."""
    if not _udp_sync(ens):
        return
    want = ipaddress.ip_address(ens.conductor.address).version
    for i, a in enumerate(ens.agents):
        if ipaddress.ip_address(a.address).version != want:
            yield (
                f"agents.{i}.address: {a.address} is IPv{6 if want == 4 else 4}, but conductor.address "
                f"{ens.conductor.address} is IPv{want}; the bus needs one IP version"
            )


def structural_problems(ens: Ensemble) -> list[str]:
    """Rules over the whole file: no file or network access."""
    out: list[str] = []
    if not ens.agents and (ens.human is None or ens.human.source.type == "none"):
        what = "no human part" if ens.human is None else "a human with source type none"
        out.append(
            f"agents: the ensemble plays nothing: no agents and {what}; add an agent or a human source"
        )
    out += _port_problems(ens)
    out += _channel_problems(ens)
    out += _host_problems(ens)
    out += _family_problems(ens)
    if ens.bus.transport == "mqtt":
        m = ens.bus.mqtt
        if m.password is not None and m.username is None:
            out.append("bus.mqtt.password: a password needs a username (bus.mqtt.username)")
    return out


# -- the network -------------------------------------------------------------------------------------
def _resolve(name: str) -> str | None:
    """Why `name` does not resolve, or None. A lookup that hangs (no DNS) counts as failed after a while."""
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    result: list[str | None] = [f"no answer within {RESOLVE_WAIT_S:.0f} s"]

    def lookup() -> None:
        try:
            socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
            result[0] = None
        except (OSError, UnicodeError) as exc:
            result[0] = str(getattr(exc, "strerror", None) or exc)

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(RESOLVE_WAIT_S)
    return result[0]


def _network_problems(ens: Ensemble, host: str | None) -> Iterator[str]:
    if ens.bus.transport == "mqtt":
        why = _resolve(ens.bus.mqtt.host)
        if why is not None:
            yield f"bus.mqtt.host: cannot resolve {ens.bus.mqtt.host!r}: {why}"
    for i, a in enumerate(ens.agents):
        if a.output.type == "osc" and (host is None or a.host == host):
            why = _resolve(a.output.host)
            if why is not None:
                yield f"agents.{i}.output.host: cannot resolve {a.output.host!r}: {why}"


def check_ensemble(ens: Ensemble, yaml_path: Path, host: str | None = None) -> list[str]:
    """Every problem that would stop or spoil a run, one line each, field first; [] when none.

    `host` limits the files and names looked at to the processes `--host` starts here: a soundfont
    that exists only on the band's machine is no problem on the stage laptop."""
    yaml_dir = yaml_path.resolve().parent
    problems = structural_problems(ens)
    problems += file_problems(ens, yaml_dir, host)
    problems += _network_problems(ens, host)
    midi = midi_ports_error(ens, host)  # MIDI ports on an install without the `midi` extra
    problems += [midi] if midi else []
    return problems


def check_ports_free(ens: Ensemble, host: str | None = None) -> list[str]:
    """At launch, the UDP ports this machine's processes will bind, each tried and let go: a port in
    use (another ensemble still playing) or an address this machine does not have, named with the
    field that asked for it, before a child fails with a bare errno. Not part of `--check`, which
    judges the file, not what else runs at the moment."""
    out: list[str] = []
    for b in bindings(ens):
        if host is not None and b.host != host:
            continue
        family = socket.AF_INET6 if ipaddress.ip_address(b.address).version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.bind((b.address, b.port))
            except OSError as exc:
                out.append(
                    f"{b.field}: cannot listen on UDP {b.address}:{b.port} for {b.who}: {exc.strerror or exc}"
                )
    return out


def check_file(path: Path, host: str | None = None) -> tuple[Ensemble | None, list[str]]:
    """What `--check` does: the schema first (its one line), then every rule above, each line
    starting with the file. The ensemble comes back only when nothing is wrong."""
    try:
        ens = load_ensemble(path)
    except EnsembleError as exc:
        return None, [str(exc)]
    problems = [f"{path}: {p}" for p in check_ensemble(ens, path, host)]
    return (None if problems else ens), problems
