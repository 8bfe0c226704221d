"""Temporal consistency of Style-A-Video (SPEC 1), training-free.

Optical flow is computed once on the INPUT video (:mod:`vidforge.core.flow`, shared with
``evaluate``). For frame t, ``flow[t]`` maps frame t's pixels into frame t-1 (``w_{t→t-1}``), so
``warp(out_{t-1}, flow[t])`` aligns the previous output onto frame t; ``valid[t]`` is 1 where the
forward-backward test says the pixel is visible in both frames.

1. Latent fusion (during a window of denoising steps): ``x0_t ← x0_t + s·V·(warp(x0_{t-1}) - x0_t)``
   with the flow and validity downsampled ×8 to the latent grid.
2. Pixel fusion (after decoding): ``out_t ← out_t + d·V·(warp(out_{t-1}) - out_t)``, i.e.
   ``M·warp(out_{t-1}) + (1-M)·out_t`` with ``M = d·V``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vidforge.core.flow import occlusion_mask, video_flows, warp


@dataclass
class FrameFlows:
    """Backward flow ``(n, H, W, 2)`` (frame t -> t-1) and validity ``(n, H, W)`` float in {0, 1}
    for the frames ``indices`` (one chunk, so memory stays bounded in video length). Frame 0 has
    zero flow and zero validity: nothing to fuse with."""

    indices: list[int]
    flow: np.ndarray
    valid: np.ndarray

    def latent(self, k: int, latent_size: tuple[int, int], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow ``(h, w, 2)`` in latent pixels and validity ``(1, h, w)`` of the chunk's k-th frame."""
        flow = downsample_flow(torch.from_numpy(self.flow[k]), latent_size)
        valid = torch.from_numpy(self.valid[k])[None, None]
        valid = F.interpolate(valid, size=latent_size, mode="area")[0]
        return flow.to(device), valid.to(device)


def input_flows(frames: np.ndarray, indices: list[int] | None = None, method: str = "dis") -> FrameFlows:
    """Flows and occlusion of ``(F, H, W, 3)`` uint8 input frames ``indices`` (default: all)
    to their previous frame (see the module docstring)."""
    indices = list(range(len(frames))) if indices is None else list(indices)
    pairs = [(frames[t - 1] if t > 0 else None, frames[t]) for t in indices]
    return _pair_flows(indices, pairs, frames.shape[1:3], method)


def chunk_flows(
    chunk: np.ndarray, start: int, previous: np.ndarray | None, method: str = "dis"
) -> FrameFlows:
    """:func:`input_flows` of one streamed chunk: ``chunk`` ``(f, H, W, 3)`` holds the input frames
    ``start .. start+f-1`` and ``previous`` ``(H, W, 3)`` is frame ``start-1`` (None when start = 0),
    so the whole video never has to be in memory."""
    if start > 0 and previous is None:
        raise ValueError(
            "chunk_flows needs the previous input frame for a chunk that does not start the video"
        )
    indices = list(range(start, start + len(chunk)))
    pairs = [(chunk[k - 1] if k > 0 else previous, chunk[k]) for k in range(len(chunk))]
    return _pair_flows(indices, pairs, chunk.shape[1:3], method)


def _pair_flows(indices: list[int], pairs: list, size: tuple[int, int], method: str) -> FrameFlows:
    """Backward flow and validity for each ``(previous, current)`` pair (previous None: frame 0)."""
    height, width = size
    flow = np.zeros((len(indices), height, width, 2), np.float32)
    valid = np.zeros((len(indices), height, width), np.float32)
    for k, (before, current) in enumerate(pairs):
        if before is None:
            continue
        forward, backward = video_flows(np.stack([before, current]), method)
        flow[k] = backward[0]  # frame t -> frame t-1
        valid[k] = ~occlusion_mask(backward[0], forward[0])
    return FrameFlows(indices, flow, valid)


def downsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel flow ``(H, W, 2)`` -> latent flow ``(h, w, 2)``: area-averaged, vectors scaled by the
    actual size ratio per axis (1/8 for a VAE)."""
    height, width = flow.shape[:2]
    small = F.interpolate(flow.permute(2, 0, 1)[None].float(), size=size, mode="area")[0].permute(1, 2, 0)
    scale = torch.tensor([size[1] / width, size[0] / height], dtype=small.dtype)
    return small * scale


def warp_tensor(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp ``out(x) = image(x + flow(x))`` of ``(C, h, w)`` by ``(h, w, 2)`` pixel flow,
    bilinear, border replicated (the torch twin of :func:`vidforge.core.flow.warp`)."""
    _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=flow.device, dtype=torch.float32),
        torch.arange(w, device=flow.device, dtype=torch.float32),
        indexing="ij",
    )
    x = xs + flow[..., 0].float()
    y = ys + flow[..., 1].float()
    # align_corners=True: -1 and 1 are the centres of the corner pixels
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)[None]
    out = F.grid_sample(image[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].to(image.dtype)


def fuse_latent(
    x0: torch.Tensor, x0_prev: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor, strength: float
) -> torch.Tensor:
    """Latent fusion of one frame: ``x0 + strength·V·(warp(x0_prev, flow) - x0)``.

    ``x0``, ``x0_prev`` ``(C, h, w)``; ``flow`` ``(h, w, 2)`` latent pixels; ``valid`` ``(1, h, w)``.
    """
    weight = (strength * valid).to(x0.dtype)
    return x0 + weight * (warp_tensor(x0_prev, flow) - x0)


def fuse_pixels(out: np.ndarray, out_prev: np.ndarray, flow: np.ndarray, valid: np.ndarray, strength: float):
    """Pixel fusion of one decoded frame: ``out + strength·V·(warp(out_prev, flow) - out)``.

    ``out``, ``out_prev`` ``(H, W, 3)`` uint8; ``flow`` ``(H, W, 2)``; ``valid`` ``(H, W)``. Returns uint8.
    """
    warped = warp(out_prev.astype(np.float32), flow)
    weight = (strength * valid)[..., None]
    fused = out.astype(np.float32) + weight * (warped - out.astype(np.float32))
    return np.clip(np.rint(fused), 0, 255).astype(np.uint8)


def fuse_window_steps(num_steps: int, window: tuple[float, float]) -> range:
    """Step indices ``i`` with ``start ≤ i / num_steps < end`` (``0:0.5`` of 30 steps -> 0..14)."""
    start, end = window
    return range(int(np.ceil(start * num_steps - 1e-9)), int(np.ceil(end * num_steps - 1e-9)))
