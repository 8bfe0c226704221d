"""Noise schedules, kept apart from the samplers that iterate over them (k-diffusion style).

A model family's *training* schedule is a :class:`NoiseSchedule` (ᾱ_t for t < T, what the network
predicts, how sampling timesteps are spaced). A sampler gets a per-step table built from it for a
number of steps: :class:`DDIMSchedule` (ᾱ-based, DDIM) or :class:`SigmaSchedule` (σ-based, Euler).

Two families, each with its own facts (the values differ in the last bits, so each is built the
way its reference code builds it):

* Stable Diffusion / ModelScope (diffusers folders): ᾱ from diffusers' scheduler classes, which
  take the ``cumprod`` in float32; DDIM's σ_t in float32, as ``DDIMScheduler.step``.
* lvdm / DynamiCrafter: ``scaled_linear`` betas, optionally rescaled to zero terminal SNR
  (Lin et al. 2023, Algorithm 1), ``cumprod`` in float64 (ᾱ_T is then exactly 0); σ_t in float64,
  as lvdm's ``make_ddim_sampling_parameters``.

Both step to ᾱ at the next timestep of the DDIM grid and, after the last step, to
``final_alpha_cumprod`` (ᾱ_0 unless a diffusers config sets ``set_alpha_to_one``). That equals
diffusers' ``t - T // S`` rule whenever the grid is uniform (every leading grid, and trailing
grids with S dividing T).

A sampler may also start part-way (SDEdit, img2img): ``schedule.from_step(sdedit_start(S, s))``
from ``noised(x0, noise, first_step)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
# DynamiCrafter's training-time dynamic rescale: x0 scaled by a ramp from 1 to `base` over 400 steps.
DYNAMIC_RESCALE_TURNING_STEP = 400

# Stable Diffusion 1.x training schedule (InstructPix2Pix and ModelScope keep it): the config of
# the tiny presets, and of a real folder that ships no scheduler config.
SD_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)


@dataclass(frozen=True)
class NoiseSchedule:
    """What a sampler must know about a model: its training ᾱ_t and what it predicts."""

    alphas_cumprod: torch.Tensor  # (T,) float32
    prediction_type: str = "epsilon"  # "epsilon", "v_prediction" or "sample"
    timestep_spacing: str = "leading"  # how S sampling timesteps are picked from T
    steps_offset: int = 1
    final_alpha_cumprod: float | None = None  # ᾱ after the last step; None: ᾱ_0
    dynamic_rescale_base: float | None = None  # DynamiCrafter 512/1024: 0.7 / 0.3
    variance_dtype: torch.dtype = torch.float32  # precision of DDIM's σ_t
    diffusers_config: dict = field(default_factory=dict)  # for σ-based samplers (Euler)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])


def diffusers_noise_schedule(config: dict | None = None) -> NoiseSchedule:
    """A diffusers scheduler config (a folder's ``scheduler/scheduler_config.json``; None: the SD
    training schedule) as a :class:`NoiseSchedule`, with ᾱ exactly as diffusers computes it."""
    from diffusers import DDIMScheduler

    config = {k: v for k, v in (config or SD_SCHEDULE).items() if not k.startswith("_")}
    scheduler = DDIMScheduler.from_config(config)
    return NoiseSchedule(
        alphas_cumprod=scheduler.alphas_cumprod.float(),
        prediction_type=scheduler.config.prediction_type,
        timestep_spacing=scheduler.config.timestep_spacing,
        steps_offset=int(scheduler.config.steps_offset),
        final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
        diffusers_config=config,  # as given: other scheduler classes fill in their own defaults
    )


def scaled_linear_betas(
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    num_train_timesteps: int = 1000,
    zero_snr: bool = False,
) -> torch.Tensor:
    """β_t, ``(T,)`` float32: ``linspace(√start, √end)²`` (lvdm's "linear", diffusers' ``scaled_linear``),
    optionally rescaled to zero terminal SNR (diffusers' ``rescale_zero_terminal_snr``)."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule="scaled_linear",
        rescale_betas_zero_snr=zero_snr,
    )
    return scheduler.betas.float()


def alphas_cumprod_float64(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s≤t} (1 - β_s), ``(T,)``, accumulated in float64 (as lvdm does, with numpy)."""
    return torch.cumprod(1.0 - betas.double(), dim=0).float()


def lvdm_noise_schedule(
    *,
    prediction_type: str = "epsilon",
    zero_snr: bool = False,
    timestep_spacing: str = "leading",
    dynamic_rescale_base: float | None = None,
    linear_start: float = 0.00085,
    linear_end: float = 0.012,
    num_train_timesteps: int = 1000,
) -> NoiseSchedule:
    """The lvdm / DynamiCrafter training schedule (see the module docstring)."""
    betas = scaled_linear_betas(linear_start, linear_end, num_train_timesteps, zero_snr)
    return NoiseSchedule(
        alphas_cumprod=alphas_cumprod_float64(betas),
        prediction_type=prediction_type,
        timestep_spacing=timestep_spacing,
        steps_offset=1 if timestep_spacing == "leading" else 0,
        dynamic_rescale_base=dynamic_rescale_base,
        variance_dtype=torch.float64,
    )


def ddim_timesteps(
    steps: int, spacing: str, num_train_timesteps: int = 1000, steps_offset: int = 1
) -> torch.Tensor:
    """Descending DDIM timesteps ``(steps,)`` long, from diffusers' ``DDIMScheduler``.

    ``leading``: ``k·(T//S) + offset`` (lvdm "uniform" with offset 1: 1, 21, ..., 981 at 50 steps);
    ``trailing``: ``round(T - k·T/S) - 1`` (lvdm "uniform_trailing": 999, 979, ..., 19). When T is
    not a multiple of S, lvdm's "uniform" runs ``ceil(T / (T // S))`` steps; we run exactly S.
    """
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(
        num_train_timesteps=num_train_timesteps, timestep_spacing=spacing, steps_offset=steps_offset
    )
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.long()


def dynamic_rescale_arr(base: float, num_train_timesteps: int = 1000) -> torch.Tensor:
    """``scale_arr = cat(linspace(1, base, 400), full(T, base))``, length T + 400, indexed by t."""
    ramp = torch.linspace(1.0, base, DYNAMIC_RESCALE_TURNING_STEP, dtype=torch.float64)
    flat = torch.full((num_train_timesteps,), base, dtype=torch.float64)
    return torch.cat([ramp, flat]).float()


# ----------------------------------------------------------------------------------- per-step tables


@dataclass(frozen=True)
class Step:
    """One sampler step as a denoiser sees it: the network's timestep ``t`` and the coefficients of
    its input ``x = a·x0 + b·ε`` (VP: a = √ᾱ, b = √(1-ᾱ); Euler: a = 1, b = σ). ``input_scale``:
    the network is fed ``x / input_scale`` (Euler: √(σ²+1)); None feeds ``x``."""

    index: int
    t: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    input_scale: torch.Tensor | None = None


@dataclass(frozen=True)
class DDIMSchedule:
    """Everything the DDIM loop needs, one entry per sampling step (index 0 = first step, largest t)."""

    timesteps: torch.Tensor  # (S,) long, descending
    alphas_cumprod: torch.Tensor  # (S,) ᾱ_t
    alphas_cumprod_prev: torch.Tensor  # (S,) ᾱ at the next (smaller) timestep; the final ᾱ after the last
    variances: torch.Tensor  # (S,) (1-ᾱ_prev)/(1-ᾱ_t)·(1-ᾱ_t/ᾱ_prev), in the family's precision
    x0_rescale: torch.Tensor  # (S,) dynamic rescale ratio scale_arr[t_prev] / scale_arr[t] (ones if off)
    prediction_type: str = "epsilon"
    first: int = 0  # index of entry 0 in the full schedule (see from_step)

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    def from_step(self, k: int) -> DDIMSchedule:
        """The table from step ``k`` onward, to start part-way from a noised sample (SDEdit, see
        :func:`sdedit_start` and :func:`noised`). Its steps keep their index in the full schedule,
        so hooks keyed on ``Step.index`` mean the same step."""
        check_start(k, len(self))
        return replace(
            self,
            timesteps=self.timesteps[k:],
            alphas_cumprod=self.alphas_cumprod[k:],
            alphas_cumprod_prev=self.alphas_cumprod_prev[k:],
            variances=self.variances[k:],
            x0_rescale=self.x0_rescale[k:],
            first=self.first + k,
        )

    def sigmas(self, eta: float) -> torch.Tensor:
        """DDIM noise scale σ_t = η·√variance (Song et al. 2021, eq. 16), ``(S,)`` float32."""
        return (eta * self.variances.clamp(min=0).sqrt()).float()

    def step(self, i: int, device) -> Step:
        """Step ``i`` for a sample that sits at ᾱ_t."""
        alpha = self.alphas_cumprod[i].to(device)
        return Step(self.first + i, self.timesteps[i].to(device), alpha.sqrt(), (1 - alpha).sqrt())


def ddim_schedule(noise: NoiseSchedule, steps: int) -> DDIMSchedule:
    """The DDIM table of ``noise`` for ``steps`` sampling steps (see the module docstring)."""
    timesteps = ddim_timesteps(steps, noise.timestep_spacing, noise.num_train_timesteps, noise.steps_offset)
    alphas = noise.alphas_cumprod
    final = alphas[:1] if noise.final_alpha_cumprod is None else torch.tensor([noise.final_alpha_cumprod])
    a_t = alphas[timesteps]
    a_prev = torch.cat([alphas[timesteps[1:]], final.to(alphas.dtype)])
    a, a_p = a_t.to(noise.variance_dtype), a_prev.to(noise.variance_dtype)
    variances = ((1 - a_p) / (1 - a)) * (1 - a / a_p)
    if noise.dynamic_rescale_base is None:
        x0_rescale = torch.ones(len(timesteps))
    else:
        scale = dynamic_rescale_arr(noise.dynamic_rescale_base, noise.num_train_timesteps)[timesteps]
        x0_rescale = torch.cat([scale[1:], scale[-1:]]) / scale  # the last step keeps its own scale
    return DDIMSchedule(timesteps, a_t, a_prev, variances, x0_rescale, noise.prediction_type)


@dataclass(frozen=True)
class SigmaSchedule:
    """σ-space table for Euler samplers (k-diffusion): ``x = x0 + σ·ε``, the network fed
    ``x / √(σ²+1)`` at timestep ``timesteps[i]``. ``sigmas`` has one more entry (the final σ)."""

    timesteps: torch.Tensor  # (S,) float
    sigmas: torch.Tensor  # (S + 1,) float32, descending, last 0
    init_noise_sigma: float
    prediction_type: str = "epsilon"
    first: int = 0  # index of entry 0 in the full schedule (see from_step)

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])

    def from_step(self, k: int) -> SigmaSchedule:
        """The table from step ``k`` onward (see :meth:`DDIMSchedule.from_step`)."""
        check_start(k, len(self))
        return replace(self, timesteps=self.timesteps[k:], sigmas=self.sigmas[k:], first=self.first + k)

    def step(self, i: int, device) -> Step:
        sigma = self.sigmas[i].to(device)
        one = torch.ones((), device=device)
        return Step(self.first + i, self.timesteps[i].to(device), one, sigma, (sigma**2 + 1) ** 0.5)


def sigma_schedule(noise: NoiseSchedule, steps: int, ancestral: bool = False) -> SigmaSchedule:
    """The Euler (``ancestral``: Euler ancestral) σ table of a diffusers-family schedule, with
    timesteps and σ exactly as diffusers' Euler schedulers interpolate them."""
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    if not noise.diffusers_config:
        raise ValueError("Euler samplers need a diffusers scheduler config (Stable Diffusion family)")
    if noise.prediction_type != "epsilon":
        raise ValueError(f"Euler samplers here take epsilon-prediction models, not {noise.prediction_type}")
    cls = EulerAncestralDiscreteScheduler if ancestral else EulerDiscreteScheduler
    scheduler = cls.from_config(noise.diffusers_config)
    scheduler.set_timesteps(steps)
    return SigmaSchedule(
        scheduler.timesteps,
        scheduler.sigmas.float(),
        float(scheduler.init_noise_sigma),
        noise.prediction_type,
    )


# ------------------------------------------------------------------------------ starting part-way


def check_start(k: int, steps: int) -> None:
    if not 0 <= k <= steps:
        raise ValueError(f"start step {k} is outside a schedule of {steps} steps")


def sdedit_start(steps: int, strength: float) -> int:
    """The step an SDEdit run (Meng et al. 2022) starts from at ``strength`` in [0, 1]: the last
    ``int(steps·strength)`` steps run (diffusers' img2img rule), so 1 runs them all and 0 none."""
    if not 0 <= strength <= 1:
        raise ValueError(f"strength must be in [0, 1] (got {strength})")
    return steps - min(int(steps * strength), steps)


def noised(x0: torch.Tensor, noise: torch.Tensor, step: Step) -> torch.Tensor:
    """``x0`` at ``step``'s noise level, ``a·x0 + b·noise`` (ᾱ tables: √ᾱ·x0 + √(1-ᾱ)·ε; σ tables:
    x0 + σ·ε): the sample a part-way schedule (``from_step``) starts from."""
    return step.a.to(x0.dtype) * x0 + step.b.to(x0.dtype) * noise
