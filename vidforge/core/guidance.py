"""Classifier-free guidance pieces shared by the samplers (animate, extend)."""

from __future__ import annotations

import torch


def cfg(e_u: torch.Tensor, e_c: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``e_u + s·(e_c - e_u)``."""
    return e_u + scale * (e_c - e_u)


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, section 3.4): move the per-sample std of the guided output
    toward the conditional output's, by ``guidance_rescale`` (0 = off). Uses diffusers' function."""
    if guidance_rescale <= 0:
        return guided
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    return rescale_noise_cfg(guided, cond, guidance_rescale=guidance_rescale)
