"""Networks, release configs, checkpoint conversion, loaders, presets and tiny builders.

:func:`load_model` is the one entry point: a preset name, hub id or local path and the task it is
for, to a :class:`~vidforge.models.bundle.ModelBundle`. Importing this package does not import torch.
"""

from __future__ import annotations

import importlib
import os

from vidforge.models.registry import (
    DEFAULT_MODELS,
    PRESETS,
    TASK_FAMILY,
    ModelSource,
    Preset,
    available_models,
    resolve_model,
)

# family -> the module whose ``build_tiny()`` and ``load_pretrained(source, dtype)`` build its bundle
LOADERS = {
    "instruct-pix2pix": "vidforge.models.instruct_pix2pix",
    "text-to-video": "vidforge.models.text_to_video",
    "dynamicrafter": "vidforge.models.dynamicrafter.load",
}


def load_model(
    name_or_path: str | os.PathLike | ModelSource | None, task: str, device="cpu", dtype=None,
    offload: str = "none", compile: bool = False,
):  # fmt: skip
    """Resolve ``--model`` for ``task`` ("stylize", "animate" or "extend") and load it onto
    ``device`` in ``dtype`` (default float32); ``offload`` keeps the weights in CPU memory
    ("model" or "sequential", accelerate's hooks); ``compile`` runs the denoiser through
    ``torch.compile``. ``tiny`` is one fixed model (random weights from seed 0), whatever the
    run's ``--seed``."""
    import torch

    from vidforge.models.bundle import prepare_modules
    from vidforge.models.hub import origin

    source = name_or_path if isinstance(name_or_path, ModelSource) else resolve_model(name_or_path, task)
    family = importlib.import_module(LOADERS[source.family])
    dtype = dtype or torch.float32
    bundle = family.build_tiny() if source.is_tiny else family.load_pretrained(source, dtype)
    bundle.origin = bundle.origin or origin(source)
    prepare_modules(bundle, torch.device(device), dtype, offload)
    if compile:
        from vidforge.models.bundle import compile_denoiser

        compile_denoiser(bundle)
    return bundle


__all__ = [
    "DEFAULT_MODELS",
    "LOADERS",
    "PRESETS",
    "TASK_FAMILY",
    "ModelSource",
    "Preset",
    "available_models",
    "load_model",
    "resolve_model",
]
