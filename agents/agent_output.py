"""The agent's sending side, as its YAML section and its mix settings make it: what output it opens,
and the fader and pan moves it sends the synth at once (agents/agent.py plays the notes through it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from agents.output_link import OutputLink
from agents.outputs import Output, OutputError
from protocol.ensemble import AgentConfig
from protocol.form import DRUM_CHANNEL
from protocol.messages import AgentParams
from protocol.mix import CC_PAN, CC_VOLUME, pan_cc

log = logging.getLogger("barcelona.agent")


def output_spec(cfg: AgentConfig, name: str, base_dir: Path, params: AgentParams, *,
                clicks: bool) -> dict[str, Any]:
    """The schema's output section in the form the output factory reads. ``clicks``: this part
    plays the count-in, on the drum channel; ``params`` its place in the mix."""
    o = cfg.output
    spec: dict[str, Any] = {
        "type": o.type,
        "name": f"barcelona-{name}",
        "channels": sorted({cfg.channel, *([DRUM_CHANNEL] if clicks else [])}),
        "programs": {cfg.channel: cfg.program},
        # The part's place in the mix, set once its program is: whatever the synth had before
        # (another song's fader) would otherwise stay.
        "controls": {cfg.channel: {CC_VOLUME: params.volume, CC_PAN: pan_cc(params.pan)}},
    }
    if o.type == "midi":
        spec.update(port=o.port, virtual=o.virtual, api=o.api, client_name=f"barcelona-{name}")
    elif o.type == "osc":
        spec.update(host=o.host, port=o.osc_port or 57120, address=o.address, timetag=o.timetag)
    elif o.type == "fluidsynth":
        soundfont = o.soundfont
        if soundfont and not Path(soundfont).is_absolute():
            soundfont = str(base_dir / soundfont)
        spec.update(soundfont=soundfont, gain=o.gain, audio_driver=o.audio_driver)
    return spec


def send_mix(out: Output | OutputLink | None, channel: int, before: AgentParams, now: AgentParams,
             name: str) -> None:
    """A volume or pan change goes to the synth at once, not with the next note: a fader moves
    the sound that is ringing. (The output's lock makes this safe beside the timing thread.)"""
    if out is None or not out.is_open:
        return
    try:
        if now.volume != before.volume:
            out.control_change(channel, CC_VOLUME, now.volume)
        if pan_cc(now.pan) != pan_cc(before.pan):
            out.control_change(channel, CC_PAN, pan_cc(now.pan))
    except OutputError as exc:  # closing under us at shutdown, or the synth went away
        log.warning("%s: mix change not sent: %s", name, exc)
