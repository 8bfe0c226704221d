"""Benchmark `vidforge stylize`: seconds per frame, peak GPU memory and UNet MFU.

On CUDA: the full-size InstructPix2Pix architecture (SD1.5 UNet with 8 input channels, SD VAE,
CLIP ViT-L/14 text encoder) with random weights (compute does not depend on weight values), fp16,
at 512x256 and 512x512, 30 DDIM steps, SDPA vs xformers. On CPU: the tiny preset, briefly.

Baseline, in the same process and on the same modules: diffusers'
``StableDiffusionInstructPix2PixPipeline`` called frame by frame (3 branches, batch 3 per step).
Ours: four branches (CLIP guidance off, latent + pixel flow fusion on) over ``--batch-frames``
frames per UNet call (batch 4·F per step).

MFU: FLOPs of one UNet forward counted with ``torch.utils.flop_counter`` (SDPA path; xformers does
the same math), divided by the measured time of that forward and by the GPU's peak dense fp16/bf16
rate. Reported twice: for the bare UNet step at the pipeline's batch, and over the whole pipeline
(UNet FLOPs of all steps / end-to-end time).

    python benchmarks/stylize.py                       # CUDA if present, else tiny on CPU
    python benchmarks/stylize.py --sizes 512x512 --frames 16 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import replace

import numpy as np
import torch

from vidforge.core.attention import apply_attention_backend, select_backend, xformers_available
from vidforge.models.bundle import ModelBundle
from vidforge.models.instruct_pix2pix import build_tiny
from vidforge.sampling.schedules import diffusers_noise_schedule
from vidforge.stylize import StylizeOptions, StylizePipeline

# dense (no sparsity) fp16/bf16 tensor-core peaks, TFLOP/s
PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
               "A10": 125.0, "4090": 165.2, "3090": 71.0}  # fmt: skip


def build_full_size(seed: int = 0) -> ModelBundle:
    """InstructPix2Pix (SD1.5) architecture with random weights."""
    from diffusers import UNet2DConditionModel
    from full_size import sd_vae
    from transformers import CLIPTextConfig, CLIPTextModel

    from vidforge.models.text import OpenClipTokenizer
    from vidforge.models.tiny import seeded

    with seeded(seed):
        unet = UNet2DConditionModel(
            sample_size=64,
            in_channels=8,
            out_channels=4,
            layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
        vae = sd_vae(sample_size=512)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
        )  # fmt: skip
    return ModelBundle(
        "ip2p-random", "instruct-pix2pix", unet.eval(), vae.eval(), text_encoder.eval(), OpenClipTokenizer(),
        diffusers_noise_schedule(),
    )  # fmt: skip


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
        if key in name:
            return tflops * 1e12
    return None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def measure(device):
    """Yield a dict that receives ``seconds`` and ``peak_gib`` (CUDA) of the block."""
    stats = {}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start = time.perf_counter()
    yield stats
    sync(device)
    stats["seconds"] = time.perf_counter() - start
    stats["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def unet_inputs(parts, batch, latent_hw, device, dtype):
    h, w = latent_hw
    x = torch.randn(batch, 8, h, w, device=device, dtype=dtype)
    ctx = torch.randn(batch, 77, parts.text_encoder.config.hidden_size, device=device, dtype=dtype)
    return x, torch.tensor(500, device=device), ctx


@torch.no_grad()
def unet_flops(parts, batch, latent_hw, device, dtype) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    apply_attention_backend(parts.unet, "sdpa")
    x, t, ctx = unet_inputs(parts, batch, latent_hw, device, dtype)
    with FlopCounterMode(display=False) as counter:
        parts.unet(x, t, encoder_hidden_states=ctx)
    return counter.get_total_flops()


@torch.no_grad()
def unet_step_seconds(parts, batch, latent_hw, device, dtype, backend, repeats) -> float:
    apply_attention_backend(parts.unet, backend)
    x, t, ctx = unet_inputs(parts, batch, latent_hw, device, dtype)
    parts.unet(x, t, encoder_hidden_states=ctx)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        parts.unet(x, t, encoder_hidden_states=ctx)
    sync(device)
    return (time.perf_counter() - start) / repeats


def baseline(parts, frames, steps, device, dtype, backend) -> dict:
    """diffusers' InstructPix2Pix pipeline, one frame per call (sT 7.5, sI 1.5)."""
    from diffusers import DDIMScheduler, StableDiffusionInstructPix2PixPipeline
    from PIL import Image

    apply_attention_backend(parts.unet, backend)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=None, unet=parts.unet,
        scheduler=DDIMScheduler.from_config(parts.noise_schedule.diffusers_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    embeds = parts.encode_prompts(["ink wash", ""])

    def call(frame, n_steps):
        return pipe(image=Image.fromarray(frame), num_inference_steps=n_steps, guidance_scale=7.5,
                    image_guidance_scale=1.5, prompt_embeds=embeds[:1], negative_prompt_embeds=embeds[1:],
                    generator=torch.Generator().manual_seed(0), output_type="np").images  # fmt: skip

    call(frames[0], 1)  # warm-up
    with measure(device) as stats:
        for frame in frames:
            call(frame, steps)
    return stats


def ours(parts, frames, steps, batch_frames, device, dtype, backend) -> dict:
    pipe = StylizePipeline(parts, device, dtype, backend)
    options = StylizeOptions(style="ink wash", steps=steps, batch_frames=batch_frames, clip_guidance=0.0)
    pipe(frames[:batch_frames], replace(options, steps=2))  # warm-up at the real batch shape
    with measure(device) as stats:
        pipe(frames, options)
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--sizes", default=None, help="WxH list (default 512x256,512x512 on CUDA, 64x32,64x64 on CPU)"
    )
    parser.add_argument("--steps", type=int, default=None, help="default 30 on CUDA, 4 on CPU")
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per run (default 16 on CUDA, 4 on CPU)"
    )
    parser.add_argument("--batch-frames", type=int, default=None, help="default 8 on CUDA, 4 on CPU")
    parser.add_argument("--backends", default="sdpa,xformers")
    parser.add_argument("--arch", choices=["auto", "full", "tiny"], default="auto", help="auto: full on CUDA")
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's dense fp16 peak")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    gpu = device.type == "cuda"
    dtype = torch.float16 if gpu else torch.float32
    sizes = args.sizes or ("512x256,512x512" if gpu else "64x32,64x64")
    steps = args.steps or (30 if gpu else 4)
    num_frames = args.frames or (16 if gpu else 4)
    batch_frames = args.batch_frames or (8 if gpu else 4)
    full = args.arch == "full" or (args.arch == "auto" and gpu)
    parts = build_full_size() if full else build_tiny()
    for module in (parts.unet, parts.vae, parts.text_encoder):
        module.to(device=device, dtype=dtype).requires_grad_(False)
    peak = peak_flops(device, args.peak_tflops)
    device_name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(f"device: {device_name}, dtype {dtype}, model {parts.name}, {steps} steps, {num_frames} frames, "
          f"batch {batch_frames} frames, peak {peak / 1e12 if peak else 'n/a'} TFLOP/s")  # fmt: skip

    rows = []
    for size in sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)
        latent_hw = (height // 8, width // 8)
        batch_ours = 4 * min(batch_frames, num_frames)
        flops_ours = unet_flops(parts, batch_ours, latent_hw, device, dtype)
        flops_base = unet_flops(parts, 3, latent_hw, device, dtype)
        for backend in args.backends.split(","):
            if backend == "xformers" and not xformers_available(device.type):
                print(f"{size} {backend}: skipped (xformers kernels do not load here)")
                continue
            select_backend(backend, device)
            base = baseline(parts, frames, steps, device, dtype, backend)
            mine = ours(parts, frames, steps, batch_frames, device, dtype, backend)
            step_ours = unet_step_seconds(
                parts, batch_ours, latent_hw, device, dtype, backend, 5 if gpu else 2
            )
            step_base = unet_step_seconds(parts, 3, latent_hw, device, dtype, backend, 5 if gpu else 2)
            chunks = -(-num_frames // batch_frames)
            row = {
                "size": size, "backend": backend, "steps": steps, "frames": num_frames,
                "baseline_s_per_frame": base["seconds"] / num_frames,
                "ours_s_per_frame": mine["seconds"] / num_frames,
                "ratio_ours_over_baseline": mine["seconds"] / base["seconds"],
                "baseline_peak_gib": base["peak_gib"], "ours_peak_gib": mine["peak_gib"],
                "unet_gflop_per_call_ours": flops_ours / 1e9, "unet_gflop_per_call_baseline": flops_base / 1e9,
                "unet_step_s_ours": step_ours, "unet_step_s_baseline": step_base,
                "unet_tflops_ours": flops_ours / step_ours / 1e12,
                "unet_tflops_baseline": flops_base / step_base / 1e12,
                "pipeline_unet_tflops_ours": flops_ours * steps * chunks / mine["seconds"] / 1e12,
            }  # fmt: skip
            if peak:
                row["mfu_unet_step_ours"] = flops_ours / step_ours / peak
                row["mfu_unet_step_baseline"] = flops_base / step_base / peak
                row["mfu_pipeline_ours"] = flops_ours * steps * chunks / mine["seconds"] / peak
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device_name, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
