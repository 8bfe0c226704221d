"""DynamiCrafter's conditions (SPEC section 2), shared by ``animate`` and ``extend --image``.

* context stream: ``cat(text77, image tokens)`` for the dual cross-attention;
* detail stream: the image latent ``0.18215·VAE.encode(img).sample()`` concatenated to the noisy
  latent on channels, on every frame (interp/loop models: first and last frame only);
* fps (512/1024) or frame-stride (256) conditioning added to the time embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from vidforge.core.vae import encode_frames, to_tensor
from vidforge.core.video_io import resize_cover
from vidforge.models.dynamicrafter.config import DynamiCrafterConfig

# Output fps for frame-stride models (the 256 model): the authors save its videos at 8 fps.
# fps-conditioned models (512/1024) play at their fps conditioning value.
FRAME_STRIDE_OUTPUT_FPS = 8


def fps_conditioning(
    config: DynamiCrafterConfig, fps: float | None = None, frame_stride: int | None = None
) -> int:
    """The value fed to ``fps_embedding``: ``fps`` for the 512/1024 models, ``frame_stride`` for the
    256 model; the release default when the matching one is None."""
    value = fps if config.fps_conditioning == "fps" else frame_stride
    return int(config.default_fps) if value is None else max(1, round(value))


def output_fps(config: DynamiCrafterConfig, fps_cond: int) -> int:
    """fps-conditioned models play at their conditioning fps; the frame-stride model at 8 fps."""
    return fps_cond if config.fps_conditioning == "fps" else FRAME_STRIDE_OUTPUT_FPS


def preprocess_image(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``(H0, W0, 3)`` uint8 -> ``(1, 3, height, width)`` float in [-1, 1]: resize so the image
    covers the target (aspect kept), then centre crop. No padding, no distortion."""
    return to_tensor(resize_cover(image[None], (width, height)))


def encode_contexts(
    network, texts: list[str], images: torch.Tensor, pairs: dict[str, tuple[int, int]]
) -> dict[str, torch.Tensor]:
    """Cross-attention contexts ``cat(text, image tokens)`` ``(1, 77 + L, D)``, one per name.

    ``texts`` and ``images`` (``(n, 3, H, W)`` in [-1, 1]) are each encoded in one batch; ``pairs``
    maps a name to its (text index, image index). An unconditional image is the zero image
    (mid-gray), as the authors' unconditional image tokens.
    """
    text = network.encode_text(texts)  # (len(texts), 77, D)
    tokens = network.encode_image_tokens(images).to(text.dtype)  # (n, L, D)
    return {name: torch.cat([text[i : i + 1], tokens[j : j + 1]], dim=1) for name, (i, j) in pairs.items()}


def image_latents(
    vae, images: torch.Tensor, num_frames: int, interp: bool, generator: torch.Generator
) -> torch.Tensor:
    """The detail stream ``(1, 4, F, h, w)``: the image latent ``s·E(img).sample()`` on every frame;
    interp/loop models: the first and last image's latents on the first and last frame, zeros between."""
    z = encode_frames(vae, images, chunk_size=2, sample=True, generator=generator).float()  # (n, 4, h, w)
    if not interp:
        return z[:1, :, None].expand(-1, -1, num_frames, -1, -1).contiguous()
    out = torch.zeros(1, z.shape[1], num_frames, *z.shape[2:], device=z.device)
    out[:, :, 0] = z[0]
    out[:, :, -1] = z[-1]
    return out


def conditioned_unet(network, latents: torch.Tensor, fps: int, autocast_dtype: torch.dtype | None = None):
    """``model(x (B, 4, F, h, w), t, context (B, 77 + L, D)) -> (B, 4, F, h, w)`` (ε or v), ``t`` a
    scalar, ``(B,)`` or per frame ``(1 or B, F)`` (the shared denoiser contract): the video
    UNet with the detail stream ``latents`` (``(1, 4, F or 1, h, w)``) concatenated on channels and
    the fps conditioning ``fps``, under autocast when ``autocast_dtype`` is given."""

    def model(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, f = x.shape[:3]
        x_in = torch.cat([x, latents.to(x).expand(b, -1, f, -1, -1)], dim=1)
        t = torch.as_tensor(t, device=x.device).long()
        t = t.expand(b, f) if t.ndim == 2 else t.reshape(-1).expand(b)  # per frame (1 or B, F), or per video
        fps_t = torch.full((b,), fps, dtype=torch.long, device=x.device)
        enabled = autocast_dtype is not None
        with torch.autocast(x.device.type, dtype=autocast_dtype or torch.float32, enabled=enabled):
            return network.denoise(x_in, t, context.to(x.device), fps_t)

    return model
