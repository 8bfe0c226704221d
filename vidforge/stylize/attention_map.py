"""Self-attention condition c_M of Style-A-Video.

Paper: ``A_t = softmax(QKᵀ/√d)``, ``ψ = mean(A_t)``, ``M_t = 1(A_t > ψ)``, ``c_M = M_t ⊙ c_I``
(the thresholding rule of Self-Attention Guidance, Hong et al. 2022).

Concrete design (SPEC 1): one decoder self-attention layer (``attn1`` of the first transformer
block of the first decoder block that has attention; ``up_blocks[1]`` in SD1.5) gets
:class:`AttentionProbsProcessor`. It computes its output with the fast fused kernel like every
other layer and, for the rows of the ``c_I`` branch only, the explicit probabilities, which it
reduces at once to a per-token saliency (so the ``(heads, L, L)`` matrix never outlives the call).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vidforge.core.attention import attention


class AttentionProbsProcessor:
    """diffusers attention processor for ONE self-attention layer that also exposes its attention.

    ``rows`` selects the batch rows whose probabilities are needed (the ``c_I`` branch); after a
    forward pass ``saliency`` holds ``(len(rows), L)``: the head-averaged attention each token
    *receives*, ``s_j = mean_heads Σ_i A[i, j]``. (Summing over keys instead would give 1 for
    every token, since each row of A is a softmax.) Its mean over tokens is exactly 1.
    """

    def __init__(self):
        self.rows: slice | None = None  # None: capture nothing (pure fast path)
        self.saliency: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is not None or hidden_states.ndim != 3 or attention_mask is not None:
            raise ValueError("AttentionProbsProcessor only handles plain self-attention (attn1) layers")
        residual = hidden_states
        batch, length, _ = hidden_states.shape
        heads = attn.heads

        def split_heads(x):  # (B, L, heads·d) -> (B, heads, L, d)
            return x.view(batch, length, heads, -1).transpose(1, 2)

        query = split_heads(attn.to_q(hidden_states))
        key = split_heads(attn.to_k(hidden_states))
        value = split_heads(attn.to_v(hidden_states))
        out = attention(query, key, value, scale=attn.scale)
        if self.rows is not None:
            self.saliency = attention_saliency(query[self.rows], key[self.rows], attn.scale)
        out = out.transpose(1, 2).reshape(batch, length, -1).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def attention_saliency(query: torch.Tensor, key: torch.Tensor, scale: float) -> torch.Tensor:
    """``(B, heads, L, d)`` queries and keys -> ``(B, L)``: head-averaged attention received per token.

    ``A = softmax(QKᵀ·scale)`` in fp32; ``s_j = mean_heads Σ_i A[i, j]``.
    """
    probs = torch.softmax(query.float() @ key.float().transpose(-1, -2) * scale, dim=-1)
    return probs.sum(dim=-2).mean(dim=1)


def saliency_mask(saliency: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """Threshold a per-token saliency at its mean and upsample to the latent grid.

    ``saliency`` ``(F, L)`` over the layer's ``h' × w'`` tokens -> ``M_t`` ``(F, 1, h, w)`` in {0, 1}
    (nearest upsampling), ``M_t = 1(s > mean(s))`` per frame.
    """
    grid = token_grid(saliency.shape[1], latent_size)
    mask = (saliency > saliency.mean(dim=1, keepdim=True)).float()
    mask = mask.view(-1, 1, *grid)
    return F.interpolate(mask, size=latent_size, mode="nearest")


def token_grid(num_tokens: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h', w')`` a UNet level with ``num_tokens`` tokens has for a ``latent_size`` input.

    Each downsampling conv (stride 2, padding 1) maps ``n`` to ``ceil(n / 2)``.
    """
    h, w = latent_size
    while h * w > num_tokens:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    if h * w != num_tokens:
        raise ValueError(f"{num_tokens} attention tokens do not match latent size {latent_size}")
    return h, w


def find_decoder_self_attention(unet) -> torch.nn.Module:
    """``attn1`` of the first transformer block of the first decoder block with attention
    (``up_blocks[1].attentions[0].transformer_blocks[0].attn1`` in SD1.5 / InstructPix2Pix)."""
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None)
        if attentions:
            return attentions[0].transformer_blocks[0].attn1
    raise ValueError("the UNet has no decoder self-attention layer to read c_M from")


def install_probs_processor(unet) -> AttentionProbsProcessor:
    """Put :class:`AttentionProbsProcessor` on the one layer; every other layer keeps its processor."""
    processor = AttentionProbsProcessor()
    find_decoder_self_attention(unet).set_processor(processor)
    return processor


def attention_condition(mask: torch.Tensor, image_latents: torch.Tensor) -> torch.Tensor:
    """``c_M = M_t ⊙ c_I``: ``(F, 1, h, w)`` mask times ``(F, 4, h, w)`` image latents."""
    return mask.to(image_latents.dtype) * image_latents
