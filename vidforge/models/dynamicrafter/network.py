"""The DynamiCrafter network: the five parts of a released checkpoint under vidforge names.

``unet`` (video UNet), ``image_proj`` (Resampler), ``image_encoder`` (open_clip vision tower),
``text_encoder`` (open_clip text tower) and ``vae`` (diffusers ``AutoencoderKL``). Samplers only
need :meth:`DynamiCrafter.encode_text`, :meth:`~DynamiCrafter.encode_image_tokens` and
:meth:`~DynamiCrafter.denoise`.
"""

from __future__ import annotations

import torch
from torch import nn

from vidforge.models.dynamicrafter.config import DynamiCrafterConfig, get_config
from vidforge.models.dynamicrafter.encoders import (
    build_text_tower,
    build_vae,
    build_vision_tower,
    preprocess_images,
    text_hidden_states,
    vision_tokens,
)
from vidforge.models.dynamicrafter.resampler import Resampler
from vidforge.models.dynamicrafter.unet import VideoUNet
from vidforge.models.tiny import seeded


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
        """Where the network computes (the CLIP towers stay there under CPU offload)."""
        return self.text_encoder.token_embedding.weight.device

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
        """``x`` ``(B, 8, F, h, w)`` = cat(noisy latent, image latent); ``t`` ``(B,)`` or per frame
        ``(B, F)``, long; ``context``
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
