"""Fitting the atlas fields to one video (CoDeF's training, our schedule).

Each iteration draws ``batch`` random pixels from all frames and minimises

* reconstruction: ``‖C(D(x, y, t)) - I_t(x, y)‖²`` (RGB in [0, 1]);
* flow-guided consistency (CoDeF): ``λ_f·|D(x + w, t + 1) - D(x, t)|₁`` in frame units (x / W,
  y / H, as CoDeF's normalised grid), for pixels whose forward flow ``w`` (``core.flow``, frame
  t -> t+1) passes the forward-backward test: a point keeps its canonical coordinates along the
  flow, so the canonical image is one image of the scene and not a per-frame patchwork.
  ``benchmarks/atlas.py --ablation`` (``examples/clip.mp4`` at 192x128, 400 iterations): the warp
  error of frames rendered from an edited canonical image is 0.0247 without it, 0.00107 / 0.00051 /
  0.00073 with λ_f = 1 (CoDeF's) / 3 / 10, for PSNRs of 29.4 / 28.8 / 28.7 / 27.9 dB: λ_f = 3.

No explicit smoothness term on D: a second-difference penalty (``‖D(p + δ) - 2D(p) + D(p - δ)‖²``
in pixels², weight 1, zero for pan and zoom) was tried in development on the same clip and
settings (λ_f = 1, lr 2e-2): it fights the motion discontinuities at layer boundaries, so PSNR fell
from 28.65 to 27.65 dB and that warp error rose fivefold (0.00099 -> 0.0051). It was removed; D is
kept smooth by its coarse-to-fine levels instead (CoDeF does the same).

The deformation grid's levels are annealed coarse to fine (CoDeF's schedule over the
``ANNEAL`` fraction of iterations): before it starts only the MLP of the raw ``(x, y, t)`` shapes
D, which finds the global motion first. Adam (instant-ngp's β₂ = 0.99, ε = 1e-15); the learning
rate halves at 25%, 50% and 75% of the iterations (CoDeF's step decay at 2500/5000/7500 of 10000).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from vidforge.core.progress import Bars
from vidforge.stylize.atlas.fields import AtlasFields, anneal_weights

ANNEAL = (0.2, 0.7)  # the deformation levels open between these fractions of the fit
DECAY = (0.25, 0.5, 0.75)  # learning rate ×0.5 at these fractions of the fit


@dataclass(frozen=True)
class FitSettings:
    iterations: int
    batch: int  # pixels per iteration
    seed: int = 0
    lr: float = 5e-2  # hash tables (ablation: 28.7 dB vs 28.2 at 2e-2); the MLPs use lr / 10
    flow_weight: float = 3.0  # on coordinates in frame units (CoDeF: 1; see the ablation above)


@dataclass
class VideoTensors:
    """A video and its forward flow on the fitting device.

    ``frames`` ``(F, H, W, 3)`` uint8; ``flow`` ``(F-1, H, W, 2)`` float16 pixels, frame t -> t+1;
    ``valid`` ``(F-1, H, W)`` bool: the flow passed the forward-backward test."""

    frames: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape[:3])


def video_tensors(frames: np.ndarray, device, bars: Bars | None = None) -> VideoTensors:
    """Frames ``(F, H, W, 3)`` uint8 and their DIS forward flow with its validity, on ``device``."""
    from vidforge.core.flow import occlusion_mask, video_flows

    forward, backward = video_flows(frames, "dis", progress=bars)
    valid = (
        np.stack([~occlusion_mask(f, b) for f, b in zip(forward, backward, strict=True)])
        if len(forward)
        else np.zeros((0, *frames.shape[1:3]), bool)
    )
    return VideoTensors(
        torch.from_numpy(frames).to(device),
        torch.from_numpy(forward).to(device, torch.float16),
        torch.from_numpy(valid).to(device),
    )


def sample_pixels(shape, count: int, generator: torch.Generator, device):
    """``count`` uniform random pixels of an ``(F, H, W)`` video: long ``(t, y, x)``, each ``(count,)``."""
    frames, height, width = shape
    index = torch.randint(frames * height * width, (count,), generator=generator).to(device)
    t, rest = index // (height * width), index % (height * width)
    return t, rest // width, rest % width


def fit_losses(fields: AtlasFields, video: VideoTensors, pixels, weights, settings: FitSettings):
    """The reconstruction and flow-consistency terms of one batch, each a scalar tensor."""
    t, y, x = pixels
    frames = video.shape[0]
    xyt = fields.normalise(x.float(), y.float(), t.float())
    uv = fields.deform(xyt, weights)
    target = video.frames[t, y, x].float() / 255
    reconstruction = torch.mean((fields.canonical(uv) - target) ** 2)
    flow_loss = reconstruction.new_zeros(())
    has_next = t < frames - 1
    if settings.flow_weight > 0 and bool(has_next.any()):
        tn, yn, xn = t[has_next], y[has_next], x[has_next]
        w = video.flow[tn, yn, xn].float()
        moved = fields.normalise(xn + w[:, 0], yn + w[:, 1], (tn + 1).float())
        gap = (fields.deform(moved, weights) - uv[has_next]).abs()  # frame units, as CoDeF
        mask = video.valid[tn, yn, xn].float()[:, None]
        flow_loss = (gap * mask).sum() / (2 * mask.sum()).clamp(min=1)
    return reconstruction, flow_loss


def make_optimizer(fields: AtlasFields, settings: FitSettings) -> torch.optim.Optimizer:
    tables = [fields.deform.grid.table, fields.canonical.grid.table]
    networks = [p for name, p in fields.named_parameters() if not name.endswith("grid.table")]
    return torch.optim.Adam(
        [{"params": tables, "lr": settings.lr}, {"params": networks, "lr": settings.lr / 10}],
        betas=(0.9, 0.99),
        eps=1e-15,
    )


def fit(fields: AtlasFields, video: VideoTensors, settings: FitSettings, bars: Bars | None = None) -> dict:
    """Optimise ``fields`` in place; returns ``{"seconds", "loss", "reconstruction"}`` (last batch)."""
    bars = bars or Bars(disable=True)
    device = video.frames.device
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = make_optimizer(fields, settings)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    levels = fields.config.levels
    status = {"text": ""}
    start = time.perf_counter()
    losses = None
    for step in bars.track(range(settings.iterations), "atlas fit", status=lambda: status["text"]):
        progress = step / max(settings.iterations - 1, 1)
        decay = 0.5 ** sum(progress >= d for d in DECAY)
        for group, lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = lr * decay
        anneal = (progress - ANNEAL[0]) / (ANNEAL[1] - ANNEAL[0])
        weights = anneal_weights(levels, anneal, device)
        pixels = sample_pixels(video.shape, settings.batch, generator, device)
        losses = fit_losses(fields, video, pixels, weights, settings)
        loss = losses[0] + settings.flow_weight * losses[1]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == settings.iterations - 1:
            status["text"] = f" loss {loss.item():.5f}"
    fields.eval()
    return {
        "seconds": time.perf_counter() - start,
        "loss": float(sum(losses).item()) if losses else 0.0,
        "reconstruction": float(losses[0].item()) if losses else 0.0,
    }


@torch.no_grad()
def deform_frame(fields: AtlasFields, t: int, chunk: int = 1 << 16) -> torch.Tensor:
    """``D(·, ·, t)`` on every pixel of frame t: ``(H, W, 2)`` normalised canonical coordinates."""
    c = fields.config
    device = fields.deform.grid.table.device
    y, x = torch.meshgrid(
        torch.arange(c.height, device=device, dtype=torch.float32),
        torch.arange(c.width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    xyt = fields.normalise(x.reshape(-1), y.reshape(-1), torch.full_like(x.reshape(-1), float(t)))
    out = torch.cat([fields.deform(part) for part in xyt.split(chunk)])
    return out.reshape(c.height, c.width, 2)


@torch.no_grad()
def render_fields(fields: AtlasFields, t: int, chunk: int = 1 << 16) -> torch.Tensor:
    """``C(D(·, ·, t))``: frame t rendered from the fields, ``(H, W, 3)`` float in [0, 1]."""
    uv = deform_frame(fields, t, chunk).reshape(-1, 2)
    rgb = torch.cat([fields.canonical(part) for part in uv.split(chunk)])
    c = fields.config
    return rgb.reshape(c.height, c.width, 3).clamp(0, 1)


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error on values in [0, 1]."""
    return float("inf") if mse <= 0 else float(10 * np.log10(1.0 / mse))
