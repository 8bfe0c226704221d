"""Text-to-video models (``extend``): diffusers ``UNet3DConditionModel`` folders (ModelScope,
zeroscope) and the ``tiny`` preset.

Real models load with ``from_pretrained`` on the diffusers folder layout (``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``) found by :func:`vidforge.models.hub.fetch_weights`.
"""

from __future__ import annotations

import torch

from vidforge.models.bundle import ModelBundle, vae_scale_factor
from vidforge.models.diffusers_folder import load_diffusers_folder
from vidforge.models.hub import origin
from vidforge.models.registry import ModelSource
from vidforge.models.tiny import seeded
from vidforge.sampling.schedules import SD_SCHEDULE, diffusers_noise_schedule

FAMILY = "text-to-video"
TINY_NATIVE = (8, 64, 64)  # (frames, height, width)
DEFAULT_NATIVE_FRAMES = 16  # a folder that is not a known preset
SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer")


def unet_model(unet):
    """``model(z (B, C, N, h, w), t, text (B, L, D)) -> ε`` of a ``UNet3DConditionModel``; ``t`` a
    scalar, ``(B,)`` or one timestep per frame ``(1 or B, N)`` (the shared denoiser contract)."""

    def model(z: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=z.device)
        if t.ndim < 2:
            return unet(z, t, encoder_hidden_states=text).sample
        return per_frame_forward(unet, z, t.expand(z.shape[0], z.shape[2]), text)

    return model


class FrameTimeEmbedding:
    """Stands in for ``UNet3DConditionModel``'s per-video time embedding ``(B, E)``. Its forward
    repeats that embedding over the frames at once (``emb.repeat_interleave(F, dim=0)``, rows ordered
    ``(b, f)``) and hands the result to every ResNet block; this object answers that call with the
    per-frame embeddings ``(B*F, E)`` instead. Any other use fails loudly (AttributeError), so a
    diffusers release that changes the forward cannot silently drop the per-frame timesteps."""

    def __init__(self, per_frame: torch.Tensor, num_frames: int):
        self.per_frame = per_frame
        self.num_frames = num_frames
        self.shape = (per_frame.shape[0] // num_frames, *per_frame.shape[1:])  # the per-video (B, E)

    def repeat_interleave(self, repeats, dim=0, output_size=None) -> torch.Tensor:
        expected = output_size in (None, self.per_frame.shape[0])
        if repeats != self.num_frames or dim != 0 or not expected:
            raise RuntimeError("UNet3DConditionModel no longer repeats its time embedding over frames")
        return self.per_frame


def frame_time_embedding(unet, t: torch.Tensor) -> torch.Tensor:
    """``t (B, F)`` -> ``(B*F, E)`` rows ``(b, f)``: diffusers' own ``time_proj`` + ``time_embedding``,
    run per frame on the ``B`` rows of that frame (the rows the per-video path embeds), so equal
    per-frame timesteps give exactly the per-video embedding."""
    rows = [unet.time_embedding(unet.time_proj(t[:, i]).to(dtype=unet.dtype)) for i in range(t.shape[1])]
    return torch.stack(rows, dim=1).flatten(0, 1)


def per_frame_forward(unet, z: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``UNet3DConditionModel`` with one timestep per frame, ``t (B, F)`` (FIFO-Diffusion's diagonal
    denoising), without copying diffusers' forward: a forward hook on ``unet.time_embedding``
    replaces its per-video output by :class:`FrameTimeEmbedding` for this one call."""
    per_frame = FrameTimeEmbedding(frame_time_embedding(unet, t), z.shape[2])
    handle = unet.time_embedding.register_forward_hook(lambda module, args, output: per_frame)
    try:
        return unet(z, t[:, 0], encoder_hidden_states=text).sample
    finally:
        handle.remove()


def build_tiny(seed: int = 0) -> ModelBundle:
    """``UNet3DConditionModel`` + ``AutoencoderKL`` + ``CLIPTextModel`` with small configs and seeded
    random weights: the real classes, noise output."""
    from diffusers import UNet3DConditionModel

    from vidforge.models.text import OpenClipTokenizer
    from vidforge.models.tiny import tiny_text_encoder, tiny_vae

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
    frames, height, width = TINY_NATIVE
    noise = diffusers_noise_schedule(dict(SD_SCHEDULE, prediction_type="epsilon"))
    return ModelBundle(
        "tiny", FAMILY, unet.eval(), tiny_vae(seed + 1), tiny_text_encoder(seed + 2), OpenClipTokenizer(),
        noise, frames, height, width, is_tiny=True,
    )  # fmt: skip


def load_pretrained(source: ModelSource, dtype: torch.dtype) -> ModelBundle:
    """``from_pretrained`` on a diffusers text-to-video folder (ModelScope / zeroscope layout); a
    folder without a scheduler config gets the SD training schedule."""
    from diffusers import DDIMScheduler, UNet3DConditionModel

    folder, unet, vae, text_encoder, tokenizer = load_diffusers_folder(
        source, UNet3DConditionModel, "text-to-video", SUBFOLDERS, dtype
    )
    config = None
    if (folder / "scheduler" / "scheduler_config.json").exists():
        config = dict(DDIMScheduler.load_config(folder, subfolder="scheduler"))
    native = source.preset.native if source.preset is not None else None
    if native is None:
        sample = unet.config.sample_size or 32
        sample = (sample if isinstance(sample, int) else sample[0]) * vae_scale_factor(vae)
        native = (DEFAULT_NATIVE_FRAMES, sample, sample)
    noise = diffusers_noise_schedule(config or dict(SD_SCHEDULE, prediction_type="epsilon"))
    return ModelBundle(
        source.name, FAMILY, unet, vae, text_encoder, tokenizer, noise, *native, origin=origin(source, folder)
    )
