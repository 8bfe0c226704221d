"""Four-branch guidance of Style-A-Video (Huang et al. 2023, arXiv 2305.05464), and the helpers
that put the four branches into ONE batched UNet call.

Pure functions over tensors; no model code.
"""

from __future__ import annotations

import torch

BRANCHES = ("uncond", "image", "text", "attn")  # branch-major batch order [∅∅, I∅, ∅T, M∅]


def four_branch_guidance(
    eps_uncond: torch.Tensor,
    eps_image: torch.Tensor,
    eps_text: torch.Tensor,
    eps_attn: torch.Tensor,
    image_scale: float,
    text_scale: float,
    attn_scale: float,
) -> torch.Tensor:
    """Combine the four noise predictions (Style-A-Video, guidance equation)::

        eps = (1 - sI - sT - sM)·eps(z, ∅, ∅) + sI·eps(z, c_I, ∅) + sT·eps(z, ∅, c_T) + sM·eps(z, c_M, ∅)
            = eps∅ + sI·(epsI - eps∅) + sT·(epsT - eps∅) + sM·(epsM - eps∅)

    ``sI = image_scale``, ``sT = text_scale``, ``sM = attn_scale``. Special cases:

    * ``sI = sM = 0``: classifier-free guidance ``eps∅ + sT·(epsT - eps∅)`` (Ho & Salimans 2022).
    * text branch ``eps(z, c_I, c_T)`` (``--text-branch image``), ``sM = 0`` and ``sI = s'_I - s'_T``:
      InstructPix2Pix guidance ``eps∅ + s'_I·(epsI - eps∅) + s'_T·(epsIT - epsI)``.

    All inputs share one shape, e.g. ``(F, C, h, w)``; the result has that shape.
    """
    return (
        eps_uncond
        + image_scale * (eps_image - eps_uncond)
        + text_scale * (eps_text - eps_uncond)
        + attn_scale * (eps_attn - eps_uncond)
    )


def batch_branches(*branches: torch.Tensor) -> torch.Tensor:
    """Stack per-branch tensors ``(F, ...)`` branch-major into ``(len(branches)·F, ...)``."""
    return torch.cat(branches, dim=0)


def split_branches(batched: torch.Tensor, num_branches: int = 4) -> tuple[torch.Tensor, ...]:
    """Inverse of :func:`batch_branches`: ``(n·F, ...)`` -> ``n`` tensors ``(F, ...)``."""
    return tuple(batched.chunk(num_branches, dim=0))


def branch_conditions(
    image_latents: torch.Tensor,
    attn_latents: torch.Tensor | None,
    text_null: torch.Tensor,
    text_style: torch.Tensor,
    text_branch: str = "paper",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text conditions of the four branches, branch-major ``[∅∅, I∅, ∅T, M∅]``.

    ``image_latents`` c_I and ``attn_latents`` c_M are ``(F, 4, h, w)`` (unscaled VAE latents; the
    null image is a zero latent). ``text_null`` / ``text_style`` are ``(1, L, D)`` embeddings of the
    empty prompt and the style prompt. ``text_branch="image"`` gives the text branch c_I too
    (InstructPix2Pix's ``eps(z, c_I, c_T)``). ``attn_latents=None`` leaves out the M∅ branch
    (``sM = 0``: it would be computed for nothing).

    Returns ``image_cond (nF, 4, h, w)`` and ``text_cond (nF, L, D)``, n = 4 (or 3).
    """
    num_frames = image_latents.shape[0]
    null_image = torch.zeros_like(image_latents)
    text_image = image_latents if text_branch == "image" else null_image
    images = [null_image, image_latents, text_image] + ([attn_latents] if attn_latents is not None else [])
    null = text_null.expand(num_frames, -1, -1)
    style = text_style.expand(num_frames, -1, -1)
    texts = [null, null, style, null][: len(images)]
    return batch_branches(*images), batch_branches(*texts)
