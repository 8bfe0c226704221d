"""Benchmark ``vidforge animate``: seconds per video, peak memory and UNet MFU.

CUDA: full-size DynamiCrafter (random weights: cost does not depend on weight values), 16 frames,
50 DDIM steps, CFG (2 branches in one UNet batch), fp16, at 320x512 and 576x1024, for each
attention backend (sdpa, xformers when its kernels load). CPU: the ``tiny`` model at 64x64.

    python benchmarks/animate.py                         # all sizes and backends found
    python benchmarks/animate.py --sizes 512 --backends sdpa --steps 50
    python benchmarks/animate.py --json results.json

Anchors (DynamiCrafter README, A100, 50 steps): 512 -> 20 s / 12.8 GB; 1024 -> 75 s / 18.3 GB.
Target on H100: <= 0.35x the anchor time.

MFU = UNet FLOPs per step (``torch.utils.flop_counter.FlopCounterMode``, counted once with SDPA:
the FLOPs do not depend on the backend) / measured seconds per UNet step / the GPU's dense peak.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidforge.animate import AnimateOptions, run  # noqa: E402
from vidforge.core.attention import select_backend, xformers_available  # noqa: E402
from vidforge.models.dynamicrafter.network import build_model  # noqa: E402

ANCHORS_A100 = {"512": (20.0, 12.8), "1024": (75.0, 18.3)}  # seconds, GB
SIZES = {"512": (320, 512), "1024": (576, 1024), "tiny": (64, 64)}
# Dense fp16/bf16 tensor-core peaks (FLOP/s), by a substring of the device name.
PEAK_FLOPS = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "4090": 165e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def test_image(height: int, width: int) -> np.ndarray:
    """A smooth colour gradient (H, W, 3) uint8."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1).astype(
        np.uint8
    )


def unet_inputs(model, frames: int, height: int, width: int, branches: int, device, dtype):
    f = 2 ** (len(model.vae.config.block_out_channels) - 1)
    x = torch.randn(branches, 8, frames, height // f, width // f, device=device, dtype=dtype)
    t = torch.full((branches,), 500, device=device, dtype=torch.long)
    ctx_len = model.config.text_len + model.config.num_image_tokens
    context = torch.randn(branches, ctx_len, model.config.context_dim, device=device, dtype=dtype)
    fps = torch.full((branches,), model.config.default_fps, device=device, dtype=torch.long)
    return x, t, context, fps


@torch.no_grad()
def unet_flops(model, inputs) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    select_backend("sdpa", inputs[0].device)
    with FlopCounterMode(display=False) as counter:
        model.denoise(*inputs)
    return counter.get_total_flops()


@torch.no_grad()
def unet_step_seconds(model, inputs, device, repeats: int) -> float:
    model.denoise(*inputs)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        model.denoise(*inputs)
    sync(device)
    return (time.perf_counter() - start) / repeats


def bench_one(model, size: str, backend: str, args, device, dtype) -> dict:
    height, width = SIZES[size]
    select_backend(backend, device)
    options = AnimateOptions(
        prompt="the waves crash",
        steps=args.steps,
        frames=args.frames,
        height=height,
        width=width,
        device=str(device),
        dtype={torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32"),
        attention=backend,
        seed=0,
    )
    image = test_image(height, width)
    run(image, options, model=model, steps=2)  # warm-up: kernels, cuDNN autotune, allocator
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    result = run(image, options, model=model)
    sync(device)
    seconds = time.perf_counter() - start
    row = {
        "size": f"{height}x{width}",
        "model": size,
        "backend": result.info["attention"],
        "frames": args.frames,
        "steps": args.steps,
        "dtype": str(dtype).removeprefix("torch."),
        "seconds_per_video": round(seconds, 2),
    }
    if device.type == "cuda":
        row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
        row["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved(device) / 1e9, 2)
    # UNet alone: FLOPs per step (2 CFG branches in one batch) and measured step time.
    inputs = unet_inputs(model, args.frames, height, width, 2, device, dtype)
    flops = unet_flops(model, inputs)
    select_backend(backend, device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        step = unet_step_seconds(model, inputs, device, args.unet_repeats)
    row["unet_tflop_per_step"] = sig(flops / 1e12)
    row["unet_seconds_per_step"] = round(step, 4)
    row["unet_share_of_video"] = round(step * args.steps / seconds, 3)
    peak = peak_flops(device)
    row["achieved_tflops"] = sig(flops / step / 1e12)
    if peak:
        row["mfu"] = round(flops / step / peak, 3)
    if size in ANCHORS_A100:
        anchor_s, anchor_gb = ANCHORS_A100[size]
        row["vs_a100_anchor"] = round(seconds / anchor_s, 3)
        row["anchor"] = f"{anchor_s:.0f} s / {anchor_gb} GB (A100)"
    return row


def count_flops(args) -> list[dict]:
    """FLOPs of one CFG step (2 branches) of the full-size UNet, on meta tensors (any machine)."""
    model = build_model("512", "meta")
    rows = []
    for size in args.sizes.split(",") if args.sizes else ["512", "1024"]:
        height, width = SIZES[size]
        inputs = unet_inputs(model, args.frames, height, width, 2, torch.device("meta"), torch.float32)
        flops = unet_flops(model, inputs)
        steps = args.steps or 50
        row = {"size": f"{height}x{width}", "frames": args.frames, "unet_tflop_per_step": sig(flops / 1e12)}
        row[f"unet_tflop_per_video_{steps}_steps"] = sig(flops * steps / 1e12)
        if size in ANCHORS_A100:  # throughput the anchor implies, and what the H100 target needs
            anchor_s = ANCHORS_A100[size][0]
            row["a100_anchor_tflops"] = sig(flops * steps / anchor_s / 1e12)
            row["h100_target_tflops"] = sig(flops * steps / (0.35 * anchor_s) / 1e12)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", default=None, help="comma list of 512,1024 (CUDA) or tiny (CPU)")
    parser.add_argument("--backends", default=None, help="comma list of sdpa,xformers")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (50 on CUDA, 4 on CPU)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--unet-repeats", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    parser.add_argument(
        "--count-flops",
        action="store_true",
        help="only count full-size UNet FLOPs per step (meta tensors, no GPU)",
    )
    args = parser.parse_args(argv)
    if args.count_flops:
        return count_flops(args)

    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.float16 if cuda else torch.float32
    sizes = args.sizes.split(",") if args.sizes else (["512", "1024"] if cuda else ["tiny"])
    if args.backends:
        backends = args.backends.split(",")
    else:
        backends = ["sdpa"] + (["xformers"] if xformers_available(device.type) else [])
    args.steps = args.steps or (50 if cuda else 4)
    args.unet_repeats = args.unet_repeats or (10 if cuda else 2)
    print(
        f"device: {torch.cuda.get_device_name(device) if cuda else 'cpu'}, torch {torch.__version__}",
        flush=True,
    )

    rows = []
    for size in sizes:
        model = build_model(size, device, dtype)
        for backend in backends:
            row = bench_one(model, size, backend, args, device, dtype)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
