"""Offline audio of a recorded session: the MIDI file through FluidSynth into a WAV, faster than real time.

No audio driver is opened, so this works on a headless machine: the synth is driven from the file's
events and its audio pulled with ``get_samples`` block by block. Times come from mido's tempo-aware
reading of the file, so a tempo change made live at a bar line lands where it was played. The WAV is
streamed to disk as it is rendered, so a long session costs no more memory than a short one.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mido
import numpy as np

__all__ = ["DRUM_CHANNEL", "RenderError", "RenderResult", "render_wav"]

DRUM_CHANNEL = 9  # MIDI channel 10, as musicians count: General MIDI's percussion channel
DRUM_BANK = 128  # where SoundFonts keep their drum kits
BLOCK_FRAMES = 4096  # ~93 ms at 44.1 kHz: one get_samples call, and the granularity of progress
DEFAULT_TAIL_S = 2.0  # long enough for a piano's release and the reverb to die away

Progress = Callable[[float, float], None]


class RenderError(RuntimeError):
    """What is missing or wrong, in one line the launcher prints as it is."""


@dataclass(frozen=True)
class RenderResult:
    """What was written; peak and RMS (0..1 of full scale) tell a silent or clipped render at a glance."""

    path: Path
    seconds: float
    frames: int
    sample_rate: int
    peak: float
    rms: float


def _import_fluidsynth() -> Any:
    """pyfluidsynth loads libfluidsynth at import, so the two missing pieces fail alike; tell them apart."""
    if importlib.util.find_spec("fluidsynth") is None:
        raise RenderError(
            "rendering needs pyfluidsynth: pip install -e '.[fluidsynth]' "
            "(and the FluidSynth library: apt install libfluidsynth3, or brew install fluid-synth)"
        )
    try:
        import fluidsynth
    except ImportError as exc:  # pyfluidsynth is there, the C library it wraps is not
        raise RenderError(
            f"rendering needs libfluidsynth (apt install libfluidsynth3, or brew install fluid-synth): {exc}"
        ) from exc
    except OSError as exc:
        raise RenderError(f"libfluidsynth could not be loaded: {exc}") from exc
    return fluidsynth


def _soundfont(soundfont: str | os.PathLike[str] | None) -> Path:
    from agents.outputs.base import OutputError
    from agents.outputs.fluid import find_soundfont

    try:
        return find_soundfont(soundfont)
    except OutputError as exc:
        raise RenderError(str(exc)) from None


def _read_midi(midi_path: Path) -> mido.MidiFile:
    try:
        return mido.MidiFile(str(midi_path))
    except FileNotFoundError:
        raise RenderError(f"{midi_path}: no such MIDI file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise RenderError(f"{midi_path}: not a readable MIDI file: {exc}") from None


def _apply(synth: Any, sfid: int, msg: mido.Message) -> None:
    """One file event into the synth; program changes on the drum channel pick a kit from the drum bank."""
    kind = msg.type
    if kind == "note_on" and msg.velocity > 0:
        synth.noteon(msg.channel, msg.note, msg.velocity)
    elif kind in ("note_off", "note_on"):
        synth.noteoff(msg.channel, msg.note)
    elif kind == "program_change":
        if msg.channel == DRUM_CHANNEL:
            synth.program_select(msg.channel, sfid, DRUM_BANK, msg.program)
        else:
            synth.program_select(msg.channel, sfid, 0, msg.program)
    elif kind == "control_change":
        synth.cc(msg.channel, msg.control, msg.value)
    elif kind == "pitchwheel":
        synth.pitch_bend(msg.channel, msg.pitch)


def _status_line(stream: Any = None) -> Progress:
    """A progress line that rewrites itself on a terminal and prints every tenth in a log."""
    out = stream or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    shown = [-1]

    def show(done: float, total: float) -> None:
        pct = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        if tty:
            end = "\n" if pct >= 100.0 else ""
            out.write(f"\rrendering {done:6.1f} / {total:.1f} s ({pct:3.0f} %){end}")
            out.flush()
        elif int(pct // 10) > shown[0]:
            shown[0] = int(pct // 10)
            out.write(f"rendering {done:.1f} / {total:.1f} s ({pct:.0f} %)\n")

    return show


def render_wav(
    midi_path: str | os.PathLike[str],
    wav_path: str | os.PathLike[str],
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
    gain: float = 1.0,
    *,
    tail_s: float = DEFAULT_TAIL_S,
    progress: Progress | bool | None = None,
) -> RenderResult:
    """Render `midi_path` to a 16-bit stereo WAV; the file's length plus `tail_s` so notes ring out.

    `progress` is called as progress(seconds_done, seconds_total) after each block; True gives a
    status line on stderr, None or False nothing. `soundfont` None takes the first GM soundfont the
    distribution installed (see agents.outputs.fluid.find_soundfont).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate: expected an int in 8000..192000, got {sample_rate!r}")
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0.0 <= gain <= 10.0:
        raise ValueError(f"gain: expected a number in 0..10 (FluidSynth's range), got {gain!r}")
    if not 0.0 <= tail_s <= 60.0:
        raise ValueError(f"tail_s: expected 0..60 seconds, got {tail_s!r}")
    report: Progress | None = _status_line() if progress is True else progress or None
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    mid = _read_midi(midi_path)
    fluidsynth = _import_fluidsynth()
    font = _soundfont(soundfont)
    total_s = mid.length + tail_s
    total_frames = round(total_s * sample_rate)

    synth = fluidsynth.Synth(gain=float(gain), samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(font), 1)  # 1: every channel gets a GM preset at once, drums on 10
        if sfid < 0:
            raise RenderError(f"soundfont: FluidSynth could not load {font}")
        wav_path.parent.mkdir(parents=True, exist_ok=True)
        written, peak, square_sum = 0, 0, 0.0

        with wave.open(str(wav_path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)

            def pull(until_frame: int) -> None:
                nonlocal written, peak, square_sum
                while written < until_frame:
                    n = min(BLOCK_FRAMES, until_frame - written)
                    block = np.asarray(synth.get_samples(n), dtype=np.int16).reshape(-1, 2)
                    wav.writeframes(block.astype("<i2").tobytes())
                    wide = block.astype(np.int64)
                    if wide.size:
                        peak = max(peak, int(np.abs(wide).max()))
                        square_sum += float((wide * wide).sum())
                    written += n
                    if report is not None:
                        report(written / sample_rate, total_s)

            now_s = 0.0
            for msg in mid:  # merged tracks, `time` = seconds since the previous event (tempo applied)
                now_s += msg.time
                pull(round(now_s * sample_rate))
                if not msg.is_meta:
                    _apply(synth, sfid, msg)
            pull(total_frames)
    finally:
        synth.delete()
    if report is not None and written == 0:
        report(0.0, 0.0)
    rms = math.sqrt(square_sum / max(1, 2 * written)) / 32768.0
    return RenderResult(wav_path, written / sample_rate, written, sample_rate, peak / 32768.0, rms)
