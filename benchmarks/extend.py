"""Benchmark ``vidforge extend``: wall time and peak memory versus ``--frames``, per method.

Reuse-and-Diffuse generates clip by clip and FIFO-Diffusion frame by frame from a fixed-size queue,
so time should grow linearly in the number of frames and peak memory should stay flat for both.
On CUDA this times the full-size ModelScope architecture
(``UNet3DConditionModel`` 1.7B + SD VAE + 1024-d CLIP text encoder, random weights: compute does
not depend on weight values) at 256x256, N = 16, and compares with diffusers'
``TextToVideoSDPipeline`` generating the same number of frames in one shot (until it runs out of
memory). On CPU it runs the ``tiny`` preset. Each measurement runs in a fresh subprocess so peak
memory (CUDA ``max_memory_allocated``, or the process's max RSS on CPU) is per configuration.

    python benchmarks/extend.py                      # auto: full on CUDA, tiny on CPU
    python benchmarks/extend.py --frames 32 64 --steps 10 --no-baseline
    python benchmarks/extend.py --methods fifo --no-baseline   # FIFO only (n·N levels; --steps unused)
    python benchmarks/extend.py --pingpong           # ping-pong vs α (mirror correlation)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# ------------------------------------------------------------------------------------------ models


def build_model(size: str, device: torch.device, dtype: torch.dtype):
    """``full``: the ModelScope T2V architecture with random weights; ``tiny``: the tiny preset."""
    from vidforge.models import load_model
    from vidforge.models.bundle import ModelBundle
    from vidforge.sampling.schedules import SD_SCHEDULE, diffusers_noise_schedule

    if size == "tiny":
        return load_model("tiny", "extend", device, dtype)
    from diffusers import UNet3DConditionModel
    from full_size import sd_vae
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidforge.models.text import OpenClipTokenizer

    with torch.device(device):
        unet = UNet3DConditionModel(sample_size=32)  # diffusers defaults = text-to-video-ms-1.7b
        vae = sd_vae(sample_size=256)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=1024,
                intermediate_size=4096,
                num_hidden_layers=23,
                num_attention_heads=16,
                projection_dim=512,
                hidden_act="gelu",
            )
        )
    for module in (unet, vae, text_encoder):
        module.to(dtype=dtype).eval().requires_grad_(False)
    noise = diffusers_noise_schedule(dict(SD_SCHEDULE, prediction_type="epsilon"))
    return ModelBundle(
        "modelscope-random",
        "text-to-video",
        unet,
        vae,
        text_encoder,
        OpenClipTokenizer(),
        noise,
        16,
        256,
        256,
    )


def peak_memory(device: torch.device) -> float:
    """GiB: CUDA peak allocated, or this process's max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# --------------------------------------------------------------------------------- one measurement


def measure_one(method: str, frames: int, size: str, steps: int) -> dict:
    """Run one configuration in this process and return its numbers. ``method``: ``reuse`` or
    ``fifo`` (``vidforge extend --method``; FIFO with the authors' defaults, n = 4 and lookahead,
    so n·N DDIM levels whatever ``steps``), or ``one-shot`` (diffusers' pipeline)."""
    from vidforge.core.device import select_device, select_dtype
    from vidforge.extend import ExtendOptions, run

    device = select_device("auto")
    dtype = select_dtype(device, "auto")
    if size == "tiny":
        torch.set_num_threads(1)
    model = build_model(size, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
        weights = torch.cuda.memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    else:
        weights = None
    start = time.perf_counter()
    if method in ("reuse", "fifo"):
        with tempfile.TemporaryDirectory() as tmp:
            options = ExtendOptions(
                prompt="a river through a forest", method=method, frames=frames, steps=steps, model=size
            )
            result = run(options, output=Path(tmp) / "out.mp4", model=model)
        info = {"clips": result.info.get("clips", result.info.get("chunks")), "steps": result.info["steps"],
                "state_bytes": result.info["state_bytes"]}  # fmt: skip
    else:
        info = one_shot(model, frames, steps, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"method": method, "frames": frames, "seconds": seconds, "seconds_per_frame": seconds / frames,
            "peak_gib": peak_memory(device), "weights_gib": weights, "device": str(device), **info}  # fmt: skip


def one_shot(model, frames: int, steps: int, device, dtype) -> dict:
    """diffusers ``TextToVideoSDPipeline`` generating all ``frames`` at once (same steps, CFG 10)."""
    from diffusers import DDIMScheduler, TextToVideoSDPipeline

    pipe = TextToVideoSDPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=None,
        unet=model.unet,
        scheduler=DDIMScheduler.from_config(model.noise_schedule.diffusers_config),
    )
    pipe.set_progress_bar_config(disable=True)
    embeds = model.encode_prompts(["a river through a forest", "watermark"])
    video = pipe(
        prompt_embeds=embeds[:1],
        negative_prompt_embeds=embeds[1:],
        num_frames=frames,
        height=model.height,
        width=model.width,
        num_inference_steps=steps,
        guidance_scale=10.0,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).frames
    return {"clips": 1, "output_frames": int(np.asarray(video).shape[1])}


def measure(method: str, frames: int, size: str, steps: int, timeout: int) -> dict:
    """Run :func:`measure_one` in a fresh subprocess (clean peak memory); OOM/timeout recorded."""
    cmd = [sys.executable, __file__, "--one", method, str(frames), "--size", size, "--steps", str(steps)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return {"method": method, "frames": frames, "error": f"timeout after {timeout} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        error = "out of memory" if "out of memory" in proc.stderr.lower() else tail[:200]
        return {"method": method, "frames": frames, "error": error}
    return json.loads(lines[-1])


def linear_fit(xs, ys) -> dict:
    """Least squares ``y = a + b·x`` with R²."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    b, a = np.polyfit(x, y, 1)
    residual = y - (a + b * x)
    r2 = 1 - residual.var() / y.var() if y.var() > 0 else 1.0
    return {"intercept_s": a, "slope_s_per_frame": b, "r2": r2}


# ----------------------------------------------------------------------------------------- ping-pong


def pingpong(alphas, size: str, steps: int, clips: int = 4) -> list[dict]:
    """How much clip k mirrors clip k-1, versus α: the mean correlation between clip k's new frames
    (j ≥ M) and clip k-1's frames N-1-j, in the initial noise (theory α/√(1+α²)) and in the final
    latents. Near 1 means clip k ≈ reversed clip k-1, i.e. a ping-pong video."""
    from vidforge.core.device import make_generator, select_device, select_dtype
    from vidforge.extend import sample_reuse_and_diffuse
    from vidforge.models.text_to_video import unet_model
    from vidforge.sampling.denoisers import Denoiser
    from vidforge.sampling.guidance import BatchedGuidance, cfg_combine
    from vidforge.sampling.schedules import ddim_schedule

    device = select_device("auto")
    dtype = select_dtype(device, "auto")
    if size == "tiny":
        torch.set_num_threads(1)
    model = build_model(size, device, dtype)
    n, m = model.frames, 4
    embeds = model.encode_prompts(["a river through a forest", "watermark"])
    conds = {"negative": embeds[1:], "positive": embeds[:1]}
    guided = BatchedGuidance(unet_model(model.unet), conds, cfg_combine(10.0, 0.0, "negative", "positive"))
    denoiser = Denoiser(guided, model.noise_schedule.prediction_type)
    schedule = ddim_schedule(model.noise_schedule, steps)
    shape = (1, 4, n, model.height // 8, model.width // 8)
    rows = []
    for alpha in alphas:
        latents, noises = [], []
        with torch.no_grad():
            for _, z0, state in sample_reuse_and_diffuse(
                denoiser, schedule, shape, num_clips=clips, prompt_frames=m, noise_recycle=alpha, generator=make_generator(0),
                device=device, dtype=dtype,
            ):  # fmt: skip
                latents.append(z0.float().cpu())
                noises.append(state.noise.float().cpu())

        def mirror_corr(seq):
            values = []
            for prev, cur in zip(seq, seq[1:], strict=False):
                mirrored = prev.flip(2)[:, :, m:].flatten()
                values.append(torch.corrcoef(torch.stack([cur[:, :, m:].flatten(), mirrored]))[0, 1].item())
            return float(np.mean(values))

        rows.append({"alpha": alpha, "theory": alpha / (1 + alpha**2) ** 0.5,
                     "noise_mirror_corr": mirror_corr(noises), "latent_mirror_corr": mirror_corr(latents)})  # fmt: skip
    return rows


def sweep(methods: list[str], frame_counts: list[int], size: str, steps: int, timeout: int) -> list[dict]:
    """Every (method, frames) point in a fresh subprocess, printed as it finishes."""
    results = []
    for method in methods:
        for frames in frame_counts:
            row = measure(method, frames, size, steps, timeout)
            results.append(row)
            if "error" in row:
                print(f"{method:>9} {frames:>4} frames: {row['error']}", flush=True)
            else:
                print(f"{method:>9} {frames:>4} frames: {row['seconds']:8.2f} s  {row['seconds_per_frame']:.4f} s/frame"
                      f"  peak {row['peak_gib']:.3f} GiB  clips/chunks {row['clips']}", flush=True)  # fmt: skip
    return results


def summarize(method: str, ok: list[dict]) -> dict | None:
    """Linear time fit and the peak-memory spread over the frame counts of one method."""
    if len(ok) < 2:
        return None
    fit = linear_fit([r["frames"] for r in ok], [r["seconds"] for r in ok])
    first, last = ok[0], ok[-1]
    fit["peak_growth"] = last["peak_gib"] / first["peak_gib"] - 1  # target: within 10%
    print(f"{method} time fit: {fit['intercept_s']:.2f} s + {fit['slope_s_per_frame']:.4f} s/frame (R² {fit['r2']:.4f}); "
          f"peak {first['peak_gib']:.3f} GiB at {first['frames']} frames, {last['peak_gib']:.3f} GiB at "
          f"{last['frames']} ({100 * fit['peak_growth']:+.1f}%)")  # fmt: skip
    return fit


# -------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--methods", nargs="+", choices=["reuse", "fifo"], default=["reuse", "fifo"])
    parser.add_argument("--size", choices=["auto", "full", "tiny"], default="auto")
    parser.add_argument(
        "--steps", type=int, default=None, help="reuse's DDIM steps (default: 20 full, 4 tiny)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip diffusers' one-shot pipeline")
    parser.add_argument("--pingpong", action="store_true", help="measure ping-pong versus α instead")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "FRAMES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = args.size if args.size != "auto" else ("full" if torch.cuda.is_available() else "tiny")
    steps = args.steps or (20 if size == "full" else 4)

    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), size, steps)))
        return
    if args.pingpong:
        rows = pingpong([0.0, 1.0, 4.0, 16.0, 100.0], size, steps)
        print(
            f"ping-pong ({size}, {steps} steps, N=native, M=4, β=0.4): mirror correlation clip k vs reversed clip k-1"
        )
        for row in rows:
            print(f"  α={row['alpha']:>6}: noise {row['noise_mirror_corr']:.3f} (theory {row['theory']:.3f}), "
                  f"final latents {row['latent_mirror_corr']:.3f}")  # fmt: skip
        report = {"size": size, "steps": steps, "pingpong": rows}
    else:
        results = sweep(
            args.methods + ([] if args.no_baseline else ["one-shot"]), args.frames, size, steps, args.timeout
        )
        fits = {
            m: summarize(m, [r for r in results if r["method"] == m and "error" not in r])
            for m in args.methods
        }
        report = {"size": size, "steps": steps, "results": results, "fit": fits}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
