"""``vidforge models``: which presets exist, whether their weights are cached and where, and
downloading exactly the files vidforge reads. Works offline (it only looks in the cache) except
for ``download``. Imports no torch."""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import asdict, dataclass
from pathlib import Path

from vidforge.errors import VidforgeError
from vidforge.models.registry import FAMILY_FILES, PRESETS, TASK_FAMILY, available_models, resolve_model


@dataclass(frozen=True)
class ModelStatus:
    name: str
    task: str
    family: str | None
    repo_id: str | None
    description: str
    cached: bool
    path: str | None  # the cached snapshot folder or checkpoint file
    size_bytes: int | None  # what vidforge reads of it, on disk

    def to_dict(self) -> dict:
        return asdict(self)


def _task(name: str) -> str:
    task = PRESETS[name].task
    return "animate" if task == "*" else task  # tiny: any task, reported once


def _cached_path(name: str) -> Path | None:
    """The local snapshot folder or file of a preset, from the cache only (no network)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    preset = PRESETS[name]
    with contextlib.suppress(Exception):
        if preset.filename:
            return Path(hf_hub_download(preset.repo_id, preset.filename, local_files_only=True))
        folder = Path(snapshot_download(preset.repo_id, local_files_only=True))
        return folder if _files(folder, FAMILY_FILES[TASK_FAMILY[preset.task]]) else None
    return None


def _files(folder: Path, patterns: list[str]) -> list[Path]:
    """Files under ``folder`` that match vidforge's patterns (relative POSIX paths)."""
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and any(fnmatch.fnmatch(relative, p) for p in patterns):
            found.append(path)
    return found


def status(name: str) -> ModelStatus:
    """A preset's status: cached or not, where, and how much of it vidforge reads."""
    if name not in PRESETS:
        raise VidforgeError(f"unknown model {name!r}; presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    family = TASK_FAMILY.get(preset.task)
    if preset.repo_id is None:  # tiny: built locally
        return ModelStatus(name, preset.task, family, None, preset.description, True, None, 0)
    path = _cached_path(name)
    size = None
    if path is not None:
        files = [path] if path.is_file() else _files(path, FAMILY_FILES[family])
        size = sum(f.stat().st_size for f in files)
    return ModelStatus(
        name, preset.task, family, preset.repo_id, preset.description, path is not None,
        str(path) if path else None, size,
    )  # fmt: skip


def list_models(task: str | None = None) -> list[ModelStatus]:
    return [status(name) for name in available_models(task)]


def local_path(name: str) -> Path:
    """Where a cached preset lies; a one-line error naming the download command otherwise."""
    found = status(name)
    if found.repo_id is None:
        raise VidforgeError(f"{name!r} is built locally from seeded random weights: it has no files")
    if not found.cached:
        raise VidforgeError(f"{name!r} is not cached: download it with `vidforge models download {name}`")
    return Path(found.path)


def download(name: str, task: str | None = None) -> Path:
    """Fetch exactly the files vidforge reads of a preset, or of a hub id for ``task`` (which
    decides the family's files), into the Hugging Face cache."""
    if name in PRESETS and PRESETS[name].repo_id is None:
        raise VidforgeError(f"{name!r} is built locally from seeded random weights: nothing to download")
    if name not in PRESETS and task not in TASK_FAMILY:
        raise VidforgeError(
            f"{name!r} is not a preset: pass --task ({', '.join(TASK_FAMILY)}) to say what it is for"
        )
    from vidforge.models.hub import fetch_weights

    return fetch_weights(resolve_model(name, _task(name) if name in PRESETS else task), hint="")


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"
