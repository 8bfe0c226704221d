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
from vidforge.models.registry import ModelSource

HUB_TIMEOUT_S = 8.0


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE") or bool(
        constants.HF_HUB_OFFLINE
    )


def _missing(repo_id: str, why: str, hint: str) -> VidforgeError:
    return VidforgeError(
        f"model {repo_id!r} is not in the Hugging Face cache ({hub_cache_dir()}) and {why}: "
        f"download it on a connected machine with `hf download {repo_id}`{hint}"
    )


def fetch_weights(
    source: ModelSource, allow_patterns: list[str] | None = None, hint: str = " or pass --model PATH"
) -> Path:
    """Return a local folder (diffusers layout) or file (single checkpoint) for ``source``.

    Order: local path; Hugging Face cache; one quick hub check, then a normal download.
    ``hint`` ends the error message when the weights cannot be had.
    """
    if source.path is not None:
        return source.path
    if source.is_tiny:
        raise ValueError("tiny models have no weights to fetch")
    preset = source.preset
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
        raise _missing(preset.repo_id, "HF_HUB_OFFLINE is set", hint)
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(preset.repo_id, revision=preset.revision, timeout=HUB_TIMEOUT_S)
    except Exception as e:
        reason = type(e).__name__
        if "RepositoryNotFound" in reason or "404" in str(e):
            raise VidforgeError(f"model {preset.repo_id!r} does not exist on the Hugging Face hub") from e
        raise _missing(preset.repo_id, f"the hub cannot be reached ({reason})", hint) from e
    try:
        return download(local_only=False)
    except Exception as e:
        raise _missing(preset.repo_id, f"the download failed ({type(e).__name__})", hint) from e
