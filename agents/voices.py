"""Which voice of its training the model hears each part as.

A model trained by `python -m training` learnt its pieces with every voice on its own MIDI channel, in
score order (training/data.py: soprano 0, alto 1, tenor 2, bass 3 in a chorale), and it places a
part's notes by that channel. Asked to play a bass on channel 1 it draws an alto line, and the bass's
range piles those notes on its top edge (the default ensemble's bass played E3 on 43 % of its notes);
a comping piano on the tenor's channel, above the bass, played G3 and A3, the bottom of its range, on
65 % of its notes.

So inside the model (its context, its prompt and what it draws) each pitched part is on the channel of
the chorale voice nearest its register, and a bass part on the bass voice's. Everywhere else (the bus,
the output, the recording) a note keeps its part's own channel. A band with more pitched parts than a
chorale has voices keeps its own channels: sharing a voice, two parts were drawn into one register
(a six-part band's guitar and trumpet clung to their ranges' edges more than on their own channels).

A SkyTNT export learnt from General MIDI files, where channels say nothing of register, so it keeps
the ensemble's channels.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

from protocol.ensemble import AUTO_ROLE, NO_ROLE, Ensemble
from protocol.form import DRUM_CHANNEL

# The middle of each chorale voice's register in C (MIDI): soprano, alto, tenor, bass.
VOICE_CENTRES = (70, 64, 58, 50)
BASS_VOICE = 3
UPPER_VOICES = (0, 1, 2)
DEFAULT_RANGE = (36, 96)  # a part that gives no range (protocol/ensemble.py): its register is unknown


ROLES = ("bass", "comp", "melody", "drums")


def part_roles(ens: Ensemble, roles: dict[str, str]) -> dict[str, str]:
    """Every part's role with the player's as the YAML fixes it: `human.role: bass` (or an agent's
    name) is a bass line to voice above and to hear as the bass voice; `auto` and `none` leave the
    player the tune until heard otherwise."""
    h = ens.human
    if h is None or h.role in (AUTO_ROLE, NO_ROLE):
        return roles
    if h.role in ROLES:
        return {**roles, h.name: h.role}
    agent = next((a for a in ens.agents if a.name == h.role), None)
    return roles if agent is None else {**roles, h.name: agent.role or "comp"}


def model_channels(ens: Ensemble, roles: dict[str, str]) -> dict[str, int]:
    """The channel the model hears each part on, by name. ``roles`` is every part's role
    (agents/arrangement.py); a drum part keeps its own channel, where every model learnt drums."""
    out: dict[str, int] = {}
    upper: list[tuple[float, str]] = []
    for part in ens.parts():
        role = roles.get(part.name, "comp")
        if part.channel == DRUM_CHANNEL or role == "drums":
            out[part.name] = part.channel
        elif role == "bass":
            out[part.name] = BASS_VOICE
        else:
            lo, hi = part.range
            # a player who gives no range plays the tune (the human's role until heard otherwise)
            centre = VOICE_CENTRES[0] if (lo, hi) == DEFAULT_RANGE and role == "melody" else (lo + hi) / 2
            upper.append((centre, part.name))
    basses = [name for name, ch in out.items() if ch == BASS_VOICE]
    if len(upper) > len(UPPER_VOICES) or len(basses) > 1:
        return {p.name: p.channel for p in ens.parts()}
    upper.sort(key=lambda u: (-u[0], u[1]))  # high to low

    def cost(voices: tuple[int, ...]) -> float:
        return sum(abs(c - VOICE_CENTRES[v]) for (c, _), v in zip(upper, voices, strict=True))

    # each upper part its own voice, in register order, nearest in register
    best = min(combinations(UPPER_VOICES, len(upper)), key=cost)
    out.update({name: v for (_, name), v in zip(upper, best, strict=True)})
    return out


def learnt_voices(model: Path) -> bool:
    """Whether the model was trained here (its config records the training window), so its channels
    are voices; a SkyTNT export's are not."""
    from agents.model.model_config import CONFIG_FILE, read_tokenizer_config

    return read_tokenizer_config(model / CONFIG_FILE).train_window is not None
