"""DynamiCrafter (Xing et al. 2023): configs per release, the model wrapper, building and loading.

``DynamiCrafter`` holds the five parts of the released checkpoint under vidforge names:
``unet`` (video UNet), ``image_proj`` (Resampler), ``image_encoder`` (open_clip vision tower),
``text_encoder`` (open_clip text tower) and ``vae`` (diffusers ``AutoencoderKL``). The sampler
only needs :meth:`DynamiCrafter.encode_text`, :meth:`~DynamiCrafter.encode_image_tokens` and
:meth:`~DynamiCrafter.denoise`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from vidforge.animate.encoders import (
    ClipConfig,
    VaeConfig,
    build_text_tower,
    build_vae,
    build_vision_tower,
    preprocess_images,
    text_hidden_states,
    vision_tokens,
)
from vidforge.animate.resampler import Resampler, ResamplerConfig
from vidforge.animate.unet import UNetConfig, VideoUNet
from vidforge.errors import VidforgeError


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
    preset: str | None = None  # vidforge preset name (core.models.PRESETS)

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
    preset="tiny",
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
        preset="dynamicrafter-256",
        **{**_RELEASE, "unet": UNetConfig(learnable_image_scale=True)},
    ),
    "512": DynamiCrafterConfig(name="512", resolution=(320, 512), preset="dynamicrafter-512", **_RELEASE),
    "1024": DynamiCrafterConfig(
        name="1024",
        resolution=(576, 1024),
        default_fps=10,
        dynamic_rescale_base=0.3,
        preset="dynamicrafter-1024",
        **_RELEASE,
    ),
    "512-interp": DynamiCrafterConfig(
        name="512-interp", resolution=(320, 512), interp=True, preset="dynamicrafter-512-interp", **_RELEASE
    ),
}
PRESET_CONFIGS = {c.preset: c for c in CONFIGS.values()}  # "dynamicrafter-512" -> config


def get_config(config: str | DynamiCrafterConfig) -> DynamiCrafterConfig:
    """A config from a key (``"512"``), a preset name (``"dynamicrafter-512"``) or a config."""
    if isinstance(config, DynamiCrafterConfig):
        return config
    found = CONFIGS.get(config) or PRESET_CONFIGS.get(config)
    if found is None:
        raise VidforgeError(
            f"unknown DynamiCrafter config {config!r}; choose from {', '.join(CONFIGS)} or {', '.join(PRESET_CONFIGS)}"
        )
    return found


class DynamiCrafter(nn.Module):
    """The five networks of a DynamiCrafter release and the three calls the sampler makes."""

    def __init__(self, config: DynamiCrafterConfig):
        super().__init__()
        self.config = config
        self.unet = VideoUNet(config.unet)
        self.image_proj = Resampler(config.resampler)
        self.image_encoder = build_vision_tower(config.clip)
        self.text_encoder = build_text_tower(config.clip)
        self.vae = build_vae(config.vae)

    @property
    def device(self) -> torch.device:
        return self.unet.time_embed[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.time_embed[0].weight.dtype

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> ``(B, 77, D)``: open_clip tokens, penultimate text block, ``ln_final``."""
        import open_clip

        ids = open_clip.tokenize(list(prompts), context_length=self.config.text_len).to(self.device)
        return text_hidden_states(self.text_encoder, ids, skip_last=1)

    def encode_image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> image context ``(B, Q·L, D)`` (frame-major; 256 tokens for the
        releases): CLIP last-block tokens ``(B, 257, 1280)`` through the Resampler."""
        pixels = preprocess_images(images.to(self.device), self.config.clip.image_size)
        tokens = vision_tokens(self.image_encoder, pixels.to(self.dtype))
        return self.image_proj(tokens.to(self.dtype))

    def denoise(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, fps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` ``(B, 8, F, h, w)`` = cat(noisy latent, image latent); ``t`` ``(B,)`` long; ``context``
        ``(B, 77 + Q·L, D)``; ``fps`` ``(B,)`` long (frame stride for the 256 model; None: the
        release default) -> model output ``(B, 4, F, h, w)`` (ε or v, see ``config.prediction_type``).

        Frame f reads image tokens ``[Q·f, Q·f + Q)``; with ``F != video_length`` frames it reads token
        group ``round(f·(L-1)/(F-1))`` (the model was trained on 16 frames: quality may drop)."""
        if fps is None:
            fps = torch.full((x.shape[0],), self.config.default_fps, dtype=torch.long, device=x.device)
        return self.unet(x, t.to(x.device), context, fps.to(x.device))


def build_model(
    config: str | DynamiCrafterConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> DynamiCrafter:
    """Random-init model (``tiny``: seeded, reproducible). ``device="meta"`` builds shapes only."""
    from vidforge.core.models import seeded

    config = get_config(config)
    with seeded(0), torch.device(device):
        model = DynamiCrafter(config)
        if torch.device(device).type != "meta":
            _perturb_zero_init(model)
    return model.to(dtype=dtype).eval().requires_grad_(False)


@torch.no_grad()
def _perturb_zero_init(model: nn.Module, std: float = 0.02) -> None:
    """Give the zero-initialised tensors (output convs, ``fps_embedding``'s last layer, α, norm
    biases) small random values: with random weights an all-zero output layer would make every
    output 0, whatever the input."""
    for p in model.parameters():
        if not p.any():
            p.normal_(0.0, std)


def load_model(
    source, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, config: str | None = None
) -> DynamiCrafter:
    """A preset, hub id or local ``.ckpt``/``.safetensors`` -> loaded model (weights converted once and
    cached as safetensors, then loaded strictly). ``tiny`` -> ``build_model("tiny")``.

    ``config`` overrides the release guessed from the preset / checkpoint (see
    :func:`vidforge.animate.convert.guess_config`). The schedule buffers found in the checkpoint are
    kept on ``model.schedule`` (``betas``, ``alphas_cumprod``, ``scale_arr``...) for the sampler to check.
    """
    from vidforge.animate import convert

    if getattr(source, "is_tiny", False):
        model = build_model("tiny", device, dtype)
        model.schedule = {}
        return model
    weights, schedule, cfg = convert.load_converted(source, config)
    with torch.device("meta"):
        model = DynamiCrafter(cfg)
    convert.load_strict(model, weights, name=str(source.name))
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    model.schedule = schedule
    return model


def replace_config(config: DynamiCrafterConfig, **changes) -> DynamiCrafterConfig:
    """``dataclasses.replace`` shortcut (e.g. a test variant of ``tiny``)."""
    return dataclasses.replace(config, **changes)
