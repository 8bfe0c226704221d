"""Benchmark ``vidforge evaluate``: frames per second of ``warp-error`` (flows included) and of the
CLIP embedding pass.

    .venv/bin/python benchmarks/evaluate.py                 # DIS at 512x512 on CPU (target >= 10 fps)
    .venv/bin/python benchmarks/evaluate.py --frames 17 --size 256

On CUDA it also times RAFT-large (random weights unless torchvision's are cached: the compute cost
does not depend on the weight values) and CLIP ViT-L-14 at full size; on CPU the CLIP pass uses the
``tiny`` model. Prints one JSON line per measurement. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidforge.core.progress import Bars  # noqa: E402
from vidforge.evaluate import clip_metrics, metrics  # noqa: E402
from vidforge.evaluate.pipeline import FlowCache  # noqa: E402


def sliding_video(num_frames: int, size: int, shift=(3, 1), seed=0) -> np.ndarray:
    """A smooth random texture seen through a window moving by ``shift`` pixels per frame."""
    import cv2

    dx, dy = shift
    rng = np.random.default_rng(seed)
    h, w = size + num_frames * dy + 8, size + num_frames * dx + 8
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    base = cv2.resize(base, (base.shape[1] * 8, base.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    return np.stack([base[t * dy : t * dy + size, t * dx : t * dx + size] for t in range(num_frames)])


def report(**fields) -> None:
    print(json.dumps(fields), flush=True)


def time_warp_error(frames: np.ndarray, method: str, variant: str, workers: int | None = None) -> None:
    """End to end as ``evaluate`` runs it: forward + backward flow per pair (computed in chunks,
    threaded for DIS), occlusion masks, warped error."""
    output = np.round(frames * np.array([1.0, 0.9])[np.arange(len(frames)) % 2, None, None, None])
    output = output.astype(np.uint8)
    cache = FlowCache(frames, method, Bars(), workers=workers)
    start, cpu_start = time.perf_counter(), time.process_time()
    if variant == "lai":
        value, _ = metrics.warp_error(output, cache.consecutive())
    else:
        short, long = metrics.dvp_pairs(len(frames))
        value, _ = metrics.warp_error_dvp(output, cache.pairs(short), cache.pairs(long))
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    report(
        metric=f"warp-error ({variant})",
        flow=method,
        size=f"{frames.shape[2]}x{frames.shape[1]}",
        frames=len(frames),
        seconds=round(total, 3),
        fps=round(len(frames) / total, 2),
        cpu_seconds=round(cpu, 3),  # all threads; on a shared machine wall time depends on the load
        value=round(value, 6),
        flow_threads=cache.workers if method == "dis" else None,
        cpu_count=os.cpu_count(),
        device="cuda" if method == "raft" and torch.cuda.is_available() else "cpu",
    )


def time_clip(frames: np.ndarray, device: str) -> None:
    from vidforge.models.clip import ClipModel, load_clip

    if device == "cuda":
        import open_clip

        model = open_clip.create_model("ViT-L-14", pretrained=None, device=device).eval().half()
        clip = ClipModel(model, "ViT-L-14 (random weights)", image_size=224)
    else:
        clip = load_clip("tiny", device)
    clip_metrics.embed_frames(clip, frames[:2])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    clip_metrics.embed_frames(clip, frames)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    report(metric="clip embeddings", model=clip.name, frames=len(frames), fps=round(len(frames) / seconds, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--skip-clip", action="store_true")
    args = parser.parse_args()
    frames = sliding_video(args.frames, args.size)
    time_warp_error(frames, "dis", "lai", workers=1)
    time_warp_error(frames, "dis", "lai")
    time_warp_error(frames[: max(3, args.frames // 3)], "dis", "dvp")
    if torch.cuda.is_available():
        from vidforge.core import flow

        if not flow.raft_weights_path().exists():  # timing only: random weights cost the same
            from torchvision.models.optical_flow import raft_large

            model = raft_large(weights=None).eval().cuda()
            flow._raft = lambda: model
        time_warp_error(frames, "raft", "lai")
    if not args.skip_clip:
        time_clip(frames, "cuda" if torch.cuda.is_available() else "cpu")


if __name__ == "__main__":
    main()
