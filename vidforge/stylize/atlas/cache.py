"""Saved fits: the fitted fields of a video, so restyling the same clip skips the fit.

Where: ``$VIDFORGE_CACHE/atlas/KEY/`` (default ``$XDG_CACHE_HOME/vidforge``, else
``~/.cache/vidforge``), not beside the output: restyling with another ``--style`` usually writes
another output file, and the Python API may have no output at all. ``KEY`` is a SHA-256 of the
frames as fitted (after ``--max-frames``, ``--resize`` and rounding to the processing size) and of
every setting that changes the fit (iterations, batch, grid sizes, seed, format version); the
style, the model and the guidance do not enter it.

What: ``fields.safetensors`` (the two fields' parameters; never pickle) and ``atlas.json`` (format,
key, field config, fit settings, reconstruction PSNR, fit time). The folder is written under a
temporary name and renamed when complete.

A saved fit that cannot be read, or whose json or tensors do not match what this run expects, is
an error (exit 1) naming the folder and ``--refit``; it is never silently used or replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from vidforge.errors import VidforgeError
from vidforge.stylize.atlas.fields import AtlasFields, FieldConfig

FORMAT = 1  # bump when the fields or the fit change meaning
FIELDS_FILE = "fields.safetensors"
META_FILE = "atlas.json"


def cache_root() -> Path:
    """``$VIDFORGE_CACHE``, else ``$XDG_CACHE_HOME/vidforge``, else ``~/.cache/vidforge``."""
    if os.environ.get("VIDFORGE_CACHE"):
        return Path(os.environ["VIDFORGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vidforge"


def fit_key(frames: np.ndarray, config: FieldConfig, settings) -> str:
    """SHA-256 hex of the fitted frames ``(F, H, W, 3)`` uint8 and everything that shapes the fit."""
    digest = hashlib.sha256()
    recipe = {"format": FORMAT, "config": config.to_dict(), "settings": dataclasses.asdict(settings)}
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    digest.update(str(frames.shape).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()


def fit_folder(key: str) -> Path:
    return cache_root() / "atlas" / key[:32]


def _bad(folder: Path, why: str) -> VidforgeError:
    return VidforgeError(
        f"saved atlas fit {str(folder)!r} {why}; pass --refit to fit again (or delete the folder)"
    )


def load_fit(folder: Path, key: str, config: FieldConfig, device) -> tuple[AtlasFields, dict] | None:
    """The saved fields and their json, None if nothing is saved there; VidforgeError if what is
    saved is unreadable or does not match ``key`` and ``config``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not folder.exists():
        return None
    try:
        meta = json.loads((folder / META_FILE).read_text())
        state = load_file(str(folder / FIELDS_FILE), device=str(device))
    except (OSError, ValueError, SafetensorError) as e:
        raise _bad(folder, f"cannot be read ({type(e).__name__})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _bad(
            folder, f"has format {meta.get('format') if isinstance(meta, dict) else None!r}, not {FORMAT}"
        )
    if meta.get("key") != key or meta.get("config") != config.to_dict():
        raise _bad(folder, "was fitted to other frames or settings")
    fields = AtlasFields(config).to(device)
    try:
        fields.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise _bad(folder, "holds tensors of other shapes than its json says") from e
    return fields.eval(), meta


def save_fit(folder: Path, fields: AtlasFields, meta: dict) -> None:
    """Write the fields and ``meta`` (plus format and config) into ``folder``, atomically."""
    from safetensors.torch import save_file

    from vidforge.core.writers import atomic_path, part_path

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            state = {k: v.detach().contiguous().cpu() for k, v in fields.state_dict().items()}
            save_file(state, str(tmp / FIELDS_FILE))
            record = {"format": FORMAT, "config": fields.config.to_dict(), **meta}
            (tmp / META_FILE).write_text(json.dumps(record, indent=1) + "\n")
            if folder.is_dir():  # --refit: a folder cannot be renamed onto a non-empty one
                old = part_path(folder, ".old")
                folder.rename(old)
                shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        raise VidforgeError(
            f"cannot save the atlas fit under {str(folder.parent)!r} ({e.strerror or e}); "
            "set VIDFORGE_CACHE to a writable folder"
        ) from e
