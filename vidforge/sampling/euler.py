"""Euler and Euler-ancestral samplers in σ space (Karras et al. 2022, Algorithm 2; k-diffusion's
``sample_euler`` / ``sample_euler_ancestral``), over a :class:`~vidforge.sampling.schedules.SigmaSchedule`.

Same signature and hooks as :func:`vidforge.sampling.ddim.sample_ddim`. Neither keeps a history
between steps, so latents may be changed between steps (stylize's fusion and CLIP step).
"""

from __future__ import annotations

import torch

from vidforge.core.device import randn
from vidforge.sampling.ddim import BeforeStep, Callback, Progress
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import SigmaSchedule


def ancestral_step(sigma_from: torch.Tensor, sigma_to: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(σ_down, σ_up)``: step deterministically to σ_down, then add noise of std σ_up, so the
    sample lands at σ_to (η = 1)."""
    sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    return (sigma_to**2 - sigma_up**2) ** 0.5, sigma_up


def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    schedule: SigmaSchedule,
    *,
    generator: torch.Generator | None = None,
    ancestral: bool = False,
    before_step: BeforeStep | None = None,
    callback: Callback | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Euler steps ``x ← x + d·(σ_next - σ)`` with ``d = (x - x0) / σ``; ``ancestral`` steps to
    σ_down and adds fresh noise of std σ_up from ``generator``."""
    if ancestral and generator is None:
        raise ValueError("sample_euler: ancestral sampling needs a generator for the noise")
    steps = range(len(schedule))
    for i in progress(steps) if progress is not None else steps:
        step = schedule.step(i, x.device)
        if before_step is not None:
            x = before_step(x, step)
        _, x0 = denoiser(x, step)
        sigma, sigma_next = step.b, schedule.sigmas[i + 1].to(x.device)
        sigma_up = None
        if ancestral:
            sigma_next, sigma_up = ancestral_step(sigma, sigma_next)
        d = (x - x0) / sigma
        x = x + d * (sigma_next - sigma)
        if sigma_up is not None:
            x = x + randn(x.shape, generator, x.device, x.dtype) * sigma_up
        if callback is not None:
            callback({"x": x, "i": step.index, "t": float(step.t), "denoised": x0})
    return x
