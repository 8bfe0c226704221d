"""Loading DynamiCrafter: a preset, hub id or local checkpoint, converted once and cached as
safetensors (:mod:`~vidforge.models.dynamicrafter.convert`), loaded strictly, its schedule checked."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from vidforge.errors import VidforgeError
from vidforge.models.bundle import ModelBundle
from vidforge.models.dynamicrafter import convert
from vidforge.models.dynamicrafter.config import (
    DynamiCrafterConfig,
    get_config,
    noise_schedule,
    schedule_mismatches,
)
from vidforge.models.dynamicrafter.network import DynamiCrafter, build_model
from vidforge.models.hub import fetch_weights
from vidforge.models.registry import ModelSource

FAMILY = "dynamicrafter"


def build_tiny() -> ModelBundle:
    """The tiny release config with seeded random weights (512-style sampling)."""
    network = build_model("tiny")
    network.schedule = {}
    return bundle(network, "tiny", is_tiny=True)


def load_pretrained(source: ModelSource, dtype: torch.dtype) -> ModelBundle:
    """A release checkpoint (preset, hub id or local file), its schedule buffers checked."""
    network = load_network(source, "cpu", dtype)
    check_schedule(network, source.name)
    return bundle(network, source.name)


def bundle(network: DynamiCrafter, name: str, is_tiny: bool = False) -> ModelBundle:
    """Wrap a built or loaded network: clips of its ``video_length`` frames at its native size."""
    config = network.config
    height, width = config.resolution
    return ModelBundle(
        name, FAMILY, network.unet, network.vae, network.text_encoder, None, noise_schedule(config),
        config.video_length, height, width, is_tiny=is_tiny, network=network,
    )  # fmt: skip


def load_network(
    source: ModelSource, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, config=None
) -> DynamiCrafter:
    """A preset, hub id or local ``.ckpt``/``.safetensors`` -> loaded network (weights converted
    once and cached as safetensors, then loaded strictly). ``tiny`` -> ``build_model("tiny")``.

    ``config`` overrides the release guessed from the preset / checkpoint (see
    :func:`~vidforge.models.dynamicrafter.convert.guess_config`). The schedule buffers found in the
    checkpoint are kept on ``network.schedule`` (``betas``, ``alphas_cumprod``, ``scale_arr``...).
    """
    if source.is_tiny:
        network = build_model("tiny", device, dtype)
        network.schedule = {}
        return network
    weights, schedule, cfg = load_converted(source, config)
    with torch.device("meta"):
        network = DynamiCrafter(cfg)
    convert.load_strict(network, weights, name=str(source.name))
    network = network.to(device=device, dtype=dtype).eval().requires_grad_(False)
    network.schedule = schedule
    return network


def load_converted(source: ModelSource, config: str | None = None) -> tuple[dict, dict, DynamiCrafterConfig]:
    """``ModelSource`` -> (weights, schedule, config): from the safetensors cache when present,
    otherwise read once, convert, check strictly and cache."""
    if config is None and source.preset is not None and source.preset.release:
        config = source.preset.release
    path = fetch_weights(source, allow_patterns=["model.ckpt", "*.safetensors"])
    checkpoint = convert.checkpoint_file(Path(path))
    label = source.preset.name if source.preset is not None else checkpoint.stem
    cached = convert.cache_path(checkpoint, label)
    if cached.exists():
        weights, schedule, release = convert.read_converted(cached)
        return weights, schedule, get_config(config or release or "512")
    weights, schedule, release = convert.convert_checkpoint(checkpoint, f"{label} {checkpoint}", config)
    cfg = get_config(release)
    convert.check_keys(weights, convert.target_state_dict(cfg), str(source.name), cfg.name)
    if not (checkpoint.suffix == ".safetensors" and convert.is_vidforge_layout(weights)):
        try:
            convert.save_converted(cached, weights, schedule, cfg.name)
        except OSError as e:  # a read-only cache must not stop the run
            warnings.warn(f"could not cache the converted checkpoint at {cached}: {e}", stacklevel=2)
    return weights, schedule, cfg


def check_schedule(network: DynamiCrafter, name: str) -> None:
    """The checkpoint's own noise-schedule buffers must match the config's schedule."""
    bad = schedule_mismatches(network.config, getattr(network, "schedule", None) or {})
    if bad:
        raise VidforgeError(
            f"--model {name}: the checkpoint's {' and '.join(bad)} do not match the {network.config.name!r} "
            "release settings (zero-SNR, dynamic rescale); is it a different DynamiCrafter release?"
        )
