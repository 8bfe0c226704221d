"""Clip-by-clip Reuse-and-Diffuse sampling over any video denoiser (k-diffusion style).

The denoiser is a :class:`vidforge.sampling.denoisers.Denoiser` over ``(B, C, N, h, w)`` latents
(guidance bound in); the sampler knows nothing else about the model. Steps are the shared DDIM
(:func:`vidforge.sampling.ddim.sample_ddim`, stateless, so overwriting latents between steps is
safe; multistep solvers keep a history that DSG overwrites would invalidate). Denoising with Staged
Guidance is its ``before_step`` hook.

Memory: between clips only :class:`ReuseState` is kept: one clip's initial noise and, for the
first ``ceil(S·β)`` steps, the mirrored latents of its last ``M`` frames. Neither grows with the
number of clips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from vidforge.core.device import randn
from vidforge.extend.reuse import (
    apply_staged_guidance,
    mirrored_prompt_latents,
    past_dependent_noise_sampling,
    staged_guidance_schedule,
)
from vidforge.sampling.ddim import sample_ddim
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import DDIMSchedule, Step


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

    @property
    def index(self) -> int:
        return self.clip_index

    @classmethod
    def from_tensors(cls, index: int, tensors: dict[str, torch.Tensor]) -> ReuseState:
        return cls(index, tensors.get("noise"), tensors.get("prompt_latents"))

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


def staged_guidance_hook(
    dsg_mask: torch.Tensor | None,
    prompt_latents: torch.Tensor | None,
    prompt_frames: int,
    num_cached: int,
    cache: list[torch.Tensor],
) -> Callable[[torch.Tensor, Step], torch.Tensor]:
    """``before_step`` of DSG: at step ``i``, frames ``j < M`` with ``dsg_mask[i, j]`` become
    ``prompt_latents[i][:, :, j]`` (the previous clip's frame ``N-1-j`` at the same step); the
    latent then fed to the denoiser at the first ``num_cached`` steps is recorded (mirrored last
    ``M`` frames) in ``cache`` for the next clip."""

    def before_step(z: torch.Tensor, step: Step) -> torch.Tensor:
        i = step.index
        if prompt_latents is not None and dsg_mask is not None and i < dsg_mask.shape[0]:
            z = apply_staged_guidance(z, prompt_latents[i], dsg_mask[i])
        if i < num_cached:
            cache.append(mirrored_prompt_latents(z, prompt_frames))
        return z

    return before_step


def sample_clip(
    denoiser: Denoiser,
    noise: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    dsg_mask: torch.Tensor | None = None,
    prompt_latents: torch.Tensor | None = None,
    num_cached: int = 0,
    prompt_frames: int = 0,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise one clip from ``noise = z_T (B, C, N, h, w)`` with DSG (:func:`staged_guidance_hook`).
    Returns ``(z_0, cache (num_cached, B, C, M, h, w) or None)``."""
    cache: list[torch.Tensor] = []
    hook = staged_guidance_hook(dsg_mask, prompt_latents, prompt_frames, num_cached, cache)
    z = sample_ddim(
        denoiser, noise, schedule, eta=eta, generator=generator, before_step=hook, callback=callback,
        progress=progress,
    )  # fmt: skip
    return z, (torch.stack(cache) if cache else None)


def sample_reuse_and_diffuse(
    denoiser: Denoiser,
    schedule: DDIMSchedule,
    shape: tuple[int, int, int, int, int],
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
    dsg_mask = staged_guidance_schedule(len(schedule), prompt_frames, staged_guidance)
    state = state or ReuseState()
    while state.clip_index < num_clips:
        k = state.clip_index
        if state.noise is None:
            noise = randn(shape, generator, device, dtype)
        else:
            noise = past_dependent_noise_sampling(state.noise, prompt_frames, noise_recycle, generator)
        z0, cache = sample_clip(
            denoiser, noise, schedule, dsg_mask=dsg_mask, prompt_latents=state.prompt_latents,
            num_cached=dsg_mask.shape[0] if prompt_frames > 0 else 0, prompt_frames=prompt_frames, eta=eta,
            generator=generator, progress=(lambda steps, k=k: progress(steps, k)) if progress else None,
        )  # fmt: skip
        state = ReuseState(clip_index=k + 1, noise=noise, prompt_latents=cache)
        yield k, z0, state


def invert_clip(
    denoiser: Denoiser,
    latents: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    prompt_frames: int = 4,
    staged_guidance: float = 0.4,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> ReuseState:
    """DDIM inversion of a clean clip ``z_0 (B, C, N, h, w)``
    (:func:`vidforge.sampling.ddim.invert_ddim`, any prediction type), giving the state a next clip
    reuses: the inverted ``z_T`` as "previous noise" for FNR/PNS, and the mirrored last ``M`` frames
    of the trajectory at the first ``ceil(S·β)`` steps for DSG. Pass a denoiser without guidance."""
    from vidforge.sampling.ddim import invert_ddim

    num_cached = staged_guidance_schedule(len(schedule), prompt_frames, staged_guidance).shape[0]
    cache: dict[int, torch.Tensor] = {}

    def record(info: dict) -> None:
        if info["i"] < num_cached and prompt_frames > 0:
            cache[info["i"]] = mirrored_prompt_latents(info["x"], prompt_frames)

    z = invert_ddim(denoiser, latents, schedule, callback=record, progress=progress)
    prompt_latents = torch.stack([cache[i] for i in range(num_cached)]) if cache else None
    return ReuseState(clip_index=0, noise=z, prompt_latents=prompt_latents)
