"""DynamiCrafter (Xing et al. 2023) release configs: the architecture of each release and the
sampling facts its pipeline reads (prediction type, schedule, fps conditioning, guidance rescale)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from vidforge.errors import VidforgeError
from vidforge.models.dynamicrafter.encoders import ClipConfig, VaeConfig
from vidforge.models.dynamicrafter.resampler import ResamplerConfig
from vidforge.models.dynamicrafter.unet import UNetConfig
from vidforge.models.registry import PRESETS
from vidforge.sampling.schedules import NoiseSchedule, dynamic_rescale_arr, lvdm_noise_schedule


@dataclass(frozen=True)
class DynamiCrafterConfig:
    """One DynamiCrafter release: architecture plus the sampling facts the pipeline reads."""

    name: str
    resolution: tuple[int, int]  # (H, W) native
    video_length: int = 16
    prediction_type: str = "v_prediction"  # "epsilon" (256) or "v_prediction" (512/1024)
    zero_snr: bool = True
    timestep_spacing: str = "trailing"  # "leading" (256) / "trailing" (512/1024)
    fps_conditioning: str = "fps"  # "frame_stride" (256) or "fps"
    default_fps: int = 24  # 256: frame stride 3; 512: 24; 1024: 10
    guidance_rescale: float = 0.7
    dynamic_rescale_base: float | None = 0.7  # scale_arr = cat(linspace(1, base, 400), full(1000, base))
    interp: bool = False  # 512-interp: first + last frame conditioning
    linear_start: float = 0.00085
    linear_end: float = 0.012
    num_train_timesteps: int = 1000
    # architecture
    unet: UNetConfig = field(default_factory=UNetConfig)
    resampler: ResamplerConfig = field(default_factory=ResamplerConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    vae: VaeConfig = field(default_factory=VaeConfig)
    text_len: int = 77

    @property
    def scale_factor(self) -> float:
        """Latent scale (0.18215): ``z = scale_factor · VAE.encode(x)``."""
        return self.vae.scaling_factor

    @property
    def context_dim(self) -> int:
        return self.unet.context_dim

    @property
    def num_image_tokens(self) -> int:
        """Image tokens in the context: ``tokens_per_frame · video_length`` (256 for the releases)."""
        return self.resampler.num_tokens

    @property
    def tokens_per_frame(self) -> int:
        return self.resampler.num_queries

    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels


_RELEASE = dict(unet=UNetConfig(), resampler=ResamplerConfig(), clip=ClipConfig(), vae=VaeConfig())

_TINY_CONTEXT = 64
TINY = DynamiCrafterConfig(
    name="tiny",
    resolution=(64, 64),
    # 512-style sampling; the tanh-gated λ (a 256 feature) is on so both code paths are exercised
    unet=UNetConfig(
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(1, 2),
        num_head_channels=16,
        context_dim=_TINY_CONTEXT,
        learnable_image_scale=True,
        init_attn_heads=2,
        num_groups=8,
    ),
    resampler=ResamplerConfig(
        dim=64, depth=1, dim_head=16, heads=2, num_queries=4, embedding_dim=48, output_dim=_TINY_CONTEXT
    ),
    clip=ClipConfig(
        embed_dim=32,
        vision={"image_size": 32, "layers": 2, "width": 48, "head_width": 24, "patch_size": 8},
        text={"context_length": 77, "vocab_size": 49408, "width": _TINY_CONTEXT, "heads": 2, "layers": 2},
    ),
    vae=VaeConfig(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=4, sample_size=64),
)

CONFIGS: dict[str, DynamiCrafterConfig] = {
    "tiny": TINY,
    "256": DynamiCrafterConfig(
        name="256",
        resolution=(256, 256),
        prediction_type="epsilon",
        zero_snr=False,
        timestep_spacing="leading",
        fps_conditioning="frame_stride",
        default_fps=3,
        guidance_rescale=0.0,
        dynamic_rescale_base=None,
        **{**_RELEASE, "unet": UNetConfig(learnable_image_scale=True)},
    ),
    "512": DynamiCrafterConfig(name="512", resolution=(320, 512), **_RELEASE),
    "1024": DynamiCrafterConfig(
        name="1024",
        resolution=(576, 1024),
        default_fps=10,
        dynamic_rescale_base=0.3,
        **_RELEASE,
    ),
    "512-interp": DynamiCrafterConfig(name="512-interp", resolution=(320, 512), interp=True, **_RELEASE),
}


def get_config(config: str | DynamiCrafterConfig) -> DynamiCrafterConfig:
    """A config from a key (``"512"``), a preset name (``"dynamicrafter-512"``) or a config."""
    if isinstance(config, DynamiCrafterConfig):
        return config
    preset = PRESETS.get(config)
    found = CONFIGS.get(preset.release if preset is not None and preset.release else config)
    if found is None:
        releases = [name for name, p in PRESETS.items() if p.release]
        raise VidforgeError(
            f"unknown DynamiCrafter config {config!r}; choose from {', '.join(CONFIGS)} or {', '.join(releases)}"
        )
    return found


def replace_config(config: DynamiCrafterConfig, **changes) -> DynamiCrafterConfig:
    """``dataclasses.replace`` shortcut (e.g. a test variant of ``tiny``)."""
    return dataclasses.replace(config, **changes)


def noise_schedule(config: DynamiCrafterConfig) -> NoiseSchedule:
    """The release's training schedule as the samplers take it (lvdm facts, see
    :mod:`vidforge.sampling.schedules`)."""
    return lvdm_noise_schedule(
        prediction_type=config.prediction_type,
        zero_snr=config.zero_snr,
        timestep_spacing=config.timestep_spacing,
        dynamic_rescale_base=config.dynamic_rescale_base,
        linear_start=config.linear_start,
        linear_end=config.linear_end,
        num_train_timesteps=config.num_train_timesteps,
    )


def schedule_mismatches(config: DynamiCrafterConfig, buffers: dict, atol: float = 1e-4) -> list[str]:
    """Names of a checkpoint's schedule buffers (``alphas_cumprod``, ``scale_arr``) that disagree
    with the schedule ``config`` describes: a sign the wrong release config was picked."""
    import torch

    ours = {"alphas_cumprod": noise_schedule(config).alphas_cumprod}
    if config.dynamic_rescale_base is not None:
        ours["scale_arr"] = dynamic_rescale_arr(config.dynamic_rescale_base, config.num_train_timesteps)
    bad = []
    for name, theirs in buffers.items():
        if name not in ("alphas_cumprod", "scale_arr") or theirs is None or theirs.is_meta:
            continue
        theirs = theirs.detach().float().cpu()
        mine = ours.get(name)  # a scale_arr where the release has no dynamic rescale is a mismatch
        if mine is None or mine.shape != theirs.shape or not torch.allclose(mine, theirs, atol=atol):
            bad.append(name)
    return bad
