"""Weights from the Hugging Face cache, downloaded on first use, failing within seconds.

Real weights live in the Hugging Face cache (``HF_HOME``). A missing model fails fast: we look in
the cache first, honour ``HF_HUB_OFFLINE``, and otherwise ask the hub once with a short timeout,
because huggingface_hub's own retries on an unreachable hub take minutes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vidforge.errors import VidforgeError
from vidforge.models.registry import FAMILY_FILES, PRESETS, TASK_FAMILY, ModelSource

HUB_TIMEOUT_S = 8.0


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE") or bool(
        constants.HF_HUB_OFFLINE
    )


def download_command(source: ModelSource) -> str:
    """The exact line that fetches what vidforge reads of ``source``, on a connected machine."""
    preset = source.preset
    if preset.name in PRESETS:
        return f"vidforge models download {preset.name}"
    if preset.filename:
        return f"hf download {preset.repo_id} {preset.filename}"
    patterns = (
        " ".join(f"'{p}'" for p in FAMILY_FILES.get(source.family, [])) if source.task in TASK_FAMILY else ""
    )
    return f"hf download {preset.repo_id}" + (f" --include {patterns}" if patterns else "")


def _missing(source: ModelSource, why: str, hint: str) -> VidforgeError:
    return VidforgeError(
        f"model {source.repo_id!r} is not in the Hugging Face cache ({hub_cache_dir()}) and {why}: "
        f"download it on a connected machine with `{download_command(source)}`{hint}"
    )


def fetch_weights(
    source: ModelSource, allow_patterns: list[str] | None = None, hint: str = " or pass --model PATH"
) -> Path:
    """Return a local folder (diffusers layout) or file (single checkpoint) for ``source``.

    Order: local path; Hugging Face cache; one quick hub check, then a normal download of the
    files vidforge reads (``allow_patterns``, by default the family's). ``hint`` ends the error
    message when the weights cannot be had.
    """
    if source.path is not None:
        return source.path
    if source.is_tiny:
        raise ValueError("tiny models have no weights to fetch")
    preset = source.preset
    if allow_patterns is None and source.task in TASK_FAMILY:
        allow_patterns = FAMILY_FILES[source.family]
    from huggingface_hub import hf_hub_download, snapshot_download

    def download(local_only: bool) -> Path:
        if preset.filename:
            return Path(
                hf_hub_download(
                    preset.repo_id, preset.filename, revision=preset.revision, local_files_only=local_only
                )
            )
        return Path(
            snapshot_download(
                preset.repo_id,
                revision=preset.revision,
                allow_patterns=allow_patterns,
                local_files_only=local_only,
            )
        )

    with contextlib.suppress(Exception):
        return download(local_only=True)
    if _offline():
        raise _missing(source, "HF_HUB_OFFLINE is set", hint)
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(preset.repo_id, revision=preset.revision, timeout=HUB_TIMEOUT_S)
    except Exception as e:
        reason = type(e).__name__
        if "RepositoryNotFound" in reason or "404" in str(e):
            raise VidforgeError(f"model {preset.repo_id!r} does not exist on the Hugging Face hub") from e
        raise _missing(source, f"the hub cannot be reached ({reason})", hint) from e
    try:
        return download(local_only=False)
    except Exception as e:
        raise _missing(source, f"the download failed ({type(e).__name__})", hint) from e


def vidforge_cache_dir(kind: str) -> Path:
    """vidforge's own cache folder for ``kind`` (converted checkpoints, hashes), created: in
    huggingface_hub's assets folder (``$HF_HOME/assets/vidforge/KIND``, where libraries keep what
    they derive), never inside the hub cache's model folders."""
    from huggingface_hub import constants

    folder = Path(constants.HF_ASSETS_CACHE) / "vidforge" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def snapshot_revision(path: Path) -> str | None:
    """The commit of a Hugging Face cache snapshot a path lies in (``.../snapshots/<commit>/...``)."""
    parts = Path(path).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def origin(source: ModelSource, path: Path | None = None) -> dict:
    """Which weights a model was built from, for the settings record: the preset or hub id and
    the cached snapshot's commit, or a local file's content hash (computed once per file version)."""
    out = {"name": source.name, "family": source.family, "repo_id": source.repo_id}
    if source.is_tiny:
        return {**out, "weights": "seeded random (tiny)"}
    if path is not None:
        out["path"] = str(Path(path).resolve())
        out["revision"] = snapshot_revision(Path(path).resolve())
        if out["revision"] is None and Path(path).is_file():
            out["sha256"] = cached_file_hash(Path(path))
    return out


def file_key(path: Path) -> str:
    """A name for one version of a file: sha1 of its resolved path, size and modification time
    (cheap, and it changes when the file is replaced or rewritten)."""
    import hashlib

    resolved = path.resolve()
    stat = resolved.stat()
    return hashlib.sha1(f"{resolved}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()


def cached_file_hash(path: Path) -> str:
    """sha256 of a (large) file, remembered per :func:`file_key` in vidforge's cache."""
    import json

    from vidforge.core.settings import sha256_file

    memo = vidforge_cache_dir("hashes") / f"{file_key(path)}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads(memo.read_text())["sha256"]
    digest = sha256_file(path)
    with contextlib.suppress(OSError):
        memo.write_text(json.dumps({"path": str(path.resolve()), "sha256": digest}))
    return digest
