"""Benchmark the memory options on ``animate``: seconds per video and peak memory of each against a
plain run in the same process.

    python benchmarks/memory_options.py                          # CUDA: full-size 512, else tiny
    python benchmarks/memory_options.py --size 1024 --json memory_options.json
    python benchmarks/memory_options.py --variants plain,compile

Variants: ``plain``, ``offload-model`` and ``offload-sequential`` (accelerate's hooks, as
``--offload``), ``vae-slicing`` (one frame per VAE decode), ``vae-tiling`` and ``compile``
(``torch.compile`` of the UNet, as ``--compile``; its first call compiles, so the timed run is the
second). Each variant gets a freshly built network (random weights: cost does not depend on weight
values) prepared the way ``load_model`` prepares a loaded one. CUDA peak memory is
``torch.cuda.max_memory_allocated``; on CPU only time is reported. Prints one JSON line per variant
with its ratios to ``plain``. Not a test: run it by hand (it is on BENCHMARKS.md's GPU list).
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
from vidforge.models.bundle import compile_denoiser, prepare_modules  # noqa: E402
from vidforge.models.dynamicrafter.load import bundle  # noqa: E402
from vidforge.models.dynamicrafter.network import build_model  # noqa: E402

VARIANTS = ("plain", "offload-model", "offload-sequential", "vae-slicing", "vae-tiling", "compile")
SIZES = {"512": (320, 512), "1024": (576, 1024), "tiny": (64, 64)}


def prepared(size: str, variant: str, device: torch.device, dtype: torch.dtype):
    """A full-size (or tiny) DynamiCrafter bundle set up as ``load_model`` does for ``variant``."""
    network = build_model(size, device if device.type == "cuda" else "cpu", dtype)
    network.schedule = {}
    model = bundle(network, size, is_tiny=size == "tiny")
    offload = variant.removeprefix("offload-") if variant.startswith("offload") else "none"
    prepare_modules(model, device, dtype, offload)
    if variant == "compile":
        compile_denoiser(model)
    return model


def measure(size: str, variant: str, args, device: torch.device, dtype: torch.dtype) -> dict:
    height, width = SIZES[size]
    options = AnimateOptions(
        prompt="the waves crash", steps=args.steps, frames=args.frames, height=height, width=width,
        device=str(device), dtype={torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32"),
        vae_slicing=variant == "vae-slicing", vae_tiling=variant == "vae-tiling", seed=0,
    )  # fmt: skip
    image = np.full((height, width, 3), 127, np.uint8)
    model = prepared(size, variant, device, dtype)
    run(image, options, model=model, steps=2)  # warm-up (and the compile of the compile variant)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run(image, options, model=model)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    row = {"variant": variant, "size": f"{height}x{width}", "frames": args.frames, "steps": args.steps,
           "seconds_per_video": round(time.perf_counter() - start, 3)}  # fmt: skip
    if device.type == "cuda":
        row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 3)
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default=None, help="512 or 1024 (CUDA), tiny (default on CPU)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (50 on CUDA, 4 on CPU)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = args.size or ("512" if device.type == "cuda" else "tiny")
    args.steps = args.steps or (50 if device.type == "cuda" else 4)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    rows, plain = [], None
    for variant in args.variants.split(","):
        row = measure(size, variant, args, device, dtype)
        if variant == "plain":
            plain = row
        elif plain is not None:
            row["time_vs_plain"] = round(row["seconds_per_video"] / plain["seconds_per_video"], 3)
            if "peak_memory_gb" in row:
                row["memory_vs_plain"] = round(row["peak_memory_gb"] / plain["peak_memory_gb"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
