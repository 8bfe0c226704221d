"""Small shared parts of the ``tiny`` presets: the real diffusers/transformers classes at a tiny
config with seeded random weights. Plumbing only: their output is noise."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def seeded(seed: int = 0):
    """Build tiny models with reproducible random weights without disturbing the global RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tiny_vae(seed: int = 0):
    """A 4-level ``AutoencoderKL`` (8x downsampling like SD's) with ~0.1M parameters."""
    from diffusers import AutoencoderKL

    with seeded(seed):
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=64,
        )
    return vae.eval()


def tiny_text_encoder(seed: int = 0, hidden_size: int = 32):
    """A 2-layer transformers ``CLIPTextModel`` over the real CLIP vocabulary (tokenize with
    :class:`vidforge.models.text.OpenClipTokenizer`)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    with seeded(seed):
        encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=49408,
                hidden_size=hidden_size,
                intermediate_size=2 * hidden_size,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
            )
        )
    return encoder.eval()
