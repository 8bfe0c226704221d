"""InstructPix2Pix components for ``stylize``: the real model (diffusers layout, from the Hugging Face
cache or a local folder) and the ``tiny`` preset (same classes, small config, seeded random weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidforge.core.models import ModelSource, load_diffusers_folder, resolve_model, seeded
from vidforge.core.tiny import SD_SCHEDULE
from vidforge.errors import VidforgeError

# diffusers-layout files an InstructPix2Pix pipeline needs (safetensors only: no pickles)
ALLOW_PATTERNS = [
    "model_index.json",
    "scheduler/*.json",
    "tokenizer/*",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
]
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass
class Components:
    unet: torch.nn.Module  # UNet2DConditionModel, in_channels = 8 (4 noisy + 4 image latent)
    vae: torch.nn.Module  # AutoencoderKL
    text_encoder: torch.nn.Module  # transformers CLIPTextModel
    tokenizer: object  # CLIPTokenizer or OpenClipTokenizer
    scheduler_config: dict
    name: str
    is_tiny: bool = False


def build_tiny(seed: int = 0) -> Components:
    """Small InstructPix2Pix-shaped models (~1M parameters): plumbing only, output is noise.

    Attention sits on the low-resolution level only, so tiny stays fast at real frame sizes."""
    from diffusers import UNet2DConditionModel

    from vidforge.core.text import OpenClipTokenizer
    from vidforge.core.tiny import tiny_text_encoder, tiny_vae

    with seeded(seed):
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=8,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=16,
        )
    return Components(
        unet.eval(),
        tiny_vae(seed + 1),
        tiny_text_encoder(seed + 2),
        OpenClipTokenizer(),
        dict(SD_SCHEDULE),
        "tiny",
        True,
    )


def load_components(model: str | None, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Components:
    """Resolve ``--model`` (preset, hub id or diffusers folder) and load every component on ``device``."""
    source = resolve_model(model, "stylize")
    parts = build_tiny(seed) if source.is_tiny else load_pretrained(source, dtype)
    for module in (parts.unet, parts.vae, parts.text_encoder):
        module.to(device).requires_grad_(False)
        if next(module.parameters()).dtype != dtype:  # pretrained parts are loaded in dtype already
            module.to(dtype)
    return parts


def load_pretrained(source: ModelSource, dtype: torch.dtype) -> Components:
    """``from_pretrained`` on a diffusers InstructPix2Pix folder (cached, downloaded, or local)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    folder, unet, vae, text_encoder, tokenizer = load_diffusers_folder(
        source, UNet2DConditionModel, "InstructPix2Pix", SUBFOLDERS, dtype, ALLOW_PATTERNS
    )
    scheduler_config = dict(DDIMScheduler.load_config(folder, subfolder="scheduler"))
    if unet.config.in_channels != 8:
        raise VidforgeError(
            f"--model {source.name}: the UNet has {unet.config.in_channels} input channels; an InstructPix2Pix "
            "UNet has 8 (4 noisy + 4 image latent)"
        )
    return Components(unet, vae, text_encoder, tokenizer, scheduler_config, source.name)


def make_scheduler(name: str, config: dict):
    """A fresh diffusers scheduler by vidforge name (``ddim``, ``euler``, ``euler-a``)."""
    from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    classes = {
        "ddim": DDIMScheduler,
        "euler": EulerDiscreteScheduler,
        "euler-a": EulerAncestralDiscreteScheduler,
    }
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    return classes[name].from_config(config)
