"""DDIM sampling for DynamiCrafter (SPEC section 2), written as plain functions (k-diffusion style).

Schedules are built separately from the sampler: :func:`make_schedule` turns a model config and a
number of steps into a :class:`DDIMSchedule` (timesteps, ᾱ at each step and at the next one, and
the dynamic x0 rescale ratio), and :func:`sample_ddim` just iterates over it.

The sampler sees one callable, ``denoiser(x, t) -> model_output`` (already guided), plus the
schedule's ``prediction_type`` ("epsilon" or "v_prediction"); :class:`CFGDenoiser` builds that
callable from a DynamiCrafter model with all guidance branches in ONE batched ``model.denoise``.

Facts followed (the authors' ``lvdm/models/samplers/ddim.py`` and ``ddpm3d.py``):

* betas ``scaled_linear`` 0.00085-0.012 (lvdm's "linear" = linspace of square roots, squared);
  512/1024 rescale them to zero terminal SNR (Lin et al. 2023, Algorithm 1), so ᾱ_999 = 0;
* DDIM timesteps: 256 "uniform" = diffusers ``leading`` with offset 1 (1, 21, ..., 981 at 50
  steps); 512/1024 "uniform_trailing" = diffusers ``trailing`` (19, 39, ..., 999). When 1000 is
  not a multiple of the step count, lvdm's "uniform" runs ``ceil(1000 / (1000 // S))`` steps
  (31 for S = 30); we run exactly S (the same grid without its top step);
* ᾱ_prev of a step is ᾱ at the next timestep of the schedule, and ᾱ_0 (not 1) after the last step;
* σ_t = η·sqrt((1-ᾱ_prev)/(1-ᾱ_t)·(1-ᾱ_t/ᾱ_prev)) (Song et al. 2021, eq. 16);
* dynamic rescale: training scales x0 by ``scale_arr[t]`` with
  ``scale_arr = cat(linspace(1, base, 400), full(1000, base))``; DDIM multiplies the predicted x0
  by ``scale_arr[t_prev] / scale_arr[t]`` (1 on the last step), with ε left as predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vidforge.core.guidance import cfg, rescale_guidance

# Training-time dynamic rescale: x0 is scaled by a ramp from 1 to ``base`` over the first 400 steps.
DYNAMIC_RESCALE_TURNING_STEP = 400


# ---------------------------------------------------------------------------------------- schedules


def make_betas(
    linear_start: float = 0.00085,
    linear_end: float = 0.012,
    num_train_timesteps: int = 1000,
    zero_snr: bool = False,
) -> torch.Tensor:
    """β_t, ``(T,)`` float32: diffusers' ``scaled_linear`` betas, optionally rescaled to zero
    terminal SNR (diffusers ``rescale_zero_terminal_snr``, the same algorithm lvdm uses)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=linear_start,
        beta_end=linear_end,
        beta_schedule="scaled_linear",
        rescale_betas_zero_snr=zero_snr,
    )
    return scheduler.betas.float()


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s≤t} (1 - β_s), ``(T,)``; computed in float64 so ᾱ_T is exactly 0 under zero SNR."""
    return torch.cumprod(1.0 - betas.double(), dim=0).float()


def ddim_timesteps(steps: int, spacing: str, num_train_timesteps: int = 1000) -> torch.Tensor:
    """Descending DDIM timesteps ``(steps,)`` long.

    ``leading``: ``k·(T//S) + 1`` (lvdm "uniform", diffusers leading with ``steps_offset=1``);
    ``trailing``: ``round(T - k·T/S) - 1`` (lvdm "uniform_trailing"), which starts at T-1.
    """
    from diffusers import DDIMScheduler

    if spacing not in ("leading", "trailing"):
        raise ValueError(f"timestep spacing must be 'leading' or 'trailing', got {spacing!r}")
    scheduler = DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        timestep_spacing=spacing,
        steps_offset=1 if spacing == "leading" else 0,
    )
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.long()


def dynamic_rescale_arr(base: float, num_train_timesteps: int = 1000) -> torch.Tensor:
    """``scale_arr = cat(linspace(1, base, 400), full(T, base))``, length T + 400, indexed by t."""
    ramp = torch.linspace(1.0, base, DYNAMIC_RESCALE_TURNING_STEP, dtype=torch.float64)
    flat = torch.full((num_train_timesteps,), base, dtype=torch.float64)
    return torch.cat([ramp, flat]).float()


@dataclass(frozen=True)
class DDIMSchedule:
    """Everything the DDIM loop needs, one entry per sampling step (index 0 = first step, largest t)."""

    timesteps: torch.Tensor  # (S,) long, descending
    alphas_cumprod: torch.Tensor  # (S,) ᾱ_t
    alphas_cumprod_prev: torch.Tensor  # (S,) ᾱ at the next (smaller) timestep; ᾱ_0 after the last
    x0_rescale: torch.Tensor  # (S,) dynamic rescale ratio scale_arr[t_prev] / scale_arr[t] (ones if off)
    prediction_type: str = "epsilon"  # or "v_prediction"

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    def sigmas(self, eta: float) -> torch.Tensor:
        """DDIM noise scale σ_t (Song et al. 2021, eq. 16), ``(S,)``."""
        a_t, a_prev = self.alphas_cumprod.double(), self.alphas_cumprod_prev.double()
        var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        return (eta * var.clamp(min=0).sqrt()).float()


def make_schedule(
    steps: int,
    *,
    prediction_type: str = "epsilon",
    zero_snr: bool = False,
    timestep_spacing: str = "leading",
    dynamic_rescale_base: float | None = None,
    linear_start: float = 0.00085,
    linear_end: float = 0.012,
    num_train_timesteps: int = 1000,
) -> DDIMSchedule:
    """Build the DDIM schedule for ``steps`` sampling steps from a model's diffusion settings."""
    alphas_cumprod = alphas_cumprod_from_betas(
        make_betas(linear_start, linear_end, num_train_timesteps, zero_snr)
    )
    timesteps = ddim_timesteps(steps, timestep_spacing, num_train_timesteps)
    a_t = alphas_cumprod[timesteps]
    # The step after t_i lands on t_{i+1}; the last step lands on t = 0 (ᾱ_0, as lvdm does).
    a_prev = torch.cat([alphas_cumprod[timesteps[1:]], alphas_cumprod[:1]])
    if dynamic_rescale_base is None:
        x0_rescale = torch.ones(len(timesteps))
    else:
        scale = dynamic_rescale_arr(dynamic_rescale_base, num_train_timesteps)[timesteps]
        scale_prev = torch.cat([scale[1:], scale[-1:]])  # the last step keeps its own scale
        x0_rescale = scale_prev / scale
    return DDIMSchedule(timesteps, a_t, a_prev, x0_rescale, prediction_type)


def schedule_for_config(config, steps: int) -> DDIMSchedule:
    """:func:`make_schedule` with a ``DynamiCrafterConfig``'s settings."""
    return make_schedule(
        steps,
        prediction_type=config.prediction_type,
        zero_snr=config.zero_snr,
        timestep_spacing=config.timestep_spacing,
        dynamic_rescale_base=config.dynamic_rescale_base,
        linear_start=config.linear_start,
        linear_end=config.linear_end,
        num_train_timesteps=config.num_train_timesteps,
    )


def schedule_mismatches(config, buffers: dict, atol: float = 1e-4) -> list[str]:
    """Names of the checkpoint's schedule buffers (``alphas_cumprod``, ``scale_arr``) that disagree
    with the schedule built from ``config`` — a sign the wrong release config was picked."""
    ours = {
        "alphas_cumprod": alphas_cumprod_from_betas(
            make_betas(config.linear_start, config.linear_end, config.num_train_timesteps, config.zero_snr)
        )
    }
    if config.dynamic_rescale_base is not None:
        ours["scale_arr"] = dynamic_rescale_arr(config.dynamic_rescale_base, config.num_train_timesteps)
    bad = []
    for name, theirs in buffers.items():
        if name not in ("alphas_cumprod", "scale_arr") or theirs is None or theirs.is_meta:
            continue
        mine = ours.get(name)
        theirs = theirs.detach().float().cpu()
        if mine is None or mine.shape != theirs.shape or not torch.allclose(mine, theirs, atol=atol):
            bad.append(name)
    return bad


# ----------------------------------------------------------------------------------------- guidance


def multi_cond_cfg(
    e_u: torch.Tensor, e_img: torch.Tensor, e_c: torch.Tensor, text_scale: float, image_scale: float
) -> torch.Tensor:
    """DynamiCrafter's two-condition guidance: ``e_u + s_img·(e_img - e_u) + s_txt·(e_c - e_img)``.

    ``e_u`` = (empty text, zero image), ``e_img`` = (empty text, real image), ``e_c`` = (text, image).
    With ``s_img = s_txt`` it is plain CFG between ``e_u`` and ``e_c``.
    """
    return e_u + image_scale * (e_img - e_u) + text_scale * (e_c - e_img)


# ------------------------------------------------------------------------------------------ sampler


def to_eps_and_x0(
    x: torch.Tensor, model_output: torch.Tensor, alpha_cumprod: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a model output into (ε, x0) at ᾱ_t. eps: ``x0 = (x - √(1-ᾱ)ε)/√ᾱ``;
    v (Salimans & Ho 2022): ``x0 = √ᾱ x - √(1-ᾱ) v``, ``ε = √ᾱ v + √(1-ᾱ) x``."""
    sqrt_a, sqrt_1ma = alpha_cumprod.sqrt(), (1 - alpha_cumprod).sqrt()
    if prediction_type == "epsilon":
        return model_output, (x - sqrt_1ma * model_output) / sqrt_a
    if prediction_type == "v_prediction":
        return sqrt_a * model_output + sqrt_1ma * x, sqrt_a * x - sqrt_1ma * model_output
    raise ValueError(f"unknown prediction type {prediction_type!r}")


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


@torch.no_grad()
def sample_ddim(
    denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    schedule: DDIMSchedule,
    *,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    callback: Callable[[dict], None] | None = None,
    progress: Callable | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021) with eta, v/eps prediction and DynamiCrafter's dynamic x0 rescale.

    ``x``: initial noise ``(B, C, F, h, w)`` (float32). ``denoiser(x, t)`` with ``t`` ``(B,)`` long
    returns the guided model output. ``generator`` draws the η-noise (needed when ``eta > 0``).
    ``callback`` observes ``{"x", "i", "t", "denoised"}`` after each step; ``progress`` wraps the
    step iterator (e.g. ``lambda it: bars.track(it, "denoise")``). Returns the final latents.
    """
    from vidforge.core.device import randn

    sigmas = schedule.sigmas(eta)
    steps = range(len(schedule))
    for i in progress(steps) if progress is not None else steps:
        t = schedule.timesteps[i]
        a_t = schedule.alphas_cumprod[i].to(x.device)
        a_prev = schedule.alphas_cumprod_prev[i].to(x.device)
        sigma = sigmas[i].to(x.device)
        model_output = denoiser(x, t.expand(x.shape[0]).to(x.device)).to(x.dtype)
        eps, x0 = to_eps_and_x0(x, model_output, a_t, schedule.prediction_type)
        # Dynamic rescale: the net predicts scale_arr[t]·x0; the next step expects scale_arr[t_prev]·x0.
        x0 = x0 * schedule.x0_rescale[i].to(x.device)
        noise = None
        if eta > 0:
            if generator is None:
                raise ValueError("sample_ddim: eta > 0 needs a generator for the noise")
            noise = randn(x.shape, generator, x.device, x.dtype)
        x = ddim_step(eps, x0, a_prev, sigma, noise)
        if callback is not None:
            callback({"x": x, "i": i, "t": int(t), "denoised": x0})
    return x


# ---------------------------------------------------------------------------------------- denoisers


class CFGDenoiser:
    """``denoiser(x, t)`` for :func:`sample_ddim`: every guidance branch in ONE ``model.denoise`` call.

    Branches, branch-major in the batch: ``[u, img, c]`` with multi-condition CFG
    (``image_scale`` set), ``[u, c]`` with plain CFG, ``[c]`` when ``text_scale == 1`` without
    an image scale. ``contexts`` maps branch name to ``(B, 77+L, D)``. The concat stream
    (``image_latents``, ``(B, 4, F, h, w)``) is the same in every branch: it is never dropped.
    """

    def __init__(
        self,
        model,
        contexts: dict[str, torch.Tensor],
        image_latents: torch.Tensor,
        fps: torch.Tensor,
        *,
        text_scale: float,
        image_scale: float | None = None,
        guidance_rescale: float = 0.0,
        autocast_dtype: torch.dtype | None = None,
    ):
        self.model = model
        self.branches = self.branch_names(text_scale, image_scale)
        missing = [b for b in self.branches if b not in contexts]
        if missing:
            raise ValueError(f"CFGDenoiser: missing contexts for branches {missing}")
        n = len(self.branches)
        self.context = torch.cat([contexts[b] for b in self.branches])
        self.image_latents = image_latents.repeat(n, 1, 1, 1, 1)
        self.fps = fps.repeat(n)
        self.text_scale = text_scale
        self.image_scale = image_scale
        self.guidance_rescale = guidance_rescale
        self.autocast_dtype = autocast_dtype

    @staticmethod
    def branch_names(text_scale: float, image_scale: float | None) -> tuple[str, ...]:
        if image_scale is not None:
            return ("u", "img", "c")
        return ("c",) if text_scale == 1 else ("u", "c")

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = len(self.branches)
        x_in = torch.cat([x.repeat(n, 1, 1, 1, 1), self.image_latents.to(x)], dim=1)  # (nB, 8, F, h, w)
        with torch.autocast(
            x.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
        ):
            out = self.model.denoise(x_in, t.repeat(n), self.context, self.fps)
        outs = dict(zip(self.branches, out.float().chunk(n), strict=True))
        if n == 1:
            return outs["c"]
        if self.image_scale is None:
            guided = cfg(outs["u"], outs["c"], self.text_scale)
        else:
            guided = multi_cond_cfg(outs["u"], outs["img"], outs["c"], self.text_scale, self.image_scale)
        return rescale_guidance(guided, outs["c"], self.guidance_rescale)
