"""Weight-free video metrics: pure functions over frames and optical flows (SPEC section 4).

Frames are ``(F, H, W, 3)`` uint8 RGB. Flows follow ``vidforge.core.flow``: ``w_ab`` is ``(H, W, 2)``
on frame a's grid and ``warp(b, w_ab)`` aligns frame b onto frame a. Every function returns
``(value, per_frame)`` so that the report can draw where in the video a score comes from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vidforge.core.flow import occlusion_mask, warp

# (w_ab, w_ba): forward and backward flow of one frame pair, each (H, W, 2)
FlowPair = tuple[np.ndarray, np.ndarray]


def to_unit(frame: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> float32 in [0, 1]."""
    return frame.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------- warp error


def valid_mask(flow_ab: np.ndarray, flow_ba: np.ndarray) -> np.ndarray:
    """Non-occluded pixels of frame a, ``(H, W)`` bool: the complement of Lai et al.'s occlusion mask
    (forward-backward test OR motion boundary), as in their ``evaluate_WarpError.py``."""
    return ~occlusion_mask(flow_ab, flow_ba, motion_boundary=True)


def warp_error_pair(
    out_a: np.ndarray, out_b: np.ndarray, flow_ab: np.ndarray, mask: np.ndarray, norm: str = "l2"
) -> float:
    """``E = Σ M·|warp(O_b, w_ab) - O_a|^p / Σ M`` per pixel-channel, RGB in [0, 1].

    ``out_a``, ``out_b``: uint8 ``(H, W, 3)``; ``mask``: ``(H, W)`` bool (True = use the pixel);
    ``norm``: ``"l2"`` (squared error, Lai et al. 2018) or ``"l1"`` (Lei et al. 2020).
    An all-occluded pair scores 0, as in Lai et al.'s code (the masked difference is all zero).
    """
    count = float(mask.sum()) * out_a.shape[-1]
    if count == 0:
        return 0.0
    diff = warp(to_unit(out_b), flow_ab)
    diff -= to_unit(out_a)
    diff *= mask[..., None]
    flat = diff.ravel()
    total = np.dot(flat, flat) if norm == "l2" else np.abs(flat).sum()  # dot: one pass, no temporaries
    return float(total / count)


def warp_error(frames: np.ndarray, flows: Iterable[FlowPair]) -> tuple[float, list[float]]:
    """Lai et al. 2018 warping error: mean over the F-1 pairs (t, t+1) of the masked MSE between
    ``O_t`` and ``warp(O_{t+1}, w_{t→t+1})``.

    ``flows`` yields ``(w_{t→t+1}, w_{t+1→t})`` for t = 0..F-2, in order, from the video that defines
    the motion (the source video when there is one). Returns the mean and the F-1 per-pair errors."""
    per_pair = []
    for t, (w_ab, w_ba) in enumerate(flows):
        per_pair.append(warp_error_pair(frames[t], frames[t + 1], w_ab, valid_mask(w_ab, w_ba), "l2"))
    return float(np.mean(per_pair)), per_pair


def dvp_pairs(num_frames: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The short-term ``(t, t-1)`` and long-term ``(t, 0)`` pairs of :func:`warp_error_dvp`."""
    return [(t, t - 1) for t in range(1, num_frames)], [(t, 0) for t in range(1, num_frames)]


def warp_error_dvp(
    frames: np.ndarray, short_flows: Iterable[FlowPair], long_flows: Iterable[FlowPair]
) -> tuple[float, list[float]]:
    """Deep Video Prior variant (Lei et al. 2020): L1 norm, short + long term,
    ``E_t = E_pair(O_t, O_{t-1}) + E_pair(O_t, O_0)`` averaged over t = 1..F-1 (for t = 1 both terms
    are the same pair). ``short_flows`` / ``long_flows`` yield ``(w_ab, w_ba)`` for the pairs of
    :func:`dvp_pairs`, in order. Returns the mean and the F-1 per-frame values."""
    per_frame = []
    for t, pairs in enumerate(zip(short_flows, long_flows, strict=True), start=1):
        total = 0.0
        for b, (w_ab, w_ba) in zip((t - 1, 0), pairs, strict=True):
            total += warp_error_pair(frames[t], frames[b], w_ab, valid_mask(w_ab, w_ba), "l1")
        per_frame.append(total)
    return float(np.mean(per_frame)), per_frame


# -------------------------------------------------------------------------------------- flicker, motion


def flicker(frames: np.ndarray) -> tuple[float, list[float]]:
    """VBench temporal flickering: ``(255 - mean|f_t - f_{t+1}|) / 255`` per consecutive pair
    (mean over pixels and channels of uint8 frames), averaged. 1.0 = no change at all; 0.0 =
    every pixel jumps between 0 and 255."""
    per_pair = []
    for t in range(len(frames) - 1):
        mae = np.abs(frames[t].astype(np.float32) - frames[t + 1].astype(np.float32)).mean()
        per_pair.append(float((255.0 - mae) / 255.0))
    return float(np.mean(per_pair)), per_pair


def flow_magnitude(flow: np.ndarray) -> float:
    """``mean_x |w(x)|`` in pixels of one ``(H, W, 2)`` flow."""
    return float(np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).mean())


def motion(magnitudes: Iterable[float]) -> tuple[float, list[float]]:
    """Mean optical-flow magnitude in pixels per frame: the mean over pairs (t, t+1) of
    :func:`flow_magnitude` of ``w_{t→t+1}`` (a weight-free stand-in for VBench's dynamic degree)."""
    per_pair = [float(m) for m in magnitudes]
    return float(np.mean(per_pair)), per_pair


# ------------------------------------------------------------------------------------------ repetition

REPETITION_SIZE = 32  # frames are compared as 32x32 RGB thumbnails (robust to noise, cheap for long videos)
REPETITION_EPS = 1e-3  # in units of mean absolute difference on [0, 1]: a static video scores 0


def frame_distances(frames: np.ndarray, size: int = REPETITION_SIZE) -> np.ndarray:
    """``D[i, j]`` = mean absolute difference between 32x32 thumbnails of frames i and j, in [0, 1];
    ``(F, F)`` symmetric with a zero diagonal."""
    import cv2
    import torch

    thumbs = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    x = torch.from_numpy(thumbs.reshape(len(frames), -1).astype(np.float32) / 255.0)
    return (torch.cdist(x, x, p=1) / x.shape[1]).numpy()


def repetition(frames: np.ndarray) -> tuple[float, list[float], int | None]:
    """Frame self-similarity at lag > 1: does the video come back to where it has already been?

    For each frame t, with ``D`` from :func:`frame_distances`:

    * ``δ_t`` = mean distance to its temporal neighbours t-1, t+1 (how much one step of motion
      changes the picture);
    * ``ρ_t = min_{|s-t| ≥ 2} D[t, s]`` (the closest frame that is not a neighbour);
    * ``r_t = clip(1 - (ρ_t + ε) / (δ_t + ε), 0, 1)`` with ε = 1e-3.

    ``repetition = mean_t r_t`` in [0, 1], over the frames that have a frame at lag ≥ 2 (the
    middle frame of a 3-frame video has none: its ``r_t`` is NaN). Constant motion moves further away with every step
    (``ρ_t ≥ δ_t``), so it scores ~0; a loop or a ping-pong (frame t+L ≈ frame t, or a mirrored
    clip where frame c+d ≈ frame c-d) returns to a frame much closer than one step of motion, so it
    scores close to 1. A static video scores 0 (ε dominates: nothing moves, nothing repeats).
    Also returns the typical lag, the median ``|s* - t|`` over repeating frames (``r_t > 0.5``),
    which is the loop period for a loop. Needs F >= 3.
    """
    num = len(frames)
    dist = frame_distances(frames)
    scores, lags = [], []
    for t in range(num):
        neighbours = [dist[t, s] for s in (t - 1, t + 1) if 0 <= s < num]
        far = [s for s in range(num) if abs(s - t) >= 2]
        if not far:
            scores.append(float("nan"))
            continue
        delta = float(np.mean(neighbours))
        s_best = min(far, key=lambda s: dist[t, s])
        r = float(np.clip(1.0 - (dist[t, s_best] + REPETITION_EPS) / (delta + REPETITION_EPS), 0.0, 1.0))
        scores.append(r)
        if r > 0.5:
            lags.append(abs(s_best - t))
    lag = int(np.median(lags)) if lags else None
    return float(np.nanmean(scores)), scores, lag


# ---------------------------------------------------------------------------------------------- seams

SEAM_WINDOW = 4  # a pair's neighbourhood: the pairs up to 4 either side (8 inside the video)
SEAM_EPS = 1e-3  # in mean absolute difference on [0, 1]: a static stretch scores 1, not 0/0


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """``c_t = mean |f_t - f_{t+1}|`` over pixels and channels, RGB in [0, 1]: ``(F-1,)`` float64."""
    changes = np.empty(len(frames) - 1)
    for t in range(len(frames) - 1):
        changes[t] = np.abs(to_unit(frames[t]) - to_unit(frames[t + 1])).mean()
    return changes


def seam_ratios(changes: np.ndarray, window: int = SEAM_WINDOW) -> np.ndarray:
    """``r_t = (c_t + ε) / (median{c_s : 1 <= |s - t| <= window} + ε)``: how much pair t changes
    relative to the pairs around it (``(P,)`` for ``P >= 2`` pair changes). Steady motion of any speed
    scores about 1; a cut, a jump back or a jump ahead is a lone spike. Needs at least 2 pairs."""
    num = len(changes)
    ratios = np.empty(num)
    for t in range(num):
        around = [changes[s] for s in range(max(0, t - window), min(num, t + window + 1)) if s != t]
        ratios[t] = (changes[t] + SEAM_EPS) / (float(np.median(around)) + SEAM_EPS)
    return ratios


def seams(
    frames: np.ndarray, threshold: float, window: int = SEAM_WINDOW
) -> tuple[float, list[float], list[int]]:
    """Temporal discontinuities: ``(worst ratio, per-pair ratios, seams)`` with :func:`seam_ratios`
    over :func:`frame_changes`; ``seams`` lists the pairs ``t`` (between frames t and t+1) whose ratio
    exceeds ``threshold``. Needs F >= 3."""
    ratios = seam_ratios(frame_changes(frames), window)
    found = [int(t) for t in np.flatnonzero(ratios > threshold)]
    return float(ratios.max()), [float(r) for r in ratios], found
