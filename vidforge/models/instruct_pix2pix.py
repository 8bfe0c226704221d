"""InstructPix2Pix (``stylize``): the real model (diffusers layout, from the Hugging Face cache or a
local folder) and the ``tiny`` preset (same classes, small config, seeded random weights).
"""

from __future__ import annotations

import torch

from vidforge.errors import VidforgeError
from vidforge.models.bundle import ModelBundle
from vidforge.models.diffusers_folder import load_diffusers_folder
from vidforge.models.hub import origin
from vidforge.models.registry import ModelSource
from vidforge.models.tiny import seeded
from vidforge.sampling.schedules import diffusers_noise_schedule

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
FAMILY = "instruct-pix2pix"


def build_tiny(seed: int = 0) -> ModelBundle:
    """Small InstructPix2Pix-shaped models (~1M parameters): plumbing only, output is noise.

    Attention sits on the low-resolution level only, so tiny stays fast at real frame sizes."""
    from diffusers import UNet2DConditionModel

    from vidforge.models.text import OpenClipTokenizer
    from vidforge.models.tiny import tiny_text_encoder, tiny_vae

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
    return ModelBundle(
        "tiny", FAMILY, unet.eval(), tiny_vae(seed + 1), tiny_text_encoder(seed + 2), OpenClipTokenizer(),
        diffusers_noise_schedule(), is_tiny=True,
    )  # fmt: skip


def load_pretrained(source: ModelSource, dtype: torch.dtype) -> ModelBundle:
    """``from_pretrained`` on a diffusers InstructPix2Pix folder (cached, downloaded, or local)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    folder, unet, vae, text_encoder, tokenizer = load_diffusers_folder(
        source, UNet2DConditionModel, "InstructPix2Pix", SUBFOLDERS, dtype
    )
    scheduler_config = dict(DDIMScheduler.load_config(folder, subfolder="scheduler"))
    if unet.config.in_channels != 8:
        raise VidforgeError(
            f"--model {source.name}: the UNet has {unet.config.in_channels} input channels; an InstructPix2Pix "
            "UNet has 8 (4 noisy + 4 image latent)"
        )
    noise = diffusers_noise_schedule(dict(scheduler_config))
    return ModelBundle(
        source.name, FAMILY, unet, vae, text_encoder, tokenizer, noise, origin=origin(source, folder)
    )
