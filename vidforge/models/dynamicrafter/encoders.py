"""DynamiCrafter's frozen encoders, built from library classes with no download.

* text: open_clip ViT-H-14 text tower (``TextTransformer``), *penultimate* block output then
  ``ln_final`` -> ``(B, 77, 1024)``;
* image: open_clip ViT-H-14 vision tower (``VisionTransformer``), all last-block tokens without
  ``ln_post``/``proj`` -> ``(B, 257, 1280)``; the image is squashed to 224x224 (bicubic, antialiased)
  and normalised with the OpenAI CLIP mean/std;
* VAE: the LDM KL-f8 autoencoder as diffusers' ``AutoencoderKL``.

The towers are open_clip classes with random init; pretrained weights come from the DynamiCrafter
checkpoint (``convert.py``). The CLIP towers use ``nn.MultiheadAttention`` with
``need_weights=False``, which runs PyTorch's fused SDPA kernel (no score matrix in memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

# open_clip's ViT-H-14 config (model_configs/ViT-H-14.json), written out so nothing is looked up.
VIT_H_14_VISION = {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14}
VIT_H_14_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 1024, "heads": 16, "layers": 24}


@dataclass(frozen=True)
class ClipConfig:
    embed_dim: int = 1024
    vision: dict = field(default_factory=lambda: dict(VIT_H_14_VISION))
    text: dict = field(default_factory=lambda: dict(VIT_H_14_TEXT))

    @property
    def image_size(self) -> int:
        return self.vision["image_size"]


@dataclass(frozen=True)
class VaeConfig:
    """diffusers ``AutoencoderKL`` arguments for the LDM KL-f8 VAE (``ch 128, ch_mult [1,2,4,4]``)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 256
    scaling_factor: float = 0.18215


def build_text_tower(cfg: ClipConfig) -> torch.nn.Module:
    """open_clip ``TextTransformer`` (random init)."""
    from open_clip.model import _build_text_tower

    tower = _build_text_tower(cfg.embed_dim, cfg.text)
    tower.attn_mask = None  # we build the causal mask per call (a non-persistent buffer breaks meta loading)
    return tower


def build_vision_tower(cfg: ClipConfig) -> torch.nn.Module:
    """open_clip ``VisionTransformer`` (random init)."""
    from open_clip.model import _build_vision_tower

    return _build_vision_tower(cfg.embed_dim, cfg.vision)


def build_vae(cfg: VaeConfig) -> torch.nn.Module:
    from diffusers import AutoencoderKL

    n = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=cfg.sample_size,
        scaling_factor=cfg.scaling_factor,
    )


def text_hidden_states(tower: torch.nn.Module, ids: torch.Tensor, skip_last: int = 1) -> torch.Tensor:
    """Token ids ``(B, 77)`` -> ``ln_final`` of the output of block ``-1 - skip_last`` (penultimate
    for ``skip_last=1``), ``(B, 77, width)``."""
    dtype = tower.token_embedding.weight.dtype
    n = ids.shape[1]
    x = tower.token_embedding(ids) + tower.positional_embedding[:n]
    mask = torch.full((n, n), float("-inf"), device=x.device, dtype=dtype).triu_(1)  # causal
    blocks = tower.transformer.resblocks
    for block in blocks[: len(blocks) - skip_last]:
        x = block(x, attn_mask=mask)
    return tower.ln_final(x)


def preprocess_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 3, H, W)`` in [-1, 1] -> ``(B, 3, size, size)``: squashed (aspect not kept), normalised
    with the OpenAI CLIP mean/std.

    The authors resize with kornia (Gaussian blur with σ = (factor-1)/2, then bicubic with
    ``align_corners=True``); diffusers' SVD pipeline ships the same resize, which we call, rather
    than torch's own antialiasing, which gives different pixels.
    """
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
        _resize_with_antialiasing,
    )

    x = _resize_with_antialiasing(images.float(), (size, size))
    x = (x + 1) / 2
    mean = torch.tensor(OPENAI_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(OPENAI_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def vision_tokens(tower: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Preprocessed ``(B, 3, S, S)`` -> last-block tokens ``(B, 1 + grid², width)`` (class token first;
    no ``ln_post``, no projection)."""
    x = tower._embeds(pixels.to(tower.conv1.weight.dtype))  # patchify, class token, pos. emb., ln_pre
    return tower.transformer(x)
