"""The DynamiCrafter video UNet (lvdm / VideoCrafter design), written from the paper and SPEC section 2.

A 2-D latent-diffusion UNet run on all frames at once (frames are folded into the batch,
``(B*F, C, h, w)``), with three temporal additions: a temporal conv block after every ResBlock,
a temporal transformer (self-attention over frames at each pixel) after every spatial
transformer, and ``init_attn``, one temporal transformer right after ``conv_in``. The spatial
transformers use *dual cross-attention*: one attention over the 77 text tokens and one over the
frame's image tokens, summed with a weight ``λ`` (``tanh(α)+1`` where the checkpoint has ``α``).

Module and attribute names follow the released checkpoint layout (``input_blocks.1.1.
transformer_blocks.0.attn2.to_k_ip`` ...), so weight conversion is a rename of a prefix; the one
exception is ``temporal_conv`` (the checkpoint spells it ``temopral_conv``, see ``convert.py``).
Every attention runs through :func:`vidforge.core.attention.attention` (fused kernel, no score
matrix in memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from vidforge.core.attention import attention


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 8  # 4 noisy latent + 4 image latent (visual detail guidance)
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)  # downsample factors with transformers
    num_head_channels: int = 64
    transformer_depth: int = 1
    context_dim: int = 1024
    temporal_length: int = 16
    learnable_image_scale: bool = False  # 256 model: λ = tanh(α) + 1 per layer
    init_attn_heads: int = 8
    text_len: int = 77
    num_groups: int = 32  # GroupNorm groups
    dropout: float = 0.1  # training only (modules are in eval mode)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(N,) -> (N, dim)``, laid out ``[cos, sin]`` as in the checkpoint's training."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def frame_context(context: torch.Tensor, num_frames: int, text_len: int, video_length: int) -> torch.Tensor:
    """Give every frame the text tokens plus its own image tokens.

    ``context`` ``(B, text_len + video_length*Q, D)`` with image tokens frame-major (token group g =
    tokens ``[g*Q, (g+1)*Q)``) -> ``(B*F, text_len + Q, D)`` ordered ``(b, f)`` like the folded frames.
    With ``F != video_length`` frames, frame f takes group ``round(f*(L-1)/(F-1))`` (the nearest
    group in relative time); the model was trained on L frames, so quality may drop.
    """
    b, n, d = context.shape
    num_image = n - text_len
    if num_image <= 0 or num_image % video_length:
        raise ValueError(
            f"context has {n} tokens; expected {text_len} text tokens + a multiple of {video_length} image tokens"
        )
    q = num_image // video_length
    text = context[:, :text_len]
    image = context[:, text_len:].reshape(b, video_length, q, d)
    if num_frames != video_length:
        if num_frames == 1:
            groups = torch.zeros(1, dtype=torch.long, device=context.device)
        else:
            pos = torch.arange(num_frames, dtype=torch.float64) * (video_length - 1) / (num_frames - 1)
            groups = pos.round().long().to(context.device)
        image = image[:, groups]
    text = text[:, None].expand(b, num_frames, text_len, d)
    return torch.cat([text, image], dim=2).reshape(b * num_frames, text_len + q, d)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (the ResBlock norms; keeps fp16 runs stable)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


# Fused attention kernels launch one CUDA grid row per batch element, capped at 65535: temporal
# attention batches every pixel of every video (B*h*w, e.g. 3*72*128 at 1024), so split larger batches.
MAX_ATTENTION_BATCH = 32768


def batched_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """:func:`vidforge.core.attention.attention` over ``(B, heads, L, D)``, in batch chunks when B is huge."""
    if q.shape[0] <= MAX_ATTENTION_BATCH:
        return attention(q, k, v)
    chunks = zip(
        q.split(MAX_ATTENTION_BATCH), k.split(MAX_ATTENTION_BATCH), v.split(MAX_ATTENTION_BATCH), strict=True
    )
    return torch.cat([attention(*c) for c in chunks])


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, L, heads*D) -> (B, heads, L, D)``."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, heads, L, D) -> (B, L, heads*D)``."""
    return x.transpose(1, 2).flatten(2)


class CrossAttention(nn.Module):
    """Multi-head attention; with ``image_cross_attention`` it is DynamiCrafter's dual cross-attention

        out = to_out( softmax(q k_txtᵀ/√d) v_txt + λ · softmax(q k_ipᵀ/√d) v_ip ),

    the context being ``cat(text tokens, image tokens)``; ``λ = tanh(α) + 1`` when ``α`` is learnable
    (256 model), else 1. Without context it is self-attention.
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        image_cross_attention: bool = False,
        learnable_image_scale: bool = False,
        text_len: int = 77,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.text_len = text_len
        self.image_cross_attention = image_cross_attention
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))
        if image_cross_attention:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
            if learnable_image_scale:
                self.alpha = nn.Parameter(torch.tensor(0.0))

    def image_scale(self) -> torch.Tensor | float:
        """λ, the weight of the image stream."""
        alpha = getattr(self, "alpha", None)
        return torch.tanh(alpha) + 1 if alpha is not None else 1.0

    def _attend(
        self, q: torch.Tensor, context: torch.Tensor, to_k: nn.Module, to_v: nn.Module
    ) -> torch.Tensor:
        k = _split_heads(to_k(context), self.heads)
        v = _split_heads(to_v(context), self.heads)
        return _merge_heads(batched_attention(q, k, v))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, L, query_dim)``, ``context`` ``(B, M, context_dim)`` or None -> ``(B, L, query_dim)``."""
        q = _split_heads(self.to_q(x), self.heads)
        if context is None:
            out = self._attend(q, x, self.to_k, self.to_v)
        elif self.image_cross_attention:
            text, image = context[:, : self.text_len], context[:, self.text_len :]
            out = self._attend(q, text, self.to_k, self.to_v)
            out = out + self.image_scale() * self._attend(q, image, self.to_k_ip, self.to_v_ip)
        else:
            out = self._attend(q, context[:, : self.text_len], self.to_k, self.to_v)
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward, inner width 4·dim."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm block: self-attention, (dual) cross-attention, GEGLU feed-forward."""

    def __init__(
        self, dim: int, heads: int, dim_head: int, context_dim: int | None, dropout: float = 0.0, **attn2
    ):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, heads, dim_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim, heads, dim_head, dropout, **attn2)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the pixels of each frame, ``(B*F, C, h, w)``, with dual cross-attention."""

    def __init__(self, channels: int, heads: int, dim_head: int, cfg: UNetConfig):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(cfg.num_groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner,
                heads,
                dim_head,
                cfg.context_dim,
                cfg.dropout,
                image_cross_attention=True,
                learnable_image_scale=cfg.learnable_image_scale,
                text_len=cfg.text_len,
            )
            for _ in range(cfg.transformer_depth)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B*F, C, h, w)``, ``context`` ``(B*F, text_len + Q, D)``."""
        n, c, h, w = x.shape
        y = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))  # (B*F, h*w, inner)
        for block in self.transformer_blocks:
            y = block(y, context)
        y = self.proj_out(y).transpose(1, 2).reshape(n, c, h, w)
        return x + y


class PointwiseConv1d(nn.Conv1d):
    """The checkpoint's 1x1 ``Conv1d`` (weights ``(out, in, 1)``) applied to channels-last
    ``(..., in)`` tokens: a linear map per token. Reading the weight inside its own ``forward``
    keeps it visible to accelerate's offload hooks."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[..., 0], self.bias)


class TemporalTransformer(nn.Module):
    """Self-attention over frames at every pixel (no positional encoding); both attn1 and attn2 are
    self-attention. ``use_linear=False`` gives the 1x1 Conv1d projections of ``init_attn``."""

    def __init__(self, channels: int, heads: int, dim_head: int, cfg: UNetConfig, use_linear: bool = True):
        super().__init__()
        inner = heads * dim_head
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(cfg.num_groups, channels, eps=1e-6)
        proj = nn.Linear if use_linear else PointwiseConv1d
        self.proj_in = proj(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, dim_head, None, cfg.dropout)
            for _ in range(cfg.transformer_depth)
        )
        self.proj_out = proj(inner, channels)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x`` ``(B*F, C, h, w)`` -> same shape; the norm's statistics span all frames of a video."""
        n, c, h, w = x.shape
        b = n // num_frames
        video = x.reshape(b, num_frames, c, h, w).transpose(1, 2)  # (B, C, F, h, w)
        y = self.norm(video).permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
        y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y)
        y = self.proj_out(y)
        y = y.reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(n, c, h, w)
        return x + y


class TemporalConvBlock(nn.Module):
    """Four [GroupNorm, SiLU, (Dropout), Conv3d (3,1,1)] layers over frames, residual; the last conv
    starts at zero so the block starts as the identity."""

    def __init__(self, channels: int, num_groups: int = 32, dropout: float = 0.1):
        super().__init__()

        def conv():
            return nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0))

        self.conv1 = nn.Sequential(nn.GroupNorm(num_groups, channels), nn.SiLU(), conv())
        self.conv2 = nn.Sequential(nn.GroupNorm(num_groups, channels), nn.SiLU(), nn.Dropout(dropout), conv())
        self.conv3 = nn.Sequential(nn.GroupNorm(num_groups, channels), nn.SiLU(), nn.Dropout(dropout), conv())
        self.conv4 = nn.Sequential(nn.GroupNorm(num_groups, channels), nn.SiLU(), nn.Dropout(dropout), conv())
        nn.init.zeros_(self.conv4[-1].weight)
        nn.init.zeros_(self.conv4[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, F, h, w)``."""
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """ResBlock with timestep embedding, followed by a temporal conv block."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, cfg: UNetConfig):
        super().__init__()
        g = cfg.num_groups
        self.in_layers = nn.Sequential(
            GroupNorm32(g, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(g, out_channels),
            nn.SiLU(),
            nn.Dropout(cfg.dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        nn.init.zeros_(self.out_layers[-1].weight)
        nn.init.zeros_(self.out_layers[-1].bias)
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )
        self.temporal_conv = TemporalConvBlock(out_channels, g, cfg.dropout)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x`` ``(B*F, C, h, w)``, ``emb`` ``(B*F, E)``."""
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        n, c, hh, ww = h.shape
        video = h.reshape(n // num_frames, num_frames, c, hh, ww).transpose(1, 2)
        video = self.temporal_conv(video)
        return video.transpose(1, 2).reshape(n, c, hh, ww)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    """A UNet stage: passes each layer what it needs (embedding, context, number of frames)."""

    def forward(self, x, emb, context, num_frames):  # noqa: D102
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, num_frames)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, TemporalTransformer):
                x = layer(x, num_frames)
            else:
                x = layer(x)
        return x


class VideoUNet(nn.Module):
    """DynamiCrafter's denoiser ``ε_θ / v_θ(z_t, t, c, fps)``."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.config = cfg
        mc = cfg.model_channels
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.fps_embedding = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        nn.init.zeros_(self.fps_embedding[-1].weight)  # fps conditioning starts as a no-op
        nn.init.zeros_(self.fps_embedding[-1].bias)

        def heads(ch: int) -> tuple[int, int]:
            return ch // cfg.num_head_channels, cfg.num_head_channels

        def transformers(ch: int) -> list[nn.Module]:
            return [SpatialTransformer(ch, *heads(ch), cfg), TemporalTransformer(ch, *heads(ch), cfg)]

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(cfg.in_channels, mc, 3, padding=1))]
        )
        self.init_attn = TimestepEmbedSequential(
            TemporalTransformer(mc, cfg.init_attn_heads, cfg.num_head_channels, cfg, use_linear=False)
        )
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers = [ResBlock(ch, emb_dim, mult * mc, cfg)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers += transformers(ch)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(
            ResBlock(ch, emb_dim, ch, cfg), *transformers(ch), ResBlock(ch, emb_dim, ch, cfg)
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mult * mc, cfg)]
                ch = mult * mc
                if ds in cfg.attention_resolutions:
                    layers += transformers(ch)
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(cfg.num_groups, ch), nn.SiLU(), nn.Conv2d(mc, cfg.out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def embedding(self, t: torch.Tensor, fps: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The time + fps embedding of every frame, ``(B*F, E)`` ordered ``(b, f)`` like the folded
        frames. ``t`` ``(B,)``: one timestep per video; ``(B, F)``: one per frame (FIFO-Diffusion's
        diagonal denoising). Per frame, the MLP runs on the ``B`` rows of that frame, the same rows the
        per-video path embeds, so equal per-frame timesteps give exactly the per-video embedding."""
        mc = self.config.model_channels
        dtype = next(self.parameters()).dtype
        fps_emb = self.fps_embedding(timestep_embedding(fps, mc).to(dtype))
        if t.ndim == 1:
            emb = self.time_embed(timestep_embedding(t, mc).to(dtype)) + fps_emb
            return emb.repeat_interleave(num_frames, dim=0)
        frames = [
            self.time_embed(timestep_embedding(t[:, i], mc).to(dtype)) + fps_emb for i in range(num_frames)
        ]
        return torch.stack(frames, dim=1).flatten(0, 1)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, fps: torch.Tensor
    ) -> torch.Tensor:
        """``x`` ``(B, in_channels, F, h, w)``, ``t`` ``(B,)`` or per frame ``(B, F)``, ``context``
        ``(B, 77 + L*Q, D)`` (text then frame-major image tokens), ``fps`` ``(B,)`` (fps or frame
        stride) -> ``(B, out_channels, F, h, w)``."""
        cfg = self.config
        b, c, f, h, w = x.shape
        dtype = next(self.parameters()).dtype
        if t.ndim == 2 and t.shape != (b, f):
            raise ValueError(f"per-frame timesteps must be (B, F) = ({b}, {f}), got {tuple(t.shape)}")
        emb = self.embedding(t, fps, f)  # (B*F, E), frames folded into the batch
        context = frame_context(context.to(dtype), f, cfg.text_len, cfg.temporal_length)

        hs = []
        y = x.to(dtype).transpose(1, 2).reshape(b * f, c, h, w)
        for i, block in enumerate(self.input_blocks):
            y = block(y, emb, context, f)
            if i == 0:
                y = self.init_attn(y, emb, context, f)
            hs.append(y)
        y = self.middle_block(y, emb, context, f)
        for block in self.output_blocks:
            y = block(torch.cat([y, hs.pop()], dim=1), emb, context, f)
        y = self.out(y)
        return y.reshape(b, f, -1, h, w).transpose(1, 2).to(x.dtype)
