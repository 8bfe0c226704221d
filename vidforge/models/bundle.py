"""The one type every loader returns: a model's networks, its noise schedule and its native size."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vidforge.sampling.schedules import NoiseSchedule


@dataclass
class ModelBundle:
    """Everything a command needs from one model.

    ``family`` is ``"instruct-pix2pix"`` (stylize), ``"text-to-video"`` (diffusers
    ``UNet3DConditionModel``: ModelScope, zeroscope) or ``"dynamicrafter"`` (animate, ``extend
    --image``; then ``network`` is the whole :class:`~vidforge.models.dynamicrafter.network.DynamiCrafter`
    and ``unet``, ``vae``, ``text_encoder`` are its parts).
    """

    name: str  # what the user asked for: preset, hub id or path
    family: str
    unet: torch.nn.Module
    vae: torch.nn.Module  # diffusers AutoencoderKL
    text_encoder: torch.nn.Module
    tokenizer: object | None  # None: the network tokenizes itself (DynamiCrafter, open_clip)
    noise_schedule: NoiseSchedule
    frames: int = 1  # native clip length (1: an image model)
    height: int | None = None  # native frame size; None: any
    width: int | None = None
    is_tiny: bool = False
    network: torch.nn.Module | None = None
    origin: dict = field(default_factory=dict)  # which weights (models.hub.origin), for the settings record

    @property
    def device(self) -> torch.device:
        """Where the denoiser computes (its weights may sit on the CPU under offload)."""
        from vidforge.core.device import execution_device

        return execution_device(self.unet)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def config(self):
        """The DynamiCrafter release config (None for the diffusers families)."""
        return getattr(self.network, "config", None)

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent pixel: ``2 ** (VAE levels - 1)``, as diffusers derives it."""
        return vae_scale_factor(self.vae)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def unet_downsample(self) -> int:
        """Spatial downsampling inside the UNet (latent sizes should be multiples of it)."""
        if self.config is not None:
            return 2 ** (len(self.config.unet.channel_mult) - 1)
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Text embeddings ``(N, L, D)`` as the UNet's cross-attention takes them."""
        if self.network is not None:
            return self.network.encode_text(prompts)
        from vidforge.models.text import encode_prompts

        return encode_prompts(self.tokenizer, self.text_encoder, prompts, self.device, self.dtype)


def vae_scale_factor(vae) -> int:
    """``2 ** (len(block_out_channels) - 1)``: 8 for Stable Diffusion's 4-level VAE."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def prepare_modules(bundle: ModelBundle, device, dtype, offload: str = "none") -> ModelBundle:
    """Every network of ``bundle`` frozen, in eval mode, in ``dtype`` (pretrained parts are loaded
    in it already), on ``device``; or, with ``offload``, kept in CPU memory and brought to
    ``device`` by accelerate's hooks (:func:`offload_modules`)."""
    modules = (
        [bundle.network] if bundle.network is not None else [bundle.unet, bundle.vae, bundle.text_encoder]
    )
    for module in modules:
        module.eval().requires_grad_(False)
        if next(module.parameters()).dtype != dtype:
            module.to(dtype)
        module.to(device if offload == "none" else "cpu")
    if offload != "none":
        offload_modules(bundle, device, offload)
    return bundle


def offloaded_parts(bundle: ModelBundle) -> list[torch.nn.Module]:
    """The networks CPU offload moves, in the order a run uses them. DynamiCrafter's open_clip towers
    stay on the device: their forward passes read parameters directly, which hooks cannot see."""
    if bundle.network is not None:
        return [bundle.network.image_proj, bundle.unet, bundle.vae]
    return [bundle.text_encoder, bundle.unet, bundle.vae]


def offload_modules(bundle: ModelBundle, device, mode: str) -> None:
    """accelerate's CPU offload, as diffusers' ``enable_model_cpu_offload`` (``model``: a whole
    network moves to ``device`` when called and back when the next one is) and
    ``enable_sequential_cpu_offload`` (``sequential``: one layer at a time, the least memory)."""
    from accelerate import cpu_offload, cpu_offload_with_hook

    parts = offloaded_parts(bundle)
    if bundle.network is not None:  # the rest of the network (the CLIP towers) on the device
        bundle.network.to(device)
        for part in parts:
            part.to("cpu")
    hook = None
    for part in parts:
        if mode == "sequential":
            cpu_offload(part, execution_device=device)
        else:
            _, hook = cpu_offload_with_hook(part, execution_device=device, prev_module_hook=hook)


def compile_denoiser(bundle: ModelBundle) -> None:
    """``torch.compile`` the denoising network in place (``VIDFORGE_COMPILE_BACKEND`` picks another
    backend than inductor, e.g. for a quick check on a machine without a compiler toolchain)."""
    import os

    backend = os.environ.get("VIDFORGE_COMPILE_BACKEND", "inductor")
    compiled = torch.compile(bundle.unet, backend=backend)
    if bundle.network is not None:
        bundle.network.unet = compiled
    bundle.unet = compiled
