"""The ensemble YAML schema: one pydantic model that every process validates its own part against.

Each role owns its settings: the agents' parts, engines and outputs in protocol/agent_config.py, the
conductor's player, control surface and clocks in protocol/conductor_config.py. This module composes
them with what every process shares (the bus and the timing) into `Ensemble`, whose rules span
sections, and re-exports them so that one import serves every reader of the file.

A bad file must stop the launcher with one line naming the field (`agents.1.channel: ...`), never a
traceback, so `load_ensemble` turns pydantic's report into `EnsembleError` with that line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from protocol.agent_config import AgentConfig, DrumStyle, Dynamic, EngineConfig, Hit, OutputConfig, PartConfig
from protocol.conductor_config import (
    AUTO_ROLE,
    NO_ROLE,
    ConductorConfig,
    ControlConfig,
    HumanConfig,
    HumanSource,
    LinkConfig,
    MidiClockConfig,
)
from protocol.config_fields import Channel, IpLiteral, MidiApi, Name, Pitch, Port, Strict, ranged

__all__ = [
    "AUTO_ROLE",
    "FOLLOW",
    "NO_ROLE",
    "AgentConfig",
    "BusConfig",
    "Channel",
    "ConductorConfig",
    "ControlConfig",
    "DrumStyle",
    "DuplicateKeyError",
    "Dynamic",
    "EngineConfig",
    "Ensemble",
    "EnsembleError",
    "Hit",
    "HumanConfig",
    "HumanSource",
    "IpLiteral",
    "LinkConfig",
    "MidiApi",
    "MidiClockConfig",
    "MqttBusConfig",
    "Name",
    "OscBusConfig",
    "OutputConfig",
    "PartConfig",
    "Pitch",
    "Port",
    "Strict",
    "TimingConfig",
    "TlsConfig",
    "load_ensemble",
    "parse_ensemble",
    "ranged",
]


class OscBusConfig(Strict):
    """Brokerless bus: each process listens on base_port + its index (conductor 0, agents 1..)."""

    base_port: Port = 57400
    monitor_port: Port | None = None


class TlsConfig(Strict):
    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False


class MqttBusConfig(Strict):
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"  # an IP or a name the machine resolves
    port: Port = 1883
    username: str | None = None
    password: str | None = None
    tls: TlsConfig | None = None
    keepalive: Annotated[int, Field(ge=1, le=600)] = 5


class BusConfig(Strict):
    """`sync` is how agents measure their offset to the conductor's clock. `udp` pings the conductor
    straight at its OSC port (osc.base_port on the conductor's address) even when the bus is MQTT:
    a TCP stream through a broker holds every later message back behind a lost packet, which on a
    lossy link skews the round trips by tens of milliseconds. `bus` pings over the bus itself, for
    a network where only the broker's port is open. On the OSC bus the two are the same."""

    transport: Literal["osc", "mqtt"] = "osc"
    sync: Literal["udp", "bus"] = "udp"
    osc: OscBusConfig = OscBusConfig()
    mqtt: MqttBusConfig = MqttBusConfig()


class TimingConfig(Strict):
    latency_ms: Annotated[float, Field(ge=5, le=2000)] = 150.0
    commit_beats: Annotated[float, Field(gt=0, le=8)] = 1.0
    horizon_beats: Annotated[float, Field(gt=0, le=64)] = 2.0
    count_in_beats: Annotated[float, Field(ge=0, le=16)] = 1.0
    # `click`: the drums part (else the first agent) clicks each beat of the count-in on GM channel
    # 10; `silent`: the count-in is only the start-up lead, as a DAW-fed or solo-cued set wants
    count_in: Literal["silent", "click"] = "silent"
    # how long every part holds the final chord at the end of a --bars run or a /stop; unset: one bar
    ending_beats: Annotated[float, Field(ge=0, le=32)] | None = None
    realtime: bool = True
    # one process on each machine writes every part the launcher starts there, at its moment
    # (agents/output_host.py); false: each agent times its own notes in a thread of its own
    output_host: bool = True


FOLLOW = "follow"  # `chords: follow`: the plan is what the conductor hears the player play


class Ensemble(Strict):
    name: Name = "demo"
    # the starting tempo; `follow` starts at 120 and follows the player (the same as tempo_follow)
    tempo: Annotated[float, ranged("tempo")] = 120.0
    # the conductor follows the player's tempo from their onsets (conductor/tempo_follow.py)
    tempo_follow: bool = False
    meter: Annotated[int, ranged("meter")] = 4
    key: str = "C"
    # a written plan (`Dm7 G7 | Cmaj7`), or `follow`: the conductor follows the player's chords and
    # key. Left out, it follows too (starting on the key's tonic chord); see `follows_chords`.
    chords: str = "C"
    # a written plan is played as the player plays it: a chord the player holds against the written
    # one (an E-flat over C, a B-flat) replaces it until the written chord's span ends
    substitutions: bool = True
    loop: bool = True
    bus: BusConfig = BusConfig()
    control: ControlConfig = ControlConfig()
    timing: TimingConfig = TimingConfig()
    conductor: ConductorConfig = ConductorConfig()
    human: HumanConfig | None = None
    # the ensemble's seed: an agent without its own engine.seed plays from this one (offset by its
    # index), so two runs of one file can be compared note for note; unset, each run differs
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    agents: tuple[AgentConfig, ...] = Field(default=(), max_length=15)

    @model_validator(mode="before")
    @classmethod
    def _tempo_follow(cls, data: Any) -> Any:
        """`tempo: follow` is the short way to say `tempo_follow: true` from the default tempo."""
        if isinstance(data, dict) and isinstance(data.get("tempo"), str) and data["tempo"].strip() == FOLLOW:
            data = {k: v for k, v in data.items() if k != "tempo"}
            data["tempo_follow"] = True
        return data

    @model_validator(mode="after")
    def _unique(self) -> Ensemble:
        names = [a.name for a in self.agents] + ([self.human.name] if self.human else [])
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agents: part names must be unique, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _human_role_known(self) -> Ensemble:
        """`human.role` names a role or a part of this file: a typo would otherwise leave the band
        doubling the player without a word."""
        from protocol.instruments import ROLES

        h = self.human
        if h is None or h.role in (AUTO_ROLE, NO_ROLE, *ROLES) or h.role in [a.name for a in self.agents]:
            return self
        agents = ", ".join(a.name for a in self.agents) or "none"
        raise ValueError(
            f"human.role: {h.role!r} is neither auto, none, a role ({', '.join(ROLES)}) nor an agent "
            f"of this ensemble ({agents})"
        )

    @model_validator(mode="after")
    def _hits_in_the_bar(self) -> Ensemble:
        """A written hit at or past the bar's last beat would never sound (the pattern wraps per bar)."""
        for i, a in enumerate(self.agents):
            if "rhythm" not in a.engine.model_fields_set:
                continue  # the default rhythm: the pattern engine skips what a short meter cannot hold
            for j, hit in enumerate(a.engine.rhythm):
                if hit.beat >= self.meter:
                    raise ValueError(
                        f"agents.{i}.engine.rhythm.{j}.beat: {hit.beat:g} is past the bar "
                        f"(meter {self.meter}: beats 0 to below {self.meter})"
                    )
        return self

    @property
    def follows_chords(self) -> bool:
        """Whether the conductor starts out following the player: `chords: follow`, or no `chords:`.

        Without a human nothing is heard, so the plan stays on the key's tonic chord: the same `C`
        an ensemble without `chords:` always had.
        """
        return self.chords.strip() == FOLLOW or "chords" not in self.model_fields_set

    @property
    def plan_text(self) -> str:
        """The written plan; when following, the key's tonic chord until the player is heard."""
        return self.key if self.chords.strip() == FOLLOW else self.chords

    def agent(self, name: str) -> AgentConfig:
        for a in self.agents:
            if a.name == name:
                return a
        raise KeyError(f"agents: no agent named {name!r}")

    def parts(self) -> list[PartConfig]:
        return ([self.human] if self.human else []) + list(self.agents)

    # -- the brokerless bus addresses, derived so no two processes ever disagree ------------------
    def osc_endpoint(self, who: str) -> tuple[str, int]:
        """The UDP address a process listens on: conductor at base_port, agent i at base_port+1+i."""
        base = self.bus.osc.base_port
        if who == "conductor":
            return (self.conductor.address, base)
        for i, a in enumerate(self.agents):
            if a.name == who:
                return (a.address, base + 1 + i)
        raise KeyError(f"agents: no agent named {who!r}")

    def osc_peers(self, who: str) -> list[tuple[str, int]]:
        names = ["conductor"] + [a.name for a in self.agents]
        peers = [self.osc_endpoint(n) for n in names if n != who]
        if self.bus.osc.monitor_port:
            peers.append((self.conductor.address, self.bus.osc.monitor_port))
        return peers


class EnsembleError(ValueError):
    """A broken ensemble file; str() is the one line the launcher prints."""


class DuplicateKeyError(yaml.YAMLError):
    """A key written twice in one YAML mapping; str() names its path and both lines."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping: plain YAML loading keeps the last
    one silently, so a second `channel:` under a part would quietly win over the first."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _no_duplicate_keys(node, "")
        return self.construct_document(node)


def _no_duplicate_keys(node: yaml.Node, path: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{path}.{key}" if path else str(key)
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKeyError(f"{where}: written twice (lines {seen[key]} and {line})")
                seen[key] = line
            _no_duplicate_keys(value_node, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _no_duplicate_keys(item, f"{path}.{i}" if path else str(i))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    named = re.match(r"^([A-Za-z_][\w.]*): ", msg)  # a rule over a whole section names its field
    if named and err["type"] == "value_error":
        # `agents.0.output` + `port: ...` -> `agents.0.output.port: ...`; at the top, the name alone
        return f"{loc}.{msg}" if loc else msg
    return f"{loc or '(top)'}: {msg}"


def parse_ensemble(data: Any, source: str = "<ensemble>") -> Ensemble:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise EnsembleError(f"{source}: (top): expected a mapping of settings, got {type(data).__name__}")
    try:
        ens = Ensemble.model_validate(data)
    except ValidationError as exc:
        raise EnsembleError(f"{source}: {_first_error(exc)}") from None
    from protocol.harmony import ChordError, ChordPlan

    try:
        ChordPlan.parse(ens.plan_text, loop=ens.loop, key=ens.key)
    except (ChordError, ValueError, TypeError) as exc:
        raise EnsembleError(f"{source}: chords: {exc}") from None
    return ens


def load_ensemble(path: str | Path) -> Ensemble:
    """Read and validate a YAML file; relative paths inside it are taken from the file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnsembleError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise EnsembleError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02X} on line {line}); save it as UTF-8"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except DuplicateKeyError as exc:
        raise EnsembleError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise EnsembleError(f"{path}: YAML syntax{where}: {problem}") from None
    return parse_ensemble(data, str(path))
