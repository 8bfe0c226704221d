"""DDIM (Song et al. 2021): one step, the sampling loop and its inversion, for every command.

Samplers are plain functions of ``(denoiser, x, schedule)`` (k-diffusion style): the denoiser
hides the prediction type (:mod:`vidforge.sampling.denoisers`), the schedule holds ᾱ per step
(:func:`vidforge.sampling.schedules.ddim_schedule`), ``before_step(x, step) -> x`` may change the
latents before the network sees them (and the step then uses the changed latents), and
``callback`` only observes ``{"x", "i", "t", "denoised"}`` (``i``: the step's index in the full
schedule, also on a part-way schedule from ``schedule.from_step(k)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from vidforge.core.device import randn
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import DDIMSchedule, Step

BeforeStep = Callable[[torch.Tensor, Step], torch.Tensor]
Callback = Callable[[dict], None]
Progress = Callable[[Iterable], Iterable]


def ddim_step(
    eps: torch.Tensor,
    x0: torch.Tensor,
    alpha_cumprod_prev: torch.Tensor,
    sigma: torch.Tensor,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDIM update (Song et al. 2021, eq. 12): ``√ᾱ_prev·x0 + √(1-ᾱ_prev-σ²)·ε + σ·z``."""
    dir_xt = (1 - alpha_cumprod_prev - sigma**2).clamp(min=0).sqrt() * eps
    x_prev = alpha_cumprod_prev.sqrt() * x0 + dir_xt
    if noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev


def sample_ddim(
    denoiser: Denoiser,
    x: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    before_step: BeforeStep | None = None,
    callback: Callback | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """DDIM from ``x`` (noise at the first timestep) to the clean sample, with η-noise from
    ``generator`` and DynamiCrafter's dynamic x0 rescale when the schedule has it: the network
    predicts ``scale_arr[t]·x0`` and the next step expects ``scale_arr[t_prev]·x0``."""
    if eta > 0 and generator is None:
        raise ValueError("sample_ddim: eta > 0 needs a generator for the noise")
    sigmas = schedule.sigmas(eta)
    steps = range(len(schedule))
    for i in progress(steps) if progress is not None else steps:
        step = schedule.step(i, x.device)
        if before_step is not None:
            x = before_step(x, step)
        eps, x0 = denoiser(x, step)
        x0 = x0 * schedule.x0_rescale[i].to(x.device)
        noise = randn(x.shape, generator, x.device, x.dtype) if eta > 0 else None
        a_prev = schedule.alphas_cumprod_prev[i].to(x.device)
        x = ddim_step(eps, x0, a_prev, sigmas[i].to(x.device), noise)
        if callback is not None:
            callback({"x": x, "i": step.index, "t": int(step.t), "denoised": x0})
    return x


def invert_ddim(
    denoiser: Denoiser,
    x0: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    callback: Callback | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """DDIM inversion: the deterministic (η = 0) path from a clean sample up to the first timestep,
    in float64. Step ``t_{i+1} -> t_i`` evaluates the network at ``(z_{t_{i+1}}, t_i)`` (the usual
    approximation) and converts its output at the sample's own level ᾱ_{t_{i+1}}, so ε- and
    v-prediction models invert alike; the dynamic x0 rescale is undone step by step.
    ``callback`` sees ``{"x": z_{t_i}, "i": i, "t": t_i}``, the latent step ``i`` of sampling starts from.
    Use it without guidance: inversion with CFG drifts."""
    z = x0
    order = list(reversed(range(len(schedule))))  # from the least noisy step up to the first
    for i in progress(order) if progress is not None else order:
        a_cur = schedule.alphas_cumprod_prev[i].to(z.device, torch.float64)
        a_next = schedule.alphas_cumprod[i].to(z.device, torch.float64)
        t = schedule.timesteps[i].to(z.device)
        eps, x0_pred = denoiser(z, Step(i, t, a_cur.sqrt(), (1 - a_cur).sqrt()), precision=torch.float64)
        x0_pred = x0_pred / schedule.x0_rescale[i].to(z.device, torch.float64)
        z = (a_next.sqrt() * x0_pred + (1 - a_next).sqrt() * eps).to(x0.dtype)
        if callback is not None:
            callback({"x": z, "i": i, "t": int(t)})
    return z
