"""DynamiCrafter's video UNet (``vidforge animate``) as an ``extend`` denoiser, so ``--image``
extends an animation clip by clip (SPEC sections 2 and 3).

Three adapters present the animate model the way the Reuse-and-Diffuse sampler expects:

* :class:`AnimateDenoiser`: ``out(z (B, 4, N, h, w), t, context) -> (B, 4, N, h, w)``; it adds the
  visual-detail stream (the image latent on every frame, concatenated on channels) and the
  fps / frame-stride conditioning. ``context = cat(text77, image_tokens)`` is the sampler's ``cond``.
* :class:`AnimateScheduler`: animate's own DDIM schedule (``schedule_for_config``: zero-SNR betas,
  trailing/leading spacing, v or ε prediction, dynamic x0 rescale) behind the few diffusers
  ``DDIMScheduler`` calls the extend sampler makes, so both commands sample the same schedule.
* :func:`encode_image_conditions`: the positive and negative contexts and the image latent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np
import torch

from vidforge.animate.sampler import (
    alphas_cumprod_from_betas,
    ddim_step,
    make_betas,
    schedule_for_config,
    to_eps_and_x0,
)
from vidforge.errors import OptionError

# Text-to-video presets of extend: they have no image stream.
TEXT_TO_VIDEO_PRESETS = ("modelscope", "zeroscope")


@dataclass(frozen=True)
class AnimateDenoiser:
    """DynamiCrafter's ``VideoUNet`` as the extend sampler's denoiser over ``N`` frames.

    ``image_latents`` ``(1, 4, 1, h, w)``: ``0.18215·VAE.encode(image)``, broadcast to every frame
    (visual detail guidance); ``fps``: the fps (512/1024) or frame-stride (256) conditioning.
    Both are set per run by :meth:`with_image`; the model output is ε or v (see the scheduler).
    """

    model: torch.nn.Module  # vidforge.animate.model.DynamiCrafter
    image_latents: torch.Tensor | None = None
    fps: int | None = None

    @property
    def unet(self) -> torch.nn.Module:
        return self.model.unet

    @property
    def downsample(self) -> int:
        """Spatial downsampling of the UNet (latent sizes must be multiples of it)."""
        return 2 ** (len(self.model.config.unet.channel_mult) - 1)

    def with_image(self, image_latents: torch.Tensor, fps: int) -> AnimateDenoiser:
        return replace(self, image_latents=image_latents, fps=fps)

    def __call__(self, z: torch.Tensor, t, context: torch.Tensor) -> torch.Tensor:
        if self.image_latents is None:
            raise ValueError("AnimateDenoiser: call with_image(...) before denoising")
        b, _, n = z.shape[:3]
        image = self.image_latents.to(z).expand(b, -1, n, -1, -1)
        x = torch.cat([z, image], dim=1)  # (B, 8, N, h, w)
        t = torch.as_tensor(t, device=z.device).long().reshape(-1).expand(b)
        fps = torch.full((b,), self.fps, dtype=torch.long, device=z.device)
        return self.model.denoise(x, t, context.to(z.device), fps)


class AnimateScheduler:
    """animate's DDIM schedule with the interface of diffusers' ``DDIMScheduler`` that the extend
    sampler and DDIM inversion use: ``set_timesteps``, ``timesteps``, ``step(...).prev_sample``,
    ``alphas_cumprod``, ``final_alpha_cumprod`` and ``config.prediction_type``.

    ``step`` converts the model output (ε or v) to (ε, x0), applies DynamiCrafter's dynamic x0
    rescale and takes animate's DDIM update, so an extend clip equals an animate sample step for step.
    """

    def __init__(self, model_config):
        self.model_config = model_config
        self.config = SimpleNamespace(
            prediction_type=model_config.prediction_type,
            num_train_timesteps=model_config.num_train_timesteps,
        )
        betas = make_betas(
            model_config.linear_start,
            model_config.linear_end,
            model_config.num_train_timesteps,
            model_config.zero_snr,
        )
        self.alphas_cumprod = alphas_cumprod_from_betas(betas)
        self.final_alpha_cumprod = self.alphas_cumprod[0]  # the last step lands on ᾱ_0, as lvdm
        self.schedule = None
        self.timesteps = None
        self._index: dict[int, int] = {}

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        self.schedule = schedule_for_config(self.model_config, num_inference_steps)
        self.timesteps = self.schedule.timesteps.to(device)
        self._index = {int(t): i for i, t in enumerate(self.schedule.timesteps)}

    def step(self, model_output, timestep, sample, eta: float = 0.0, variance_noise=None):
        i = self._index[int(timestep)]
        s = self.schedule
        a_t, a_prev = s.alphas_cumprod[i].to(sample), s.alphas_cumprod_prev[i].to(sample)
        eps, x0 = to_eps_and_x0(sample, model_output.to(sample), a_t, s.prediction_type)
        x0 = x0 * s.x0_rescale[i].to(sample)  # dynamic rescale (1 when the model has none)
        sigma = s.sigmas(eta)[i].to(sample)
        noise = variance_noise if eta > 0 else None
        return SimpleNamespace(prev_sample=ddim_step(eps, x0, a_prev, sigma, noise))


def check_image_model(name: str | None, config=None) -> None:
    """``--image`` needs a single-image DynamiCrafter model: not a text-to-video or interp one.
    ``config``: the loaded model's (presets are checked by name before any weights load)."""
    from vidforge.animate.model import PRESET_CONFIGS

    if name in TEXT_TO_VIDEO_PRESETS:
        raise OptionError(
            f"--image is not supported by --model {name} (a text-to-video UNet); "
            "use --model dynamicrafter-256, dynamicrafter-512, dynamicrafter-1024 or tiny"
        )
    config = config or PRESET_CONFIGS.get(name)
    if config is not None and config.interp:
        raise OptionError(
            f"--image: --model {name} is an interpolation model (first + last frame); "
            "use --model dynamicrafter-256, dynamicrafter-512 or dynamicrafter-1024"
        )


def fps_conditioning(config, fps: float | None) -> int:
    """fps-conditioned models (512/1024) take ``--fps`` as conditioning; the frame-stride model
    (256) keeps its default stride. Defaults: ``config.default_fps``."""
    if fps is not None and config.fps_conditioning == "fps":
        return max(1, round(fps))
    return int(config.default_fps)


@torch.no_grad()
def encode_image_conditions(
    model, image: np.ndarray, prompt: str, negative_prompt: str, height: int, width: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(positive, negative, image_latents)`` for one run.

    ``positive = cat(text(prompt), tokens(image))``; ``negative = cat(text(negative_prompt),
    tokens(zero image))`` (mid-gray, animate's unconditional image); both ``(1, 77 + L, D)``.
    ``image_latents = 0.18215·VAE.encode(image).sample()`` ``(1, 4, 1, h, w)`` drawn with its own
    generator, so a resumed run gets the same latent. The concat stream is never dropped.
    """
    from vidforge.animate.pipeline import prepare_image_latents, preprocess_image
    from vidforge.core.device import make_generator

    device = model.device
    pixels = preprocess_image(image, height, width).to(device)  # (1, 3, H, W) in [-1, 1]
    text = model.encode_text([prompt, negative_prompt])  # (2, 77, D)
    tokens = model.encode_image_tokens(torch.cat([pixels, torch.zeros_like(pixels)]))  # (2, L, D)
    context = torch.cat([text, tokens.to(text.dtype)], dim=1)
    image_latents = prepare_image_latents(
        model.vae, pixels, 1, interp=False, generator=make_generator(seed, "cpu")
    )
    return context[:1], context[1:], image_latents
