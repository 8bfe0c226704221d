"""Sampling optimization of Style-A-Video: a CLIP content loss steers ``z_t`` before each noise
prediction (on the first ``--clip-steps`` steps).

    L_s = 1 - cos(E(x_in), E(x̂0)),   x̂0 = D(x0_pred(z_t, eps.detach()))
    z_t ← z_t - λ · g / ‖g‖ · ‖z_t‖,  g = ∇_{z_t} L_s          (per frame)

The ``eps`` in ``x0_pred`` is the guided noise prediction of the PREVIOUS step (the first step
makes one extra UNet call), not a fresh one at ``z_t``: under DDIM with η = 0 that makes ``x̂0``
exactly the previous step's x0 prediction, and it saves one UNet call per optimized step.

``E`` is an open_clip image encoder (:func:`vidforge.models.clip.load_clip`), ``D`` the VAE decoder.
With ``λ = 0`` nothing here runs and no CLIP model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def content_loss(clip, target_embeds: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``L_s = 1 - cos(E(x_in), E(images))`` per image: ``(B,)``.

    ``target_embeds`` ``(B, D)`` normalised ``E(x_in)``; ``images`` ``(B, 3, H, W)`` in [0, 1].
    """
    embeds = clip.encode_images(images)
    return 1 - (embeds * target_embeds.to(embeds.dtype)).sum(dim=-1)


def decode_to_unit(vae, x0_latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents ``(B, 4, h, w)`` -> images ``(B, 3, H, W)`` in [0, 1], differentiable."""
    images = vae.decode(x0_latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return ((images.float() + 1) / 2).clamp(0, 1)


def clip_guidance_step(
    latents: torch.Tensor,
    predict_x0: Callable[[torch.Tensor, int], torch.Tensor],
    vae,
    clip,
    target_embeds: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift each frame's ``z_t`` ``(F, 4, h, w)`` down the normalised gradient of ``L_s``.

    ``predict_x0(z, f)`` maps frame ``f``'s latent ``(1, 4, h, w)`` to its x0 prediction with a
    detached eps. Frames go one at a time (the VAE-decoder backward dominates memory). Returns the
    shifted latents and ``L_s`` ``(F,)`` before the shift.
    """
    shifted, losses = [], []
    for f in range(latents.shape[0]):
        with torch.enable_grad():
            z = latents[f : f + 1].detach().requires_grad_(True)
            loss = content_loss(clip, target_embeds[f : f + 1], decode_to_unit(vae, predict_x0(z, f))).sum()
            (grad,) = torch.autograd.grad(loss, z)
        grad, z = grad.float(), z.detach().float()
        step = scale * grad / grad.norm().clamp_min(1e-12) * z.norm()
        shifted.append((z - step).to(latents.dtype))
        losses.append(loss.detach().float())
    return torch.cat(shifted), torch.stack(losses)
