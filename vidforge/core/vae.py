"""VAE encode/decode in chunks of frames, so memory stays bounded in video length."""

from __future__ import annotations

import torch

from vidforge.core.device import execution_device


def encode_frames(
    vae, frames: torch.Tensor, chunk_size: int = 8, sample: bool = False, generator=None, scale: bool = True
) -> torch.Tensor:
    """``(F, 3, H, W)`` in [-1, 1] -> latents ``(F, C, H/8, W/8)``.

    ``sample=False`` takes the posterior mode (InstructPix2Pix image conditioning); ``scale``
    multiplies by ``vae.config.scaling_factor`` (diffusion latents).
    """
    device = execution_device(vae)
    latents = []
    for chunk in frames.split(chunk_size):
        dist = vae.encode(chunk.to(device, vae.dtype)).latent_dist
        latents.append(dist.sample(generator) if sample else dist.mode())
    latents = torch.cat(latents)
    return latents * vae.config.scaling_factor if scale else latents


def decode_latents(
    vae, latents: torch.Tensor, chunk_size: int = 8, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Scaled latents ``(F, C, h, w)`` -> frames ``(F, 3, H, W)`` in [-1, 1], ``chunk_size`` at a time.

    ``dtype`` runs the decoder in another precision (fp32 avoids the fp16 VAE NaNs users report).
    """
    dtype = dtype or vae.dtype
    device = execution_device(vae)
    frames = []
    for chunk in latents.split(chunk_size):
        chunk = chunk.to(device, dtype) / vae.config.scaling_factor
        with torch.autocast(device.type, enabled=False):
            frames.append(vae.decode(chunk).sample.float())
    return torch.cat(frames)


def set_tiling(vae, enabled: bool) -> None:
    """Tile the VAE spatially (diffusers' tiled encode/decode) for very large frames."""
    if enabled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()


def to_tensor(frames, device=None, dtype=torch.float32) -> torch.Tensor:
    """uint8 ``(F, H, W, 3)`` numpy -> ``(F, 3, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(frames).to(device=device).permute(0, 3, 1, 2).to(dtype)
    return x / 127.5 - 1.0


def to_uint8(frames: torch.Tensor):
    """``(F, 3, H, W)`` in [-1, 1] -> uint8 ``(F, H, W, 3)`` numpy."""
    x = ((frames.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def vae_to_fp32(vae) -> None:
    """Cast the VAE to fp32 (fp16 VAE decodes can give NaNs) without diffusers' warning about
    casting with ``to()``."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        vae.to(torch.float32)
    finally:
        diffusers_logging.set_verbosity(level)
