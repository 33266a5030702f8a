"""Offline audio of a recorded session: the MIDI file through FluidSynth into a WAV, faster than real time.

No audio driver is opened, so this works on a headless machine: the synth is driven from the file's
events and its audio pulled block by block. Times come from mido's tempo-aware reading of the file,
so a tempo change made live at a bar line lands where it was played.

Headroom: seven parts at full velocity sum far past full scale, and FluidSynth's 16-bit output would
clip them. So the synth renders in 32-bit float (no clipping at any level) to a scratch file beside
the WAV, and a second pass peak-normalises: the loudest sample lands at `peak_dbfs` (-1 dBFS by
default) however many parts play, and a quiet session is brought up to the same peak. Both passes
stream, so a long session costs disk (8 bytes a frame, deleted after), not memory.
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
DEFAULT_PEAK_DBFS = -1.0  # the usual master ceiling: room for inter-sample peaks and a lossy encoder
INT16_FULL_SCALE = 32768.0

Progress = Callable[[float, float], None]


class RenderError(RuntimeError):
    """What is missing or wrong, in one line the launcher prints as it is."""


@dataclass(frozen=True)
class RenderResult:
    """What was written; peak and RMS (0..1 of full scale) tell a silent or clipped render at a glance;
    `gain_db` is what the normalisation applied to the synth's float output (0 for silence)."""

    path: Path
    seconds: float
    frames: int
    sample_rate: int
    peak: float
    rms: float
    gain_db: float = 0.0

    @property
    def peak_dbfs(self) -> float:
        return 20.0 * math.log10(self.peak) if self.peak > 0 else -math.inf


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


def _float_writer(fluidsynth: Any) -> Callable[[Any, int], np.ndarray]:
    """FluidSynth's float output (pyfluidsynth wraps only the 16-bit one, which clips a loud mix)."""
    from ctypes import c_int, c_void_p

    args = [("synth", c_void_p, 1), ("len", c_int, 1)]
    for side in ("l", "r"):
        args += [(f"{side}out", c_void_p, 1), (f"{side}off", c_int, 1), (f"{side}incr", c_int, 1)]
    write = fluidsynth.cfunc("fluid_synth_write_float", c_int, *args)
    if write is None:
        raise RenderError("this libfluidsynth has no fluid_synth_write_float")

    def pull(synth: Any, frames: int) -> np.ndarray:
        buf = np.zeros(2 * frames, dtype=np.float32)  # interleaved: left at 0, 2, ...; right at 1, 3, ...
        address = buf.ctypes.data
        if write(synth.synth, frames, address, 0, 2, address, 1, 2) != 0:
            raise RenderError("FluidSynth failed to render a block")
        return buf

    return pull


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
    peak_dbfs: float | None = DEFAULT_PEAK_DBFS,
    progress: Progress | bool | None = None,
) -> RenderResult:
    """Render `midi_path` to a 16-bit stereo WAV; the file's length plus `tail_s` so notes ring out.

    `peak_dbfs` is where the loudest sample lands (see the module docstring); None writes the synth's
    level at `gain` as it is, clipped at full scale. `progress` is called as
    progress(seconds_done, seconds_total) after each block; True gives a status line on stderr, None
    or False nothing. `soundfont` None takes the first GM soundfont the distribution installed (see
    agents.outputs.fluid.find_soundfont).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 192000:
        raise ValueError(f"sample_rate: expected an int in 8000..192000, got {sample_rate!r}")
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0.0 <= gain <= 10.0:
        raise ValueError(f"gain: expected a number in 0..10 (FluidSynth's range), got {gain!r}")
    if not 0.0 <= tail_s <= 60.0:
        raise ValueError(f"tail_s: expected 0..60 seconds, got {tail_s!r}")
    if peak_dbfs is not None and not -60.0 <= peak_dbfs <= 0.0:
        raise ValueError(f"peak_dbfs: expected -60..0 dBFS or None, got {peak_dbfs!r}")
    report: Progress | None = _status_line() if progress is True else progress or None
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    mid = _read_midi(midi_path)
    fluidsynth = _import_fluidsynth()
    font = _soundfont(soundfont)
    total_s = mid.length + tail_s
    total_frames = round(total_s * sample_rate)

    pull_float = _float_writer(fluidsynth)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = wav_path.with_name(wav_path.name + ".f32.part")
    synth = fluidsynth.Synth(gain=float(gain), samplerate=float(sample_rate))
    try:
        sfid = synth.sfload(str(font), 1)  # 1: every channel gets a GM preset at once, drums on 10
        if sfid < 0:
            raise RenderError(f"soundfont: FluidSynth could not load {font}")
        written, raw_peak = 0, 0.0
        with scratch.open("wb") as raw:

            def pull(until_frame: int) -> None:
                nonlocal written, raw_peak
                while written < until_frame:
                    n = min(BLOCK_FRAMES, until_frame - written)
                    block = pull_float(synth, n)
                    raw.write(block.tobytes())
                    if block.size:
                        raw_peak = max(raw_peak, float(np.abs(block).max()))
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
        scale = 1.0
        if peak_dbfs is not None and raw_peak > 0.0:
            scale = 10.0 ** (peak_dbfs / 20.0) / raw_peak
        peak, square_sum = _write_int16(scratch, wav_path, sample_rate, scale)
    finally:
        synth.delete()
        scratch.unlink(missing_ok=True)
    if report is not None and written == 0:
        report(0.0, 0.0)
    rms = math.sqrt(square_sum / max(1, 2 * written)) / INT16_FULL_SCALE
    gain_db = 20.0 * math.log10(scale)
    return RenderResult(wav_path, written / sample_rate, written, sample_rate, peak / INT16_FULL_SCALE, rms,
                        gain_db)


def _write_int16(scratch: Path, wav_path: Path, sample_rate: int, scale: float) -> tuple[int, float]:
    """The scratch file's float frames times `scale` as a 16-bit WAV; returns its peak and sum of squares.

    Rounded down in magnitude (toward zero), so a sample normalised to exactly the ceiling never
    rounds above it."""
    peak, square_sum = 0, 0.0
    block_bytes = BLOCK_FRAMES * 2 * 4
    full = INT16_FULL_SCALE - 1  # float 1.0 as 16-bit: 32767, so +1.0 and -1.0 both fit
    with scratch.open("rb") as raw, wave.open(str(wav_path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        while chunk := raw.read(block_bytes):
            samples = np.frombuffer(chunk, dtype=np.float32).astype(np.float64) * (scale * full)
            ints = np.trunc(np.clip(samples, -INT16_FULL_SCALE, INT16_FULL_SCALE - 1)).astype(np.int16)
            wav.writeframes(ints.astype("<i2").tobytes())
            wide = ints.astype(np.int64)
            peak = max(peak, int(np.abs(wide).max()))
            square_sum += float((wide * wide).sum())
    return peak, square_sum
