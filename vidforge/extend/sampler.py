"""Clip-by-clip Reuse-and-Diffuse sampling over any video denoiser (k-diffusion style).

A denoiser is a callable ``eps(z_t (B, C, N, h, w), t, cond) -> eps (B, C, N, h, w)``; the
sampler knows nothing else about the model. Steps are DDIM through diffusers' ``DDIMScheduler``
(``step`` is stateless for DDIM, so overwriting latents between steps is safe; multistep solvers
keep a history that DSG overwrites would invalidate).

Memory: between clips only :class:`ReuseState` is kept: one clip's initial noise and, for the
first ``ceil(S·β)`` steps, the mirrored latents of its last ``M`` frames. Neither grows with the
number of clips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from vidforge.core.device import randn
from vidforge.core.guidance import cfg, rescale_guidance
from vidforge.errors import VidforgeError
from vidforge.extend.reuse import (
    apply_staged_guidance,
    mirrored_prompt_latents,
    past_dependent_noise_sampling,
    staged_guidance_schedule,
)

Denoiser = Callable[[torch.Tensor, torch.Tensor, object], torch.Tensor]


@dataclass
class ReuseState:
    """What the next clip needs from the previous one (constant size in video length).

    ``noise``: the previous clip's initial noise ``z^{k-1}_T`` ``(B, C, N, h, w)`` (after its own
    FNR/PNS); ``prompt_latents``: ``(S_reuse, B, C, M, h, w)``, row ``i`` = frames ``N-1..N-M`` of
    the latent clip ``k-1`` fed to the denoiser at step ``i``; ``clip_index``: the next clip.
    """

    clip_index: int = 0
    noise: torch.Tensor | None = None
    prompt_latents: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            k: v.contiguous()
            for k, v in (("noise", self.noise), ("prompt_latents", self.prompt_latents))
            if v is not None
        }

    @property
    def nbytes(self) -> int:
        """Size of the cached state: the sampler's whole memory between clips."""
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


def classifier_free_guidance(
    denoiser: Denoiser, guidance_scale: float, guidance_rescale: float = 0.0
) -> Denoiser:
    """Wrap a conditional denoiser with CFG (Ho & Salimans 2022): ``cond = (positive, negative)``,
    ``eps = eps_neg + s·(eps_pos - eps_neg)``, both branches in one batched call.

    ``guidance_rescale > 0`` (Lin et al. 2023, sec. 3.4; DynamiCrafter 512/1024 use 0.7) moves the
    per-sample std of the guided output toward the positive branch's (diffusers' ``rescale_noise_cfg``).
    """

    def guided(z: torch.Tensor, t, cond) -> torch.Tensor:
        positive, negative = cond
        if guidance_scale == 1.0:
            return denoiser(z, t, positive)
        batch = z.shape[0]
        eps = denoiser(torch.cat([z, z]), t, torch.cat([negative, positive]))
        eps_negative, eps_positive = eps[:batch], eps[batch:]
        return rescale_guidance(
            cfg(eps_negative, eps_positive, guidance_scale), eps_positive, guidance_rescale
        )

    return guided


def ddim_step(scheduler, eps, t, z, eta: float, generator: torch.Generator | None) -> torch.Tensor:
    """One DDIM step ``z_t -> z_{t_prev}``; with ``eta > 0`` the noise comes from ``generator``
    (drawn on its device, so CPU and CUDA runs sharing a CPU generator match)."""
    noise = randn(z.shape, generator, z.device, z.dtype) if eta > 0 else None
    return scheduler.step(eps, t, z, eta=eta, variance_noise=noise).prev_sample


def sample_clip(
    denoiser: Denoiser,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
    cond,
    *,
    schedule: torch.Tensor | None = None,
    prompt_latents: torch.Tensor | None = None,
    num_cached: int = 0,
    prompt_frames: int = 0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise one clip from ``noise = z_T (B, C, N, h, w)`` with DSG.

    At step ``i``, before the denoiser call, frames ``j < M`` with ``schedule[i, j]`` are replaced by
    ``prompt_latents[i][:, :, j]`` (the previous clip's frame ``N-1-j`` at the same step). The latent
    fed to the denoiser at the first ``num_cached`` steps is recorded (mirrored last ``M`` frames)
    for the next clip. Returns ``(z_0, cache (num_cached, B, C, M, h, w) or None)``.
    """
    z = noise
    cache = []
    steps = list(enumerate(timesteps))
    for i, t in progress(steps) if progress else steps:
        if prompt_latents is not None and schedule is not None and i < schedule.shape[0]:
            z = apply_staged_guidance(z, prompt_latents[i], schedule[i])
        if i < num_cached:
            cache.append(mirrored_prompt_latents(z, prompt_frames))
        eps = denoiser(z, t, cond)
        z = ddim_step(scheduler, eps, t, z, eta, generator)
        if callback is not None:
            callback({"i": i, "t": t, "z": z})
    return z, (torch.stack(cache) if cache else None)


def sample_reuse_and_diffuse(
    denoiser: Denoiser,
    scheduler,
    timesteps: torch.Tensor,
    shape: tuple[int, int, int, int, int],
    cond,
    *,
    num_clips: int,
    prompt_frames: int = 4,
    noise_recycle: float = 4.0,
    staged_guidance: float = 0.4,
    eta: float = 0.0,
    generator: torch.Generator,
    state: ReuseState | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> Iterator[tuple[int, torch.Tensor, ReuseState]]:
    """Reuse and Diffuse (Gu et al. 2023): yield ``(k, z^k_0, state)`` clip by clip.

    Clip 0 (when ``state`` has no noise) starts from ``N(0, I)``; clip ``k`` starts from
    FNR + PNS of clip ``k-1``'s initial noise and is denoised with DSG against clip ``k-1``'s cached
    prompt-frame latents. ``shape = (B, C, N, h, w)``. Clips are generated until ``clip_index``
    reaches ``num_clips``; pass a saved ``state`` (and the generator state) to resume, or one built
    by :func:`invert_clip` to continue an existing video. ``progress(steps, k)`` wraps the step loop.
    """
    schedule = staged_guidance_schedule(len(timesteps), prompt_frames, staged_guidance)
    num_cached = schedule.shape[0]
    state = state or ReuseState()
    while state.clip_index < num_clips:
        k = state.clip_index
        if state.noise is None:
            noise = randn(shape, generator, device, dtype)
        else:
            noise = past_dependent_noise_sampling(state.noise, prompt_frames, noise_recycle, generator)
        z0, cache = sample_clip(
            denoiser,
            noise,
            timesteps,
            scheduler,
            cond,
            schedule=schedule,
            prompt_latents=state.prompt_latents,
            num_cached=num_cached if prompt_frames > 0 else 0,
            prompt_frames=prompt_frames,
            eta=eta,
            generator=generator,
            progress=(lambda steps, k=k: progress(steps, k)) if progress else None,
        )
        state = ReuseState(clip_index=k + 1, noise=noise, prompt_latents=cache)
        yield k, z0, state


def ddim_inversion(
    denoiser: Denoiser,
    latents: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
    cond,
    *,
    prompt_frames: int = 4,
    staged_guidance: float = 0.4,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> ReuseState:
    """DDIM inversion of a clean clip ``z_0 (B, C, N, h, w)`` (Song et al. 2021, deterministic
    eta = 0 path run backwards), giving the state a next clip reuses: the inverted ``z_T`` as
    "previous noise" for FNR/PNS, and the mirrored last ``M`` frames of the trajectory at the first
    ``ceil(S·β)`` steps for DSG.

    Step ``t_prev -> t`` uses ``eps(z_{t_prev}, t)`` (the usual approximation); ``cond`` goes to the
    denoiser unchanged (use no CFG: inversion with guidance drifts).
    """
    if getattr(scheduler.config, "prediction_type", "epsilon") != "epsilon":
        raise VidforgeError(
            "--init: DDIM inversion is implemented for epsilon-prediction models only "
            f"(this model predicts {scheduler.config.prediction_type}; with --image use --model dynamicrafter-256)"
        )
    num_cached = staged_guidance_schedule(len(timesteps), prompt_frames, staged_guidance).shape[0]
    alphas = scheduler.alphas_cumprod.to(latents.device, torch.float64)
    final_alpha = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64)
    z = latents
    cache: dict[int, torch.Tensor] = {}
    order = list(reversed(range(len(timesteps))))  # from the last (least noisy) step up to T
    for i in progress(order) if progress else order:
        t = timesteps[i]
        alpha_prev = alphas[timesteps[i + 1]] if i + 1 < len(timesteps) else final_alpha.to(alphas.device)
        alpha_t = alphas[t]
        eps = denoiser(z, t, cond).to(torch.float64)
        x0 = (z.to(torch.float64) - (1 - alpha_prev).sqrt() * eps) / alpha_prev.sqrt()
        z = (alpha_t.sqrt() * x0 + (1 - alpha_t).sqrt() * eps).to(latents.dtype)
        if i < num_cached and prompt_frames > 0:
            cache[i] = mirrored_prompt_latents(z, prompt_frames)
    prompt_latents = torch.stack([cache[i] for i in range(num_cached)]) if cache else None
    return ReuseState(clip_index=0, noise=z, prompt_latents=prompt_latents)
