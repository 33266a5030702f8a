"""The ensemble YAML schema: one pydantic model that every process validates its own part against.

A bad file must stop the launcher with one line naming the field (`agents.1.channel: ...`), never a
traceback, so `load_ensemble` turns pydantic's report into `EnsembleError` with that line.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from protocol.mix import DEFAULT_DYNAMICS, DEFAULT_PAN, DEFAULT_VOLUME
from protocol.rules import RULES


def ranged(name: str) -> Any:
    """The schema bound of a tunable number, read from the one rule table (protocol/rules.py)."""
    lo, hi = RULES[name].bounds
    return Field(ge=lo, le=hi)


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Channel = Annotated[int, ranged("channel")]
Pitch = Annotated[int, ranged("pitch")]
Port = Annotated[int, Field(ge=1, le=65535)]


def _ip_literal(value: str) -> str:
    """Bus and control sockets bind and send to IP literals only (protocol/transport_osc.py): a name
    would need a DNS lookup in the timing path, so it is refused here rather than at start-up."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (write e.g. 127.0.0.1 or 192.168.1.20)") from None
    return value


IpLiteral = Annotated[str, AfterValidator(_ip_literal)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ControlConfig(Strict):
    """The OSC control surface: Max/MSP and TouchOSC steer the ensemble here.

    `listen` is one IP address, or the word `any` for every interface. The wildcard addresses
    themselves (`0.0.0.0`, `::`) are refused: a port every host on the network can reach should be
    asked for in words, and the conductor warns when it is.
    """

    listen: str = "127.0.0.1"  # an IP literal or `any`: checked by _listen
    port: Port = 57300
    allow: tuple[str, ...] = ("127.0.0.1/32",)
    reply_port: Port | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        if value == "any":
            return value
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address (or `any` for every interface)") from None
        if ip.is_unspecified:
            raise ValueError(f"{value} listens on every interface: write `listen: any` to mean that")
        return value

    @property
    def bind_host(self) -> str:
        """The address to bind: `any` is IPv4's wildcard (the surfaces on a stage speak IPv4)."""
        return "0.0.0.0" if self.listen == "any" else self.listen

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


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


class OutputConfig(Strict):
    """Where a part sounds: a MIDI port, an OSC synth host, built-in fluidsynth, or nowhere."""

    type: Literal["null", "midi", "osc", "fluidsynth"] = "null"
    port: str | None = None
    virtual: bool = False
    api: Literal["auto", "jack", "alsa", "coremidi"] = "auto"
    host: str = "127.0.0.1"
    osc_port: Port | None = None
    address: str = "/note"
    timetag: bool = True
    soundfont: str | None = None
    gain: Annotated[float, Field(ge=0, le=10)] = 1.0
    audio_driver: str | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _yaml_null(cls, value: Any) -> Any:
        """`type: null` in YAML reads as None; the user meant the null output."""
        return "null" if value is None else value

    @model_validator(mode="after")
    def _complete(self) -> OutputConfig:
        """An output that would fail to open (or, for osc, play into a port nobody listens on)."""
        if self.type == "midi" and not self.virtual and not self.port:
            raise ValueError("port: a midi output needs a port (see --list-ports) or virtual: true")
        if self.type == "osc" and self.osc_port is None:
            raise ValueError("osc_port: an osc output needs the UDP port its synth listens on")
        return self


class Hit(Strict):
    """One rhythm step: where in the bar, how long, and (for drums) which pitch."""

    beat: Annotated[float, Field(ge=0, le=32)]
    duration: Annotated[float, Field(gt=0, le=32)] = 0.5
    pitch: Pitch | None = None
    velocity: Annotated[int, Field(ge=1, le=127)] = 90


DrumStyle = Literal["rock", "pop", "funk", "jazz", "shuffle", "bossa", "waltz", "ballad"]


class EngineConfig(Strict):
    """`pattern`: voices the chord plan on a rhythm (no model). `onnx`: a SkyTNT-format model.
    `drums`: a drummer's grooves by `style`, varied bar to bar, with a fill ending every
    `phrase_bars` bars and before the chord plan loops (docs/drums.md)."""

    type: Literal["pattern", "onnx", "drums"] = "pattern"
    voicing: Literal["root", "root_fifth", "chord", "arpeggio", "drums"] = "chord"
    rhythm: tuple[Hit, ...] = (Hit(beat=0, duration=1.0), Hit(beat=2, duration=1.0))
    model: str | None = None
    temperature: Annotated[float, ranged("temperature")] = 1.0
    top_p: Annotated[float, ranged("top_p")] = 0.98
    top_k: Annotated[int, ranged("top_k")] = 20
    density: Annotated[float, ranged("density")] = 1.0
    chord_bias: Annotated[float, ranged("chord_bias")] = 2.0
    bass: bool = False
    max_rest_beats: Annotated[int, Field(ge=0, le=127)] = 4
    max_note_beats: Annotated[float, Field(gt=0, le=127)] = 8.0
    # events of context the model sees (the oldest quarter goes when full); unset: 1.5 x the model's
    # training window where its config.json records one, else 1024 (agents/engines/worker_config.py)
    context_events: Annotated[int, Field(ge=32, le=4096)] | None = None
    # onsets only on multiples of this many beats (1, 1/2, 1/4, 1/8, 1/16); unset: the model's 1/16
    grid: float | None = None
    seed: int | None = None
    # int8: a float32 export is quantised once at load into a cache folder (the user's files are only
    # read) and its agreement with float32 logged (agents/model/int8_cache.py)
    quantize: Literal["none", "int8"] = "none"
    # share: agents with the same model file and quantize run it in one model process, their decode
    # steps batched (agents/engines/model_host.py); for big models, where each step reads 100s of MB
    share: bool = False
    # type: drums
    style: DrumStyle = "rock"
    phrase_bars: Literal[4, 8] = 4
    fills: bool = True

    @field_validator("grid")
    @classmethod
    def _grid_divides_a_beat(cls, value: float | None) -> float | None:
        if value is not None and value not in (1, 0.5, 0.25, 0.125, 0.0625):
            raise ValueError(f"must split a beat into 1, 2, 4, 8 or 16 (1, 0.5, 0.25, 0.125 or 0.0625), "
                             f"got {value}")
        return value

    @model_validator(mode="after")
    def _model_given(self) -> EngineConfig:
        if self.share and self.type != "onnx":
            raise ValueError(f"share: only an onnx engine has a model to share (type is {self.type})")
        if self.type == "onnx" and self.model is None:
            return self.model_copy(update={"model": "default"})
        return self


class PartConfig(Strict):
    name: Name
    channel: Channel = 0
    program: Annotated[int, ranged("program")] = 0
    range: tuple[Pitch, Pitch] = (36, 96)
    host: Name = "local"
    address: IpLiteral = "127.0.0.1"
    output: OutputConfig = OutputConfig()
    # another part on the same MIDI channel is refused unless this part says it shares the channel
    # (their notes and controllers mix on one channel: a doubling on purpose, never by accident)
    share_channel: bool = False

    @field_validator("range")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"low {value[0]} is above high {value[1]}")
        return value


class HumanSource(Strict):
    """`file`: a MIDI file replayed as the human; `midi`: a MIDI input port; `osc`: notes over OSC."""

    type: Literal["file", "midi", "osc", "none"] = "none"
    path: str | None = None
    port: str | None = None
    api: Literal["auto", "jack", "alsa", "coremidi"] = "auto"
    loop: bool = True
    transpose: Annotated[int, Field(ge=-48, le=48)] = 0

    @model_validator(mode="after")
    def _needs(self) -> HumanSource:
        if self.type == "file" and not self.path:
            raise ValueError("path: a file source needs a path to a MIDI file")
        return self


AUTO_ROLE = "auto"  # `human.role: auto`: the conductor hears which part the player plays
NO_ROLE = "none"  # `human.role: none`: every agent plays whatever the player does


class HumanConfig(PartConfig):
    """The player. `role` says which part the player takes, so the agent playing it makes room:
    `auto` (heard from what the player plays: bass line, comping chords, melody, drums), a role
    (`bass`, `comp`, `melody`, `drums`) or an agent's name (that part, whenever the player plays),
    or `none`. An agent yields at a bar line and comes back `return_bars` bars after the player
    left its part (docs/roles.md)."""

    source: HumanSource = HumanSource()
    role: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = AUTO_ROLE
    return_bars: Annotated[int, Field(ge=1, le=64)] = 2


Dynamic = Literal["pp", "p", "mp", "mf", "f", "ff"] | Annotated[int, ranged("dynamics")]


class AgentConfig(PartConfig):
    """An agent's part. `instrument` (protocol/instruments.py) fills program, range, polyphony and
    role where the YAML leaves them out; without one the role is guessed from channel and range.
    `doubling: true` lets the part sound a pitch another part sounds at the same moment (unisons are
    otherwise voiced away). `volume` and `pan` are sent as CC7/CC10 at start; `dynamics` is the
    part's level, the centre its accents and phrases move around."""

    engine: EngineConfig = EngineConfig()
    instrument: str | None = None
    role: Literal["bass", "comp", "melody", "drums"] | None = None
    polyphony: Annotated[int, Field(ge=1, le=16)] | None = None
    doubling: bool = False
    dynamics: Dynamic = DEFAULT_DYNAMICS
    volume: Annotated[int, ranged("volume")] = DEFAULT_VOLUME
    pan: Annotated[float, ranged("pan")] = DEFAULT_PAN

    @field_validator("instrument")
    @classmethod
    def _known_instrument(cls, value: str | None) -> str | None:
        if value is not None:
            from protocol.instruments import instrument

            instrument(value)
        return value

    @model_validator(mode="after")
    def _instrument_defaults(self) -> AgentConfig:
        from protocol.instruments import guess_role, instrument

        given = self.model_fields_set
        update: dict[str, Any] = {}
        if self.instrument is not None:
            inst = instrument(self.instrument)
            if "program" not in given:
                update["program"] = inst.program
            if "range" not in given:
                update["range"] = inst.range
            if "channel" not in given and inst.channel is not None:
                update["channel"] = inst.channel
            role, polyphony = inst.role, inst.polyphony
        else:
            role = guess_role(self.channel, self.range, self.engine.bass)
            polyphony = 1 if role == "bass" else (8 if role == "drums" else 4)
        if self.role is None:
            update["role"] = role
        if self.polyphony is None:
            update["polyphony"] = polyphony
        return self.model_copy(update=update) if update else self


class MidiClockConfig(Strict):
    """MIDI clock out (24 ppqn, Start/Continue/Stop, Song Position) for drum machines and DAWs."""

    port: str | None = None
    virtual: bool = False
    api: Literal["auto", "jack", "alsa", "coremidi"] = "auto"

    @model_validator(mode="after")
    def _needs_port(self) -> MidiClockConfig:
        if not self.virtual and not self.port:
            raise ValueError("port: name the MIDI port to send clock to, or set virtual: true")
        return self


class LinkConfig(Strict):
    """Ableton Link (the `link` extra): `follow` takes the session's tempo and phase, `lead` sets them."""

    enabled: bool = False
    mode: Literal["follow", "lead"] = "follow"
    quantum: Annotated[float, Field(gt=0, le=32)] = 4.0
    join_wait_s: Annotated[float, Field(ge=0, le=30)] = 2.0


class ConductorConfig(Strict):
    host: Name = "local"
    address: IpLiteral = "127.0.0.1"
    midi_clock: MidiClockConfig | None = None
    link: LinkConfig = LinkConfig()


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
