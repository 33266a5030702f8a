"""A General MIDI synth inside the agent process (FluidSynth), so a laptop with no synth set up plays.

pyfluidsynth is imported only when such an output opens: it loads libfluidsynth at import time, and
agents that send MIDI or OSC should not need that library. With no sound card (CI, headless
servers) the synth runs without an audio driver and ``render`` pulls its audio on demand.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from agents.outputs.base import Clock, Output, OutputError, check_int
from agents.outputs.burst import Message, Write

__all__ = ["DEFAULT_SOUNDFONTS", "FluidSynthOutput", "find_soundfont"]

#: Debian/Ubuntu paths, smallest first (timgm6mb-soundfont is 6 MB, fluid-soundfont-gm 145 MB).
DEFAULT_SOUNDFONTS = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)

_FLUID_FAILED = -1


def find_soundfont(soundfont: str | os.PathLike[str] | None = None) -> Path:
    """The soundfont to load: the one named, else the first GM soundfont a distribution installed."""
    if soundfont is not None:
        path = Path(soundfont).expanduser()
        if not path.is_file():
            raise OutputError(f"soundfont: file not found: {path}")
        return path
    for candidate in DEFAULT_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise OutputError(
        "soundfont: none given and no General MIDI soundfont installed (looked at "
        f"{', '.join(DEFAULT_SOUNDFONTS)}); on Debian/Ubuntu: apt install timgm6mb-soundfont"
    )


def _import_fluidsynth() -> Any:
    try:
        import fluidsynth  # lazy on purpose, see the module docstring
    except ImportError as exc:
        raise OutputError(
            "FluidSynth output needs pyfluidsynth and the FluidSynth library: "
            "pip install 'barcelona[fluidsynth]' and apt install libfluidsynth3 "
            f"(brew install fluid-synth on macOS): {exc}"
        ) from exc
    return fluidsynth


class FluidSynthOutput(Output):
    """Plays through an in-process FluidSynth; ``programs`` maps channel -> GM program (0-based)."""

    def __init__(
        self,
        soundfont: str | os.PathLike[str] | None = None,
        gain: float = 1.0,
        audio_driver: str | None = None,
        *,
        sample_rate: int = 44100,
        channels: Iterable[int] | None = None,
        programs: Mapping[int, int] | None = None,
        controls: Mapping[int, Mapping[int, int]] | None = None,
        name: str | None = None,
        clock: Clock = time.perf_counter,
    ) -> None:
        if isinstance(gain, bool) or not isinstance(gain, (int, float)):
            raise TypeError(f"gain must be a number, got {type(gain).__name__}")
        if not 0.0 <= float(gain) <= 10.0:
            raise ValueError(f"gain must be in 0..10 (FluidSynth's range), got {gain}")
        if audio_driver is not None and (not isinstance(audio_driver, str) or not audio_driver):
            raise ValueError(f"audio_driver must be a driver name (alsa, jack, pulseaudio, coreaudio, ...) "
                             f"or None, got {audio_driver!r}")
        self.sample_rate = check_int("sample_rate", sample_rate, 8000, 192000)
        super().__init__(channels=channels, programs=programs, controls=controls, name=name or "fluidsynth",
                         clock=clock)
        self.soundfont = soundfont
        self.gain = float(gain)
        self.audio_driver = audio_driver
        self.soundfont_path: Path | None = None
        self._synth: Any = None

    def _open_transport(self) -> None:
        fluidsynth = _import_fluidsynth()
        path = find_soundfont(self.soundfont)
        synth = fluidsynth.Synth(gain=self.gain, samplerate=float(self.sample_rate))
        try:
            # update_midi_preset=1 gives every channel a preset at once (GM defaults, drums on 10).
            if synth.sfload(str(path), 1) == _FLUID_FAILED:
                raise OutputError(f"soundfont: FluidSynth could not load {path}")
            if self.audio_driver is not None:
                # Not Synth.start(): it also opens a MIDI driver (an ALSA sequencer port by default),
                # which fails where there is no ALSA and would offer a second way in that we never use.
                synth.setting("audio.driver", self.audio_driver)
                if self.audio_driver == "jack":
                    synth.setting("audio.jack.autoconnect", 1)  # to the speakers, as a user expects
                synth.audio_driver = fluidsynth.new_fluid_audio_driver(synth.settings, synth.synth)
                if not synth.audio_driver:
                    raise OutputError(
                        f"audio_driver: FluidSynth could not start {self.audio_driver!r} "
                        "(no such device here? use audio_driver=None and render())"
                    )
        except BaseException:
            synth.delete()
            raise
        self.soundfont_path = path
        self._synth = synth

    def _close_transport(self) -> None:
        if self._synth is not None:
            self._synth.delete()
            self._synth = None

    def _note_on(self, channel: int, pitch: int, velocity: int, due: float | None) -> None:
        self._synth.noteon(channel, pitch, velocity)

    def _note_off(self, channel: int, pitch: int, due: float | None) -> None:
        self._synth.noteoff(channel, pitch)

    def _writes(self, messages: list[Message]) -> list[Write]:
        """Bound to the synth's own calls now, so the due time costs only the call into FluidSynth."""
        synth = self._synth
        return [(partial(synth.noteon, ch, pitch, vel) if on else partial(synth.noteoff, ch, pitch), 1)
                for on, ch, pitch, vel, _ in messages]

    def _control(self, channel: int, control: int, value: int, due: float | None) -> None:
        self._synth.cc(channel, control, value)

    def _program(self, channel: int, program: int) -> None:
        self._synth.program_change(channel, program)

    def render(self, seconds: float) -> np.ndarray:
        """Pull ``seconds`` of stereo audio, shape (frames, 2) int16, for tests and offline recording.

        Only without an audio driver: with one, its thread consumes the synth's output and a second
        reader would steal half the audio.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"seconds must be a non-negative number, got {seconds!r}")
        with self._lock:
            self._require_open()
            if self.audio_driver is not None:
                raise OutputError("render: the synth plays to an audio driver; open with audio_driver=None")
            frames = round(float(seconds) * self.sample_rate)
            if frames == 0:
                return np.zeros((0, 2), dtype=np.int16)
            samples = self._synth.get_samples(frames)
            return np.asarray(samples, dtype=np.int16).reshape(-1, 2).copy()
