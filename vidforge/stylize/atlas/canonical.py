"""The canonical image: where the edit is made once, and how every frame is rendered back from it.

* Bounds: ``D`` on every frame (a grid of every ``BOUNDS_STRIDE``-th pixel plus the last row and
  column), min and max of ``(u, v)`` over all frames, clamped to canonical space.
* Resolution: the bounds times the frame size (one canonical pixel per frame pixel where the frame
  maps 1:1), times the largest magnification any frame needs (a zoom-in maps a frame onto a smaller
  canonical area: ``1 / sqrt(|det J_D|)``, median over the frame's pixels), the longer side at most
  ``MAX_MAGNIFICATION`` times the frame's longer side (the diffusion model runs on this image), each
  side rounded UP to a multiple of the VAE factor.
* Rendering: frame t is the canonical image sampled bilinearly at ``D(x, y, t)``.
* Blend mask (``--atlas-blend τ``): where the atlas cannot reproduce a pixel (disocclusions,
  parallax, things a single layer cannot hold), the per-frame Style-A-Video result is used instead:
  ``e`` = mean over RGB of ``|render(canonical) - input|`` (in [0, 1]) box-filtered over
  ``MASK_BLUR`` pixels, ``m = clamp((e - τ) / τ, 0, 1)`` (0 below τ, 1 from 2τ), and
  ``out = (1 - m)·atlas + m·per_frame``. ``τ = 0`` turns it off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vidforge.stylize.atlas.fields import CANONICAL_MARGIN, AtlasFields
from vidforge.stylize.atlas.fit import deform_frame

BOUNDS_STRIDE = 4  # pixels between the points whose mapping bounds the canonical region
MAX_MAGNIFICATION = 2.0  # the canonical image's longer side is at most 2x the frame's
MASK_BLUR = 5  # box filter (pixels) on the error before thresholding: no single-pixel speckle


@dataclass(frozen=True)
class Canvas:
    """The canonical image's region ``[u0, u1] × [v0, v1]`` (frame units) and size in pixels."""

    u0: float
    v0: float
    u1: float
    v1: float
    width: int
    height: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def sparse_pixels(width: int, height: int, stride: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of every ``stride``-th column and row plus the last ones: ``(h, w)`` each."""
    xs = sorted({*range(0, width, stride), width - 1})
    ys = sorted({*range(0, height, stride), height - 1})
    y, x = torch.meshgrid(
        torch.tensor(ys, dtype=torch.float32, device=device),
        torch.tensor(xs, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return x, y


@torch.no_grad()
def frame_footprint(fields: AtlasFields, t: int) -> tuple[torch.Tensor, float]:
    """Canonical coordinates ``(n, 2)`` of frame t's sparse pixels, and its magnification: the
    median of ``1 / sqrt(|det J_D|)`` (J in frame units per frame unit) over those pixels."""
    c = fields.config
    device = fields.deform.grid.table.device
    x, y = sparse_pixels(c.width, c.height, BOUNDS_STRIDE, device)
    x, y = x.reshape(-1), y.reshape(-1)
    time = torch.full_like(x, float(t))
    uv = fields.deform(fields.normalise(x, y, time))
    du = fields.deform(fields.normalise(x + 1, y, time)) - uv  # one pixel = 1/W frame units
    dv = fields.deform(fields.normalise(x, y + 1, time)) - uv
    det = (du[:, 0] * dv[:, 1] - du[:, 1] * dv[:, 0]).abs() * c.width * c.height
    magnification = float(torch.median(1 / det.clamp(min=1e-6).sqrt()))
    return uv, magnification


def canvas_from_fields(fields: AtlasFields, factor: int) -> Canvas:
    """The region every frame maps into and its pixel size (see the module docstring)."""
    c = fields.config
    lo = torch.full((2,), math.inf)
    hi = torch.full((2,), -math.inf)
    magnification = 1.0
    for t in range(c.frames):
        uv, mag = frame_footprint(fields, t)
        lo = torch.minimum(lo, uv.amin(0).cpu())
        hi = torch.maximum(hi, uv.amax(0).cpu())
        magnification = max(magnification, mag)
    lo = lo.clamp(-CANONICAL_MARGIN, 1 + CANONICAL_MARGIN)
    hi = torch.maximum(hi.clamp(-CANONICAL_MARGIN, 1 + CANONICAL_MARGIN), lo + 1e-3)
    extent = [float(hi[k] - lo[k]) * side for k, side in enumerate((c.width, c.height))]
    # at most MAX_MAGNIFICATION times the frame's longer side, however far the content travels
    scale = min(magnification, MAX_MAGNIFICATION * max(c.width, c.height) / max(extent))
    size = [max(factor, math.ceil(e * scale / factor) * factor) for e in extent]
    return Canvas(float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]), size[0], size[1])


@torch.no_grad()
def render_canonical(fields: AtlasFields, canvas: Canvas, chunk: int = 1 << 16) -> np.ndarray:
    """``C`` at the canvas' pixel centres: ``(height, width, 3)`` uint8."""
    device = fields.canonical.grid.table.device
    u = canvas.u0 + (torch.arange(canvas.width, device=device) + 0.5) * (canvas.u1 - canvas.u0) / canvas.width
    v = (
        canvas.v0
        + (torch.arange(canvas.height, device=device) + 0.5) * (canvas.v1 - canvas.v0) / canvas.height
    )
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    uv = torch.stack([uu.reshape(-1), vv.reshape(-1)], -1)
    rgb = torch.cat([fields.canonical(part) for part in uv.split(chunk)])
    image = rgb.reshape(canvas.height, canvas.width, 3).clamp(0, 1)
    return (image * 255).round().byte().cpu().numpy()


def sample_canonical(images: torch.Tensor, uv: torch.Tensor, canvas: Canvas) -> torch.Tensor:
    """Bilinear samples of canonical images ``(N, 3, h, w)`` float at ``uv`` ``(H, W, 2)``:
    ``(N, 3, H, W)``; the canvas' edges are its pixels' outer edges (border values outside)."""
    gx = 2 * (uv[..., 0] - canvas.u0) / (canvas.u1 - canvas.u0) - 1
    gy = 2 * (uv[..., 1] - canvas.v0) / (canvas.v1 - canvas.v0) - 1
    grid = torch.stack([gx, gy], -1)[None].expand(images.shape[0], -1, -1, -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def blend_mask(rendered: torch.Tensor, frame: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(1, H, W)`` in [0, 1]: the share of the per-frame result (see the module docstring).
    ``rendered``, ``frame``: ``(3, H, W)`` in [0, 1]."""
    error = (rendered - frame).abs().mean(0, keepdim=True)
    error = F.avg_pool2d(error[None], MASK_BLUR, stride=1, padding=MASK_BLUR // 2, count_include_pad=False)[0]
    return ((error - threshold) / threshold).clamp(0, 1)


def to_images(*images: np.ndarray, device) -> torch.Tensor:
    """uint8 ``(h, w, 3)`` images -> ``(N, 3, h, w)`` float in [0, 1] on ``device``."""
    stacked = torch.from_numpy(np.stack(images)).to(device)
    return stacked.permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def render_frame(fields: AtlasFields, t: int, canonical: torch.Tensor, canvas: Canvas) -> torch.Tensor:
    """Frame t from canonical images ``(N, 3, h, w)`` (e.g. the edited one and the original):
    ``(N, 3, H, W)`` float in [0, 1]."""
    return sample_canonical(canonical, deform_frame(fields, t), canvas)
