"""DynamiCrafter's image context projector: a query transformer (Perceiver resampler).

Learned queries ``(1, Q*L, dim)`` (Q = 16 queries per frame, L = 16 frames) attend to the CLIP
image tokens; the output is frame-major: frame f's tokens are ``[f*Q, (f+1)*Q)``. Module names
follow the checkpoint's ``image_proj_model.*`` layout (``layers.i.0`` attention, ``layers.i.1`` FF).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidforge.core.attention import attention


@dataclass(frozen=True)
class ResamplerConfig:
    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 16  # per frame
    embedding_dim: int = 1280  # CLIP ViT-H-14 width
    output_dim: int = 1024  # UNet context_dim
    ff_mult: int = 4
    video_length: int = 16

    @property
    def num_tokens(self) -> int:
        return self.num_queries * self.video_length


def feed_forward(dim: int, mult: int) -> nn.Sequential:
    """LayerNorm, Linear dim->mult·dim, GELU, Linear back; no biases."""
    return nn.Sequential(
        nn.LayerNorm(dim),
        nn.Linear(dim, dim * mult, bias=False),
        nn.GELU(),
        nn.Linear(dim * mult, dim, bias=False),
    )


class PerceiverAttention(nn.Module):
    """Queries from the latents; keys and values from ``cat(image tokens, latents)``.

    The reference scales q and k each by ``dim_head^-1/4``: the product is the usual ``1/√d``
    softmax scale, which the fused kernel applies.
    """

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, N, dim)`` image features, ``latents`` ``(B, M, dim)`` -> ``(B, M, dim)``."""
        x = self.norm1(x)
        latents = self.norm2(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = attention(q, k, v).transpose(1, 2).flatten(2)
        return self.to_out(out)


class Resampler(nn.Module):
    """CLIP tokens ``(B, N, embedding_dim)`` -> image context ``(B, Q*L, output_dim)``, frame-major."""

    def __init__(self, cfg: ResamplerConfig):
        super().__init__()
        self.config = cfg
        self.latents = nn.Parameter(torch.randn(1, cfg.num_tokens, cfg.dim) / cfg.dim**0.5)
        self.proj_in = nn.Linear(cfg.embedding_dim, cfg.dim)
        self.proj_out = nn.Linear(cfg.dim, cfg.output_dim)
        self.norm_out = nn.LayerNorm(cfg.output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [PerceiverAttention(cfg.dim, cfg.dim_head, cfg.heads), feed_forward(cfg.dim, cfg.ff_mult)]
            )
            for _ in range(cfg.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.expand(x.shape[0], -1, -1)
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = latents + attn(x, latents)
            latents = latents + ff(latents)
        return self.norm_out(self.proj_out(latents))


def frame_tokens(tokens: torch.Tensor, frame: int, num_queries: int) -> torch.Tensor:
    """The image tokens of ``frame`` from frame-major ``(B, Q*L, D)`` tokens: ``[frame*Q, (frame+1)*Q)``."""
    return tokens[:, frame * num_queries : (frame + 1) * num_queries]
