"""Guidance: classifier-free guidance and its variants, and one batched network call over the
guidance branches. Pure functions over network outputs (ε or v alike: guidance is linear)."""

from __future__ import annotations

from collections.abc import Callable

import torch

CondModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x, t, cond) -> output
Combine = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def cfg(e_u: torch.Tensor, e_c: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): ``e_u + s·(e_c - e_u)``."""
    return e_u + scale * (e_c - e_u)


def multi_cond_cfg(
    e_u: torch.Tensor, e_img: torch.Tensor, e_c: torch.Tensor, text_scale: float, image_scale: float
) -> torch.Tensor:
    """DynamiCrafter's two-condition guidance: ``e_u + s_img·(e_img - e_u) + s_txt·(e_c - e_img)``.

    ``e_u`` = (empty text, zero image), ``e_img`` = (empty text, real image), ``e_c`` = (text, image).
    With ``s_img = s_txt`` it is plain CFG between ``e_u`` and ``e_c``.
    """
    return e_u + image_scale * (e_img - e_u) + text_scale * (e_c - e_img)


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, guidance_rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, section 3.4): move the per-sample std of the guided output
    toward the conditional output's, by ``guidance_rescale`` (0 = off). Uses diffusers' function."""
    if guidance_rescale <= 0:
        return guided
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    return rescale_noise_cfg(guided, cond, guidance_rescale=guidance_rescale)


class BatchedGuidance:
    """``model(x, t)`` for a sampler: every guidance branch in ONE batched network call, then combined.

    ``conds`` maps branch name -> condition ``(B, ...)`` in batch order; ``model(x, t, cond)`` runs the
    network on ``len(conds)`` copies of ``x`` with the conditions concatenated; ``combine`` turns the
    per-branch outputs (float32) into the guided output.
    """

    def __init__(self, model: CondModel, conds: dict[str, torch.Tensor], combine: Combine):
        self.model = model
        self.names = tuple(conds)
        self.cond = torch.cat(list(conds.values()))
        self.combine = combine

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = len(self.names)
        out = self.model(torch.cat([x] * n) if n > 1 else x, t, self.cond)
        return self.combine(dict(zip(self.names, out.float().chunk(n), strict=True)))


def cfg_combine(scale: float, guidance_rescale: float = 0.0, uncond: str = "u", cond: str = "c") -> Combine:
    """CFG (then guidance rescale) of two branches; with one branch (``scale`` = 1), that branch."""

    def combine(outs: dict[str, torch.Tensor]) -> torch.Tensor:
        if len(outs) == 1:
            return outs[cond]
        return rescale_guidance(cfg(outs[uncond], outs[cond], scale), outs[cond], guidance_rescale)

    return combine
