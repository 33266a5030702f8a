"""A picture of a recorded session: every part on one piano roll, bar lines, and the chord plan beneath.

The x axis is in beats, not seconds: the recorder writes beats, the chord plan is in beats, and a
tempo change should not bend the bar lines. Drum parts get their own lane labelled with General MIDI
drum names, since a kick drawn at "C2" between the bass notes reads as a wrong bass note.
matplotlib is an optional extra, imported only here and only when a plot is asked for.

The chord lane shows the harmony as played: the conductor records each plan change (live `/plan`
and `/bar` edits) in the file at the beat it took effect, and those win over the YAML's plan, which
is only the fallback for a file without them. Bars are numbered from 1, as the displays count them.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido

from protocol.harmony import ChordPlan

__all__ = [
    "PlotError", "Track", "bar_ticks", "chords_as_played", "plot_piano_roll", "read_plans", "read_tracks",
]

DRUM_CHANNEL = 9
PLAN_EVENT = "barcelona.plan "  # the recorder's text events (conductor.recorder writes them)
DEFAULT_SIZE = (1600, 900)  # pixels
DPI = 100

GM_DRUMS = {
    35: "kick 2", 36: "kick", 37: "side stick", 38: "snare", 39: "clap", 40: "snare 2", 41: "low tom",
    42: "hi-hat", 43: "low tom 2", 44: "pedal hat", 45: "mid tom", 46: "open hat", 47: "mid tom 2",
    48: "high tom", 49: "crash", 50: "high tom 2", 51: "ride", 53: "ride bell", 54: "tambourine",
    56: "cowbell", 57: "crash 2", 59: "ride 2",
}
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class PlotError(RuntimeError):
    """What is missing or wrong, in one line the launcher prints as it is."""


@dataclass
class Track:
    """One part's notes in beats: (start, duration, pitch, velocity)."""

    name: str
    channel: int | None = None
    notes: list[tuple[float, float, int, int]] = field(default_factory=list)

    @property
    def is_drums(self) -> bool:
        return self.channel == DRUM_CHANNEL


def read_tracks(midi_path: str | os.PathLike[str]) -> tuple[list[Track], int | None]:
    """Parts with notes, in file order, and the meter from the file's time signature (None if absent)."""
    try:
        mid = mido.MidiFile(str(midi_path))
    except FileNotFoundError:
        raise PlotError(f"{midi_path}: no such MIDI file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise PlotError(f"{midi_path}: not a readable MIDI file: {exc}") from None
    ppq = mid.ticks_per_beat
    tracks: list[Track] = []
    meter: int | None = None
    for index, raw in enumerate(mid.tracks):
        track = Track(name=f"track {index}")
        # (channel, pitch) -> the (on tick, velocity) of its sounding notes, oldest first: a note-off
        # ends the oldest, so a pitch struck again on the tick its last note ends (the note-on may
        # come first in the file) is two notes, not one lost and one a tick long
        held: dict[tuple[int, int], deque[tuple[int, int]]] = defaultdict(deque)
        tick = 0
        for msg in raw:
            tick += msg.time
            if msg.type == "track_name":
                track.name = msg.name
            elif msg.type == "time_signature" and meter is None:
                meter = msg.numerator
            elif msg.type == "note_on" and msg.velocity > 0:
                held[(msg.channel, msg.note)].append((tick, msg.velocity))
                track.channel = msg.channel if track.channel is None else track.channel
            elif msg.type in ("note_off", "note_on") and held[(msg.channel, msg.note)]:
                on, velocity = held[(msg.channel, msg.note)].popleft()
                track.notes.append((on / ppq, max(tick - on, 1) / ppq, msg.note, velocity))
        for (_channel, pitch), notes in held.items():  # never released: drawn to the track's end
            for on, velocity in notes:
                track.notes.append((on / ppq, max(tick - on, 1) / ppq, pitch, velocity))
        track.notes.sort()
        if track.notes:
            tracks.append(track)
    return tracks, meter


def read_plans(midi_path: str | os.PathLike[str]) -> list[tuple[float, ChordPlan]]:
    """The chord plans the recording says were in force, each with the beat it took effect, in order.

    A text event that does not parse is a one-line PlotError naming the beat, not a silent gap.
    """
    try:
        mid = mido.MidiFile(str(midi_path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise PlotError(f"{midi_path}: not a readable MIDI file: {exc}") from None
    plans: list[tuple[float, ChordPlan]] = []
    for raw in mid.tracks:
        tick = 0
        for msg in raw:
            tick += msg.time
            if msg.type == "text" and msg.text.startswith(PLAN_EVENT):
                beat = tick / mid.ticks_per_beat
                try:
                    item = json.loads(msg.text[len(PLAN_EVENT) :])
                    plan = ChordPlan.parse(item["text"], loop=bool(item["loop"]), key=str(item["key"]))
                except (ValueError, TypeError, KeyError) as exc:  # ChordError is a ValueError
                    where = f"{midi_path}: the plan recorded at beat {beat:g}"
                    raise PlotError(f"{where} is unreadable: {exc}") from None
                plans.append((beat, plan))
    return sorted(plans, key=lambda p: p[0])


def chords_as_played(
    plans: Sequence[tuple[float, ChordPlan]], beats_per_bar: int, end_beat: float
) -> list[tuple[float, float, str]]:
    """(start, end, symbol) of every chord up to `end_beat`, each plan from its beat to the next's.

    A plan is indexed by the absolute beat, as the agents index it: an edit at bar 6 of a looping
    8-bar plan plays the new plan's bar 6 on, not its bar 1.
    """
    out: list[tuple[float, float, str]] = []
    for i, (since, plan) in enumerate(plans):
        until = min(plans[i + 1][0] if i + 1 < len(plans) else end_beat, end_beat)
        beat = since
        while beat < until:
            span = plan.chord_span_at(beat, beats_per_bar)
            if span is None:  # a plan that does not loop ends before the music does
                break
            end = min(span.end_beat, until)
            if out and out[-1][2] == span.chord.symbol and out[-1][1] == beat:
                out[-1] = (out[-1][0], end, span.chord.symbol)  # the same chord across a plan change
            else:
                out.append((beat, end, span.chord.symbol))
            beat = end
    return out


def _import_pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError(f"plotting needs matplotlib: pip install -e '.[plot]' ({exc})") from exc
    matplotlib.use("Agg")  # files only: no display, works on a headless machine
    import matplotlib.pyplot as plt

    return plt


def _note_name(pitch: int) -> str:
    return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _draw_notes(ax: Any, track: Track, color: Any, rows: dict[int, int] | None = None) -> None:
    """Bars whose opacity follows velocity, so accents are visible without another legend."""
    lefts = [n[0] for n in track.notes]
    widths = [n[1] for n in track.notes]
    ys = [rows[n[2]] if rows is not None else n[2] for n in track.notes]
    alphas = [0.35 + 0.65 * n[3] / 127 for n in track.notes]
    colors = [(*color[:3], a) for a in alphas]
    ax.barh(ys, widths, left=lefts, height=0.8, color=colors, edgecolor=(*color[:3], 1.0), linewidth=0.4)


def _draw_chords(ax: Any, plans: Sequence[tuple[float, ChordPlan]], bpb: int, end_beat: float) -> None:
    for start, _end, symbol in chords_as_played(plans, bpb, end_beat):
        ax.axvline(start, color="0.6", linewidth=0.6)
        ax.text(start + 0.1, 0.5, symbol, va="center", ha="left", fontsize=10, clip_on=True)
    for since, _plan in plans[1:]:  # where a live edit took over
        ax.axvline(since, color="tab:red", linewidth=1.2)


def plot_piano_roll(
    midi_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    chords: str | None = None,
    beats_per_bar: int | None = None,
    loop: bool = True,
    key: str = "C",
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    title: str | None = None,
) -> Path:
    """Draw the recording at `midi_path` as a PNG of exactly `size` pixels; returns the PNG's path.

    The chord lane shows the plans recorded in the file (as played, live edits included); a file
    without them falls back to `chords`, the ensemble's plan text (as in the YAML); with neither
    there is no chord lane. `beats_per_bar` None takes the meter from the file, else 4.
    """
    if not (len(size) == 2 and all(isinstance(v, int) and 200 <= v <= 20000 for v in size)):
        raise ValueError(f"size: expected (width, height) in pixels, 200..20000, got {size!r}")
    tracks, file_meter = read_tracks(midi_path)
    bpb = beats_per_bar or file_meter or 4
    plans = read_plans(midi_path)
    if chords is not None and not plans:
        try:
            plans = [(0.0, ChordPlan.parse(chords, loop=loop, key=key))]
        except ValueError as exc:  # ChordError is a ValueError
            raise PlotError(f"chords: {exc}") from None
    plan = plans or None
    plt = _import_pyplot()
    from matplotlib.patches import Patch

    pitched = [t for t in tracks if not t.is_drums]
    drums = [t for t in tracks if t.is_drums]
    end = max((n[0] + n[1] for t in tracks for n in t.notes), default=float(bpb))
    end = max(bpb, -(-end // bpb) * bpb)  # whole bars
    drum_pitches = sorted({n[2] for t in drums for n in t.notes})
    ratios = [6.0] + ([max(1.0, 0.35 * len(drum_pitches))] if drums else []) + ([0.5] if plan else [])
    fig, axes = plt.subplots(len(ratios), 1, sharex=True, figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI,
                             gridspec_kw={"height_ratios": ratios, "hspace": 0.05})
    axes = list(axes) if len(ratios) > 1 else [axes]
    colors = plt.get_cmap("tab10").colors
    roll = axes[0]
    legend = []
    for i, t in enumerate(tracks):
        color = colors[i % len(colors)]
        if t.is_drums:
            _draw_notes(axes[1], t, color, rows={p: r for r, p in enumerate(drum_pitches)})
        else:
            _draw_notes(roll, t, color)
        legend.append(Patch(color=color, label=f"{t.name} ({len(t.notes)} notes)"))

    pitches = [n[2] for t in pitched for n in t.notes] or [60]
    lo, hi = min(pitches) - 2, max(pitches) + 2
    roll.set_ylim(lo, hi)
    roll.set_yticks([p for p in range(lo, hi + 1) if p % 12 == 0])
    roll.set_yticklabels([_note_name(p) for p in range(lo, hi + 1) if p % 12 == 0])
    roll.set_ylabel("pitch")
    roll.legend(handles=legend, loc="upper right", fontsize=9, framealpha=0.85)  # drums' lane included
    if drums:
        axes[1].set_yticks(range(len(drum_pitches)))
        axes[1].set_yticklabels([GM_DRUMS.get(p, _note_name(p)) for p in drum_pitches], fontsize=8)
        axes[1].set_ylim(-0.6, len(drum_pitches) - 0.4)
    if plan is not None:
        lane = axes[-1]
        lane.set_ylim(0, 1)
        lane.set_yticks([])
        lane.set_ylabel("chords", rotation=0, ha="right", va="center")
        _draw_chords(lane, plans, bpb, end)

    _bar_lines(axes, bpb, end)
    axes[-1].set_xlabel(f"bar ({bpb} beats)")
    roll.set_title(title or Path(midi_path).name)
    fig.subplots_adjust(left=0.07, right=0.99, top=0.95, bottom=0.07)
    png = Path(png_path)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(str(png), dpi=DPI)  # no bbox_inches="tight": the PNG is exactly `size`
    plt.close(fig)
    return png


def _bar_lines(axes: Sequence[Any], bpb: int, end: float) -> None:
    bars = int(end // bpb)
    step = max(1, bars // 32)  # keep labels legible on a long session
    for ax in axes:
        ax.set_xlim(0, end)
        for b in range(bars + 1):
            ax.axvline(b * bpb, color="0.25", linewidth=0.8 if b % step == 0 else 0.4, zorder=0)
        if bars <= 32:  # beat lines only while they are far enough apart to help
            for beat in range(int(end)):
                if beat % bpb:
                    ax.axvline(beat, color="0.88", linewidth=0.4, zorder=0)
        ax.set_axisbelow(True)
        ax.grid(axis="y", color="0.9", linewidth=0.5)
    ticks = bar_ticks(bpb, end)
    axes[-1].set_xticks([beat for beat, _ in ticks])
    axes[-1].set_xticklabels([label for _, label in ticks])


def bar_ticks(bpb: int, end: float) -> list[tuple[int, str]]:
    """(beat, label) of the numbered bar lines: bar 1 starts at beat 0, as the displays count."""
    bars = int(end // bpb)
    step = max(1, bars // 32)
    return [(b * bpb, str(b + 1)) for b in range(0, bars, step)]
