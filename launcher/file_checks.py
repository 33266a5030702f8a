"""What a run would trip on in the filesystem: the player's melody, each model and soundfont, TLS files.

Part of launcher/check.py's rules (which --check and every launch run): each problem is one line
that starts with the field it is about, and names the path it looked at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from protocol.ensemble import Ensemble

__all__ = ["file_problems", "readable"]

ROOT = Path(__file__).resolve().parents[1]  # the launcher starts every child here (run_ensemble.py)
_RELATIVE = " (a relative path is taken from the YAML's folder)"


def readable(path: Path) -> str | None:
    """Why `path` cannot be read as a file, or None."""
    try:
        with path.open("rb") as fh:
            fh.read(1)
    except IsADirectoryError:
        return f"{path} is a folder, not a file"
    except FileNotFoundError:
        return f"no such file: {path}"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def file_problems(ens: Ensemble, yaml_dir: Path, host: str | None) -> Iterator[str]:
    here = host is None or ens.conductor.host == host  # the conductor replays the human's file
    h = ens.human
    if here and h is not None and h.source.type == "file":
        from conductor.human import read_midi_notes

        path = Path(h.source.path or "").expanduser()
        path = path if path.is_absolute() else yaml_dir / path
        why = readable(path)
        if why is not None:
            hint = "" if Path(h.source.path or "").is_absolute() else _RELATIVE
            yield f"human.source.path: {why}{hint}"
        else:
            try:
                read_midi_notes(path, h.source.transpose)
            except ValueError as exc:
                yield str(exc)
    for i, a in enumerate(ens.agents):
        if host is not None and a.host != host:
            continue
        if a.engine.type == "onnx":
            from agents.engines.model_worker import resolve_model
            from agents.model.model_config import ModelLoadError, model_paths, read_tokenizer_config

            folder = resolve_model(a.engine.model, yaml_dir)
            try:
                config, base, token = model_paths(folder)
                read_tokenizer_config(config)
            except ModelLoadError as exc:
                yield f"agents.{i}.engine.model: {exc}"
            else:
                unreadable = next((w for w in (readable(Path(f)) for f in (base, token)) if w), None)
                if unreadable is not None:
                    yield f"agents.{i}.engine.model: {unreadable}"
                elif a.engine.share:
                    from agents.model.shared_model import share_refusal

                    why = share_refusal(folder)
                    if why is not None:
                        yield f"agents.{i}.engine.share: {why}"
        if a.output.type == "fluidsynth":
            yield from _fluid_problems(i, a.output.soundfont, yaml_dir)
    tls = ens.bus.mqtt.tls if ens.bus.transport == "mqtt" else None
    if tls is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(tls, name)
            if value is None:
                continue
            path = Path(value)
            # the processes open it from their working folder, the repository's root
            why = readable(path if path.is_absolute() else ROOT / path)
            if why is not None:
                yield f"bus.mqtt.tls.{name}: {why}"
        if (tls.cert_file is None) != (tls.key_file is None):
            missing = "key_file" if tls.key_file is None else "cert_file"
            yield f"bus.mqtt.tls.{missing}: cert_file and key_file go together; give both or neither"


def _fluid_problems(i: int, soundfont: str | None, yaml_dir: Path) -> Iterator[str]:
    from agents.outputs.base import OutputError
    from agents.outputs.fluid import find_soundfont

    path: Path | None = None
    if soundfont:
        path = Path(soundfont).expanduser()
        path = path if path.is_absolute() else yaml_dir / path
        why = readable(path)
        if why is not None:
            yield f"agents.{i}.output.soundfont: {why}{'' if Path(soundfont).is_absolute() else _RELATIVE}"
            return
    try:
        find_soundfont(path)
    except OutputError as exc:
        yield f"agents.{i}.output.{exc}"
        return
    try:
        import fluidsynth  # noqa: F401 - the library loads here, as the output will at start
    except ImportError as exc:
        yield (
            f"agents.{i}.output.type: fluidsynth needs pyfluidsynth and the FluidSynth library "
            f"(the `fluidsynth` extra, apt install libfluidsynth3): {exc}"
        )
