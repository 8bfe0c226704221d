"""CLIP metrics (SPEC section 4): cosine similarities of L2-normalised open_clip embeddings.

The metric functions are pure: they take embeddings ``(F, D)`` (rows of unit length) and return
``(value, per_frame)`` with cosines in [-1, 1]. :func:`embed_frames` is the one place frames meet
the model, so every CLIP metric of a video shares one pass over its frames.
"""

from __future__ import annotations

import numpy as np
import torch


def embed_frames(clip, frames: np.ndarray, batch_size: int = 16) -> torch.Tensor:
    """``(F, H, W, 3)`` uint8 frames -> ``(F, D)`` float32 CPU embeddings (unit rows)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size])).permute(0, 3, 1, 2)
            out.append(clip.encode_images(x.float() / 255.0).float().cpu())
    return torch.cat(out)


def embed_text(clip, prompt: str) -> torch.Tensor:
    """``(D,)`` float32 CPU text embedding (unit length)."""
    with torch.no_grad():
        return clip.encode_text([prompt])[0].float().cpu()


def clip_text(image_emb: torch.Tensor, text_emb: torch.Tensor) -> tuple[float, list[float]]:
    """CLIP text alignment: mean over frames of ``cos(E_img(frame_t), E_txt(prompt))``.
    ``image_emb`` ``(F, D)``, ``text_emb`` ``(D,)``. Raw cosine; the report adds the ×100 score."""
    per_frame = (image_emb @ text_emb).tolist()
    return float(np.mean(per_frame)), per_frame


def clip_frame(image_emb: torch.Tensor, variant: str = "consecutive") -> tuple[float, list[float]]:
    """CLIP frame consistency.

    ``consecutive``: mean over t of ``cos(e_t, e_{t+1})``; per_frame has the F-1 pair cosines.
    ``all-pairs`` (Tune-A-Video): mean over all i < j of ``cos(e_i, e_j)``; per_frame[i] is frame i's
    mean cosine to every other frame (F values).
    """
    if variant == "consecutive":
        per = (image_emb[:-1] * image_emb[1:]).sum(-1).tolist()
        return float(np.mean(per)), per
    sims = image_emb @ image_emb.T
    num = sims.shape[0]
    off_diagonal = sims.sum() - sims.diagonal().sum()
    per = ((sims.sum(1) - sims.diagonal()) / (num - 1)).tolist()
    return float(off_diagonal / (num * (num - 1))), per


def clip_content(input_emb: torch.Tensor, output_emb: torch.Tensor) -> tuple[float, list[float]]:
    """Content preservation (Style-A-Video): mean over frames of ``cos(E(input_t), E(output_t))``.
    Both ``(F, D)`` with the same F."""
    per_frame = (input_emb * output_emb).sum(-1).tolist()
    return float(np.mean(per_frame)), per_frame
