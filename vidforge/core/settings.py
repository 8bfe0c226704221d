"""The settings record of an output: how it was made, enough to make it again.

Every generating command writes ``OUTPUT.json`` beside its output (``DIR.json`` beside a folder
of numbered frames) and prints the same object with ``--json``; ``vidforge COMMAND --settings
OUTPUT.json`` replays it. The keys are the same for every command:

    {"vidforge_settings": 1, "command": "stylize", "created": "...",
     "options": {...every option, after defaults; the seed actually used...},
     "inputs": {"input": {"path": "...", "sha256": "...", "probe": {...}}},
     "model": {"name": "...", "family": "...", "repo_id": "...", "revision": "<snapshot>", "sha256": "..."},
     "versions": {"vidforge": ..., "torch": ..., "diffusers": ..., "python": ...},
     "output": {"path": ..., "frames": ..., "fps": ..., "size": [w, h]},
     "seconds": ..., "timings": {"load": ..., "sample": ..., ...},
     "details": {...what the command reports about its method...}}
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import secrets
from pathlib import Path

from vidforge._version import __version__
from vidforge.errors import VidforgeError

SETTINGS_VERSION = 1
HASH_CHUNK = 1 << 20


def random_seed() -> int:
    """A seed for ``--seed -1`` (recorded, so the run can be replayed)."""
    return secrets.randbelow(2**31)


def resolve_seed(options):
    """``options`` with a concrete seed: ``-1`` becomes a random one."""
    return dataclasses.replace(options, seed=random_seed()) if options.seed == -1 else options


def options_dict(options) -> dict:
    """Every option after defaults, JSON-ready (tuples as lists)."""
    return json.loads(json.dumps(dataclasses.asdict(options), default=str))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_input(value) -> str | None:
    """The content hash of an input: a file, a folder of frames (its files in name order), or an array."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
    path = Path(value)
    if path.is_file():
        return sha256_file(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(file.name.encode() + bytes.fromhex(sha256_file(file)))
        return digest.hexdigest()
    return None


def describe_input(value, info=None) -> dict:
    """An input as recorded: path, content hash and (for videos) what probing found."""
    import numpy as np

    frames = getattr(value, "frames", value)
    if isinstance(frames, np.ndarray):
        return {"path": None, "shape": list(frames.shape), "sha256": sha256_input(frames)}
    out = {"path": str(Path(value).resolve()), "sha256": sha256_input(value)}
    if info is not None:
        out["probe"] = {
            "frames": info.num_frames, "fps": info.fps, "size": list(info.size), "audio": info.has_audio,
            "color": dataclasses.asdict(info.color) if info.color else None,
            "rotation": getattr(info, "rotation", 0),
        }  # fmt: skip
    return out


def versions() -> dict:
    """The versions that decide the frames."""
    from importlib import metadata

    found = {"vidforge": __version__, "python": platform.python_version()}
    for package in ("torch", "diffusers", "transformers", "open_clip_torch", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def record(
    command: str, options, *, inputs: dict, model=None, output=None, frames: int = 0, fps: float = 0.0,
    size=None, seconds: float = 0.0, timings: dict | None = None, details: dict | None = None,
) -> dict:  # fmt: skip
    """The settings record of a run (see the module docstring)."""
    return {
        "vidforge_settings": SETTINGS_VERSION,
        "command": command,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": options_dict(options),
        "inputs": inputs,
        "model": dict(getattr(model, "origin", None) or {"name": getattr(model, "name", None)}),
        "versions": versions(),
        "output": {
            "path": str(output) if output is not None else None,
            "frames": frames,
            "fps": fps,
            "size": list(size) if size else None,
        },  # fmt: skip
        "seconds": round(seconds, 3),
        "timings": timings or {},
        "details": details or {},
    }


def settings_path(output: str | os.PathLike) -> Path:
    """Where an output's record goes: ``out.mp4.json``; ``DIR.json`` beside a folder of frames."""
    from vidforge.core.video_io import media_path

    target = media_path(output)
    return target.with_name(target.name + ".json")


def comment(command: str, options) -> str:
    """The short form for the container's comment tag: version, command and the options as
    compact JSON, cut at 1000 characters (the full record is the JSON file)."""
    text = f"vidforge {__version__} {command} " + json.dumps(options_dict(options), separators=(",", ":"))
    return text[:1000]


def finish_run(command: str, options, output, **fields) -> dict:
    """The record of a finished run (``fields`` as :func:`record` takes them), written beside
    ``output`` when there is one."""
    settings = record(command, options, output=output, **fields)
    if output is not None:
        write_settings(output, settings)
    return settings


def write_settings(output, settings: dict) -> Path:
    """Write ``settings`` beside ``output`` atomically."""
    from vidforge.core.writers import atomic_path

    path = settings_path(output)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=1) + "\n")
    return path


def read_settings(path: str | os.PathLike, command: str) -> dict:
    """A settings record for ``--settings``: one-line errors when it is missing, not JSON, not a
    record, or made by another command."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise VidforgeError(f"--settings {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VidforgeError(
            f"--settings {str(path)!r} is not a readable JSON file ({type(e).__name__})"
        ) from None
    if not isinstance(data, dict) or "options" not in data or not isinstance(data["options"], dict):
        raise VidforgeError(f"--settings {str(path)!r} is not a vidforge settings record")
    if data.get("command") != command:
        raise VidforgeError(
            f"--settings {str(path)!r} records a {data.get('command')!r} run, not {command!r}"
        )
    return data
