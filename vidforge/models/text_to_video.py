"""Text-to-video models for ``extend``: the ``tiny`` preset and diffusers ``UNet3DConditionModel``
checkpoints (ModelScope, zeroscope), each wrapped as a denoiser ``eps(z_t, t, cond)``.

Real models load with ``from_pretrained`` on the diffusers folder layout (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) found by ``core.models.fetch_weights``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidforge.core.models import ModelSource, load_diffusers_folder, seeded
from vidforge.core.tiny import SD_SCHEDULE
from vidforge.core.vae import vae_to_fp32
from vidforge.extend.dynamicrafter import AnimateDenoiser, AnimateScheduler, check_image_model

# Native clip length N and frame size (height, width) of each preset.
NATIVE = {
    "tiny": (8, 64, 64),
    "modelscope": (16, 256, 256),
    "zeroscope": (24, 320, 576),
}
DEFAULT_NATIVE_FRAMES = 16
# Configs + full-precision weights in either format (some T2V repos only ship .bin); the fp16
# variants (``*.fp16.*``) are not downloaded.
WEIGHT_PATTERNS = [
    "*.json",
    "*.txt",
    "*/diffusion_pytorch_model.safetensors",
    "*/model.safetensors",
    "*/diffusion_pytorch_model.bin",
    "*/pytorch_model.bin",
]


class UNet3DDenoiser:
    """diffusers ``UNet3DConditionModel`` as ``eps(z (B, C, N, h, w), t, text (B, L, D)) -> eps``."""

    def __init__(self, unet):
        self.unet = unet

    @property
    def downsample(self) -> int:
        """Spatial downsampling of the UNet (latent sizes must be multiples of it)."""
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def __call__(self, z: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(z, t, encoder_hidden_states=cond).sample


@dataclass
class ExtendModel:
    """Everything ``extend`` needs from a video model: a text-to-video UNet, or DynamiCrafter's
    image-conditioned UNet (``supports_image``: its denoiser is an ``AnimateDenoiser``)."""

    name: str
    denoiser: UNet3DDenoiser | AnimateDenoiser
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    clip_frames: int  # native N
    height: int
    width: int
    is_tiny: bool = False
    supports_image: bool = False  # animate-UNet adapters take --image
    default_fps: float = 8.0  # output fps without --fps / --init
    guidance_rescale: float = 0.0  # Lin et al. 2023 (DynamiCrafter 512/1024: 0.7)
    vae_dtype: torch.dtype | None = None  # decode precision (None: the VAE's own)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Frame sizes must be multiples of this (VAE factor × UNet downsampling)."""
        return self.vae_scale * self.denoiser.downsample

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.denoiser.unet.parameters()).dtype


def ddim_scheduler_config() -> dict:
    """The ModelScope / zeroscope DDIM schedule (SD betas), also used by ``tiny``."""
    return dict(SD_SCHEDULE, prediction_type="epsilon")


def build_tiny(seed: int = 0) -> tuple:
    """``UNet3DConditionModel`` + ``AutoencoderKL`` + ``CLIPTextModel`` with small configs and seeded
    random weights: the real classes, noise output. Returns ``(unet, vae, text_encoder)``."""
    from diffusers import UNet3DConditionModel

    from vidforge.core.tiny import tiny_text_encoder, tiny_vae

    with seeded(seed):
        unet = UNet3DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            block_out_channels=(16, 32),
            layers_per_block=1,
            norm_num_groups=8,
            cross_attention_dim=32,
            attention_head_dim=8,
        )
    return unet.eval(), tiny_vae(seed + 1), tiny_text_encoder(seed + 2)


def load_model(source: ModelSource, device: torch.device, dtype: torch.dtype) -> ExtendModel:
    """Build ``tiny`` or load a diffusers text-to-video folder / hub id onto ``device``."""
    from diffusers import DDIMScheduler

    if source.is_tiny:
        from vidforge.core.text import OpenClipTokenizer

        unet, vae, text_encoder = build_tiny()
        tokenizer = OpenClipTokenizer()
        scheduler = DDIMScheduler(**ddim_scheduler_config())
        frames, height, width = NATIVE["tiny"]
    else:
        unet, vae, text_encoder, tokenizer, scheduler = _load_diffusers(source, dtype)
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        sample = unet.config.sample_size or 32
        sample = sample if isinstance(sample, int) else sample[0]
        frames, height, width = NATIVE.get(
            source.name, (DEFAULT_NATIVE_FRAMES, sample * scale, sample * scale)
        )
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).to(device)
        if next(module.parameters()).dtype != dtype:
            module.to(dtype=dtype)
    return ExtendModel(
        name=source.name,
        denoiser=UNet3DDenoiser(unet),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        clip_frames=frames,
        height=height,
        width=width,
        is_tiny=source.is_tiny,
    )


def load_image_model(source: ModelSource, device: torch.device, dtype: torch.dtype) -> ExtendModel:
    """DynamiCrafter (``vidforge animate``'s model) for ``--image``: ``tiny`` or a release checkpoint,
    refused early when it is a text-to-video or interpolation model."""
    from vidforge.animate import model as animate_model
    from vidforge.animate.pipeline import check_schedule

    check_image_model(source.name)
    model = animate_model.load_model(source, device, dtype)
    check_image_model(source.name, model.config)
    check_schedule(model, source.name)
    return image_model(model, source.name, is_tiny=source.is_tiny)


def image_model(model, name: str, is_tiny: bool = False) -> ExtendModel:
    """Wrap a loaded ``DynamiCrafter`` for ``extend``: clips of its native ``video_length`` frames at
    its native resolution, animate's schedule (:class:`AnimateScheduler`), its guidance rescale, and
    the VAE in fp32 (fp16 VAE decodes give NaNs)."""
    from vidforge.animate.pipeline import output_fps

    config = model.config
    if model.vae.dtype != torch.float32:
        vae_to_fp32(model.vae)
    height, width = config.resolution
    return ExtendModel(
        name=name,
        denoiser=AnimateDenoiser(model),
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=None,  # DynamiCrafter tokenizes with open_clip inside encode_text
        scheduler=AnimateScheduler(config),
        clip_frames=config.video_length,
        height=height,
        width=width,
        is_tiny=is_tiny,
        supports_image=True,
        default_fps=float(output_fps(config, config.default_fps)),
        guidance_rescale=config.guidance_rescale,
        vae_dtype=torch.float32,
    )


def _load_diffusers(source: ModelSource, dtype: torch.dtype):
    """``from_pretrained`` on a diffusers text-to-video folder (ModelScope / zeroscope layout)."""
    from diffusers import DDIMScheduler, UNet3DConditionModel

    folder, unet, vae, text_encoder, tokenizer = load_diffusers_folder(
        source, UNet3DConditionModel, "text-to-video", ("unet", "vae", "text_encoder", "tokenizer"), dtype,
        WEIGHT_PATTERNS,
    )  # fmt: skip
    if (folder / "scheduler" / "scheduler_config.json").exists():
        scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
    else:
        scheduler = DDIMScheduler(**ddim_scheduler_config())
    return unet, vae, text_encoder, tokenizer, scheduler
