"""Prompt tokenization and encoding with a CLIP text model.

Real diffusers models bring their own ``CLIPTokenizer``; ``tiny`` models use open_clip's bundled
BPE vocabulary (the same CLIP vocabulary), so they tokenize with no network.
"""

from __future__ import annotations

import torch


class OpenClipTokenizer:
    """Callable ``list[str] -> (N, 77) LongTensor`` over the CLIP BPE vocabulary shipped with open_clip."""

    model_max_length = 77

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        import open_clip

        return open_clip.tokenize(prompts, context_length=self.model_max_length)


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids ``(N, L)`` from an open_clip-style callable or a transformers tokenizer."""
    if isinstance(tokenizer, OpenClipTokenizer):
        return tokenizer(prompts)
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str], device, dtype) -> torch.Tensor:
    """Last hidden states ``(N, L, D)`` of a transformers CLIP text encoder, as Stable Diffusion uses them."""
    ids = tokenize(tokenizer, prompts).to(device)
    return text_encoder(ids)[0].to(dtype)
