"""What an agent is told by the ensemble YAML: its part (name, channel, range, where it runs), where it
sounds (`output`), and how it plays (`engine`).

These are the agents' settings (agents/ reads them through protocol.ensemble); they sit in protocol/
because every process validates the whole file. The player's part (protocol/conductor_config.py's
HumanConfig) is a `PartConfig` too, so it is written the same way as an agent's.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from protocol.config_fields import Channel, IpLiteral, MidiApi, Name, Pitch, Port, Strict, ranged
from protocol.mix import DEFAULT_DYNAMICS, DEFAULT_PAN, DEFAULT_VOLUME

__all__ = ["AgentConfig", "DrumStyle", "Dynamic", "EngineConfig", "Hit", "OutputConfig", "PartConfig"]


class OutputConfig(Strict):
    """Where a part sounds: a MIDI port, an OSC synth host, built-in fluidsynth, or nowhere."""

    type: Literal["null", "midi", "osc", "fluidsynth"] = "null"
    port: str | None = None
    virtual: bool = False
    api: MidiApi = "auto"
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
    # a comping part's chords: this many notes under the model's notes on strong beats and chord
    # changes, the model's on top (agents/engines/comp_chords.py); unset: 3 (at most the polyphony);
    # 1: the model's line alone. Only a comping part takes more than 1
    chord_notes: Annotated[int, Field(ge=1, le=8)] | None = None
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
        final = update.get("role", self.role)
        if (self.engine.chord_notes or 1) > 1 and final != "comp":
            raise ValueError(f"engine.chord_notes: only a comping part plays chords under its line "
                             f"(this part's role is {final})")
        return self.model_copy(update=update) if update else self
