"""What the conductor is told by the ensemble YAML: the player it listens to (`human`), the control
surface it is steered from (`control`), and the clocks it follows or leads (`conductor.link`,
`conductor.midi_clock`).

These are the conductor's settings (conductor/ reads them through protocol.ensemble); they sit in
protocol/ because every process validates the whole file.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from protocol.agent_config import PartConfig
from protocol.config_fields import IpLiteral, MidiApi, Name, Port, Strict

__all__ = [
    "AUTO_ROLE",
    "NO_ROLE",
    "ConductorConfig",
    "ControlConfig",
    "HumanConfig",
    "HumanSource",
    "LinkConfig",
    "MidiClockConfig",
]


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


class HumanSource(Strict):
    """`file`: a MIDI file replayed as the human; `midi`: a MIDI input port; `osc`: notes over OSC."""

    type: Literal["file", "midi", "osc", "none"] = "none"
    path: str | None = None
    port: str | None = None
    api: MidiApi = "auto"
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


class MidiClockConfig(Strict):
    """MIDI clock out (24 ppqn, Start/Continue/Stop, Song Position) for drum machines and DAWs."""

    port: str | None = None
    virtual: bool = False
    api: MidiApi = "auto"

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
