"""The three Reuse-and-Diffuse strategies (Gu et al. 2023, SPEC section 3) as pure functions.

Latents are ``(B, C, N, h, w)``: frame ``j`` of clip ``k`` is ``z[:, :, j]``. Clip ``k`` reuses the
last ``M`` frames of clip ``k-1`` in mirrored order: its frame ``j`` corresponds to frame
``N-1-j`` of the previous clip.
"""

from __future__ import annotations

import math

import torch

from vidforge.core.device import randn

FRAME_DIM = 2


def frame_noise_reversion(previous_noise: torch.Tensor) -> torch.Tensor:
    """FNR: the previous clip's initial noise with its frame order reversed,
    ``out[:, :, j] = previous_noise[:, :, N-1-j]``. ``(B, C, N, h, w) -> (B, C, N, h, w)``."""
    return previous_noise.flip(FRAME_DIM)


def past_dependent_noise_sampling(
    previous_noise: torch.Tensor, prompt_frames: int, noise_recycle: float, generator: torch.Generator
) -> torch.Tensor:
    """Initial noise ``z^k_T`` of clip ``k`` from ``z^{k-1}_T`` (FNR + PNS)::

        z^k_T[j] = z^{k-1}_T[N-1-j]                                      j < M
        z^k_T[j] = α/√(1+α²) · z^{k-1}_T[N-1-j] + ε,  ε ~ N(0, 1/(1+α²))    j ≥ M

    so every frame keeps unit variance and frame ``j ≥ M`` has correlation ``α/√(1+α²)`` with the
    reversed previous noise. ``M = 0`` is pure PNS; ``α = 0`` gives fresh noise for ``j ≥ M``.
    """
    reversed_noise = frame_noise_reversion(previous_noise)
    m = prompt_frames
    n = previous_noise.shape[FRAME_DIM]
    if m >= n:
        return reversed_noise
    scale = 1.0 / math.sqrt(1.0 + noise_recycle**2)
    shape = list(previous_noise.shape)
    shape[FRAME_DIM] = n - m
    epsilon = randn(shape, generator, previous_noise.device, previous_noise.dtype) * scale
    recycled = noise_recycle * scale * reversed_noise[:, :, m:] + epsilon
    return torch.cat([reversed_noise[:, :, :m], recycled], dim=FRAME_DIM)


def staged_guidance_steps(num_steps: int, prompt_frames: int, staged_guidance: float) -> list[int]:
    """DSG: for each prompt frame ``j < M``, how many of the first steps reuse the previous clip's
    latent: the steps ``i`` with ``i < (M-j)·(S/M)·β``, i.e. ``ceil((M-j)·S·β/M)`` of them.

    S=50, M=4, β=0.4 gives ``[20, 15, 10, 5]``. A tiny tolerance keeps float round-off
    (4·12.5·0.4 = 20.000000000000004) from adding a step.
    """
    counts = []
    for j in range(prompt_frames):
        bound = (prompt_frames - j) * num_steps * staged_guidance / prompt_frames
        counts.append(max(0, min(num_steps, math.ceil(bound - 1e-9))))
    return counts


def staged_guidance_schedule(num_steps: int, prompt_frames: int, staged_guidance: float) -> torch.Tensor:
    """DSG schedule as a bool mask ``(S_reuse, M)``: ``mask[i, j]`` is True when, at step ``i``
    (counted from ``t = T`` down), frame ``j`` of clip ``k`` is overwritten by frame ``N-1-j`` of
    clip ``k-1`` at the same step. ``S_reuse = ceil(S·β)`` (no step after it reuses anything), so
    only that many steps of prompt-frame latents need caching."""
    counts = staged_guidance_steps(num_steps, prompt_frames, staged_guidance)
    rows = max(counts, default=0)
    steps = torch.arange(rows).unsqueeze(1)
    return steps < torch.tensor(counts, dtype=torch.long).reshape(1, -1)


def apply_staged_guidance(
    latents: torch.Tensor, prompt_latents: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Overwrite the prompt frames selected by one schedule row.

    ``latents (B, C, N, h, w)``; ``prompt_latents (B, C, M, h, w)`` already mirrored (its frame
    ``j`` is frame ``N-1-j`` of the previous clip); ``mask (M,)`` bool. Returns a new tensor.
    """
    m = mask.shape[0]
    if m == 0 or not bool(mask.any()):
        return latents
    keep = mask.to(latents.device).reshape(1, 1, m, 1, 1)
    head = torch.where(keep, prompt_latents.to(latents.dtype), latents[:, :, :m])
    return torch.cat([head, latents[:, :, m:]], dim=FRAME_DIM)


def mirrored_prompt_latents(latents: torch.Tensor, prompt_frames: int) -> torch.Tensor:
    """The last ``M`` frames of a clip in mirrored order: ``out[:, :, j] = latents[:, :, N-1-j]``,
    ``(B, C, N, h, w) -> (B, C, M, h, w)``. This is all clip ``k+1`` needs from a step of clip ``k``."""
    n = latents.shape[FRAME_DIM]
    return latents[:, :, n - prompt_frames :].flip(FRAME_DIM).clone()
