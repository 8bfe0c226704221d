"""Optical flow, warping and occlusion masks, shared by ``stylize`` and ``evaluate``.

Flow ``w_ab`` is defined on frame a's pixel grid: pixel x of frame a is at ``x + w_ab(x)`` in frame
b, so ``warp(b, w_ab)`` aligns b onto a. Arrays are ``(H, W, 2)`` float32 in pixels (dx, dy).
"""

from __future__ import annotations

import functools

import numpy as np

MIN_FLOW_SIDE = 12  # DIS (medium preset) fails an OpenCV assertion on smaller frames


def _dis():
    """A fresh OpenCV DIS object for every pair (about 10 µs): a reused one is not thread-safe, and
    its buffers carry over from a pair of another size, which changes the next flow (measured: up
    to 0.15 px), so the same video would get different flows depending on what ran before."""
    import cv2

    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


def compute_flow(frame_a: np.ndarray, frame_b: np.ndarray, method: str = "dis") -> np.ndarray:
    """Flow from uint8 RGB frame a to frame b (OpenCV DIS, ``medium`` preset: no weights; or
    ``raft``: torchvision RAFT-large, only when its weights are already in the torch hub cache)."""
    if method == "raft":
        return raft_flows(frame_a[None], frame_b[None])[0]
    if method != "dis":
        raise ValueError(f"unknown flow method {method!r}")
    if min(frame_a.shape[:2]) < MIN_FLOW_SIDE:
        from vidforge.errors import VidforgeError

        h, w = frame_a.shape[:2]
        raise VidforgeError(
            f"optical flow needs frames of at least {MIN_FLOW_SIDE}x{MIN_FLOW_SIDE} pixels (got {w}x{h}); "
            "resize the video up first (--resize)"
        )
    return _dis().calc(_gray(frame_a), _gray(frame_b), None)


# ------------------------------------------------------------------------------------- RAFT (optional)

RAFT_BATCH = 8  # frame pairs per RAFT call


def raft_weights_path():
    """Where torchvision keeps RAFT-large (``C_T_SKHT_V2``) weights: the torch hub checkpoint cache."""
    from pathlib import Path

    import torch
    from torchvision.models.optical_flow import Raft_Large_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Raft_Large_Weights.DEFAULT.url.rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=1)
def _raft():
    """RAFT-large on CUDA when present, else CPU. Never downloads: a missing file is a VidforgeError."""
    import torch
    from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

    from vidforge.errors import VidforgeError

    path = raft_weights_path()
    if not path.exists():
        raise VidforgeError(
            f"--flow raft: RAFT-large weights are not in the torch hub cache ({path}); download "
            f"{Raft_Large_Weights.DEFAULT.url} there on a connected machine, or use --flow dis"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return raft_large(weights=Raft_Large_Weights.DEFAULT, progress=False).eval().to(device)


def raft_flows(frames_a: np.ndarray, frames_b: np.ndarray, model=None) -> np.ndarray:
    """RAFT flow for each pair of ``(B, H, W, 3)`` uint8 frames -> ``(B, H, W, 2)`` float32.

    Frames are scaled to [-1, 1] (torchvision's RAFT preset) and edge-padded to multiples of 8, and
    to at least 128 pixels (RAFT's correlation pyramid needs 16x16 feature maps)."""
    import torch
    import torch.nn.functional as F

    model = model if model is not None else _raft()
    device = next(model.parameters()).device
    h, w = frames_a.shape[1:3]
    pad = (0, max((-w) % 8, 128 - w), 0, max((-h) % 8, 128 - h))
    out = []
    with torch.no_grad():
        for i in range(0, len(frames_a), RAFT_BATCH):
            a, b = (
                F.pad(torch.from_numpy(np.ascontiguousarray(x[i : i + RAFT_BATCH])).to(device)
                      .permute(0, 3, 1, 2).float() / 127.5 - 1.0, pad, mode="replicate")
                for x in (frames_a, frames_b)
            )  # fmt: skip
            flow = model(a, b)[-1][:, :, :h, :w]
            out.append(flow.permute(0, 2, 3, 1).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warp: ``out(x) = image(x + flow(x))``, bilinear, edges replicated."""
    import cv2

    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def compose_flows(flow_ab: np.ndarray, flow_bc: np.ndarray) -> np.ndarray:
    """Flow from frame a to frame c through b, on a's grid: ``w_ac(x) = w_ab(x) + w_bc(x + w_ab(x))``
    (bilinear, edges replicated). Chains consecutive-frame flows across an interval."""
    return flow_ab + warp(flow_bc, flow_ab)


def _sq_mag(flow: np.ndarray) -> np.ndarray:
    return flow[..., 0] ** 2 + flow[..., 1] ** 2


def occlusion_mask(flow_ab: np.ndarray, flow_ba: np.ndarray, motion_boundary: bool = False) -> np.ndarray:
    """Boolean ``(H, W)``: pixels of frame a that are occluded (or unreliable) in frame b.

    Forward-backward test (Sundaram et al. 2010, as in Lai et al. 2018):
    ``|w_ab + ŵ_ba|² > 0.01 (|w_ab|² + |ŵ_ba|²) + 0.5`` with ``ŵ_ba(x) = w_ba(x + w_ab(x))``.
    ``motion_boundary`` adds ``|∇w|² > 0.01 |w|² + 0.002`` on the flow defined on frame a's grid
    (forward differences), as Lai et al.'s evaluation code does.
    """
    flow_ba_w = warp(flow_ba, flow_ab)
    occluded = _sq_mag(flow_ab + flow_ba_w) > 0.01 * (_sq_mag(flow_ab) + _sq_mag(flow_ba_w)) + 0.5
    if motion_boundary:
        du = np.zeros_like(flow_ab)
        dv = np.zeros_like(flow_ab)
        du[:, :-1] = flow_ab[:, 1:] - flow_ab[:, :-1]
        dv[:-1, :] = flow_ab[1:, :] - flow_ab[:-1, :]
        grad_sq = (du**2).sum(-1) + (dv**2).sum(-1)
        occluded |= grad_sq > 0.01 * _sq_mag(flow_ab) + 0.002
    return occluded


def video_flows(frames: np.ndarray, method: str = "dis", progress=None):
    """Forward and backward flow for each consecutive pair of ``(F, H, W, 3)`` frames.

    Returns ``(forward, backward)`` arrays of shape ``(F-1, H, W, 2)``: ``forward[t]`` maps frame t
    to t+1, ``backward[t]`` maps frame t+1 to t. Each pair is computed once and can be shared.
    """
    if method == "raft" and len(frames) > 1:
        return raft_flows(frames[:-1], frames[1:]), raft_flows(frames[1:], frames[:-1])
    pairs = range(len(frames) - 1)
    if progress is not None:
        pairs = progress.track(pairs, "optical flow", total=len(frames) - 1)
    forward, backward = [], []
    for t in pairs:
        forward.append(compute_flow(frames[t], frames[t + 1], method))
        backward.append(compute_flow(frames[t + 1], frames[t], method))
    if not forward:
        empty = np.zeros((0, *frames.shape[1:3], 2), np.float32)
        return empty, empty
    return np.stack(forward), np.stack(backward)
