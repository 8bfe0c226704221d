"""Benchmark `vidforge stylize --mode keyframes` against `--mode frames` at the same steps.

For each run: keyframes edited, UNet calls and UNet rows (batch rows summed over calls: the
diffusion work), wall and CPU seconds per output frame, and the warping error of the written output
as `vidforge evaluate OUT --metric warp-error --source INPUT` reports it (flow on the input).

Runs: `frames` (the reference), `keyframes` for every `--intervals` value at the default
`--propagation-strength`, and `keyframes` at `--sweep-interval` for every `--strengths` value.

CPU (default when no GPU): the `tiny` preset (random weights: the numbers measure cost and
consistency of the plumbing, not the look of a style). CUDA: the full-size InstructPix2Pix
architecture with random weights (`benchmarks/stylize.py`), fp16 (warp errors of random weights
are not meaningful there; times and UNet work are).

    python benchmarks/stylize_keyframes.py                               # examples/clip.mp4
    python benchmarks/stylize_keyframes.py --video bikes.mp4 --start 137 --max-frames 48 --resize 320x136
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from vidforge.core.attention import select_backend
from vidforge.core.video_io import read_video
from vidforge.core.writers import write_video
from vidforge.stylize import StylizeOptions, StylizePipeline, run

ROOT = Path(__file__).resolve().parents[1]


def build_pipeline(arch: str, device: torch.device) -> StylizePipeline:
    gpu = device.type == "cuda"
    dtype = torch.float16 if gpu else torch.float32
    if arch == "full" or (arch == "auto" and gpu):
        from stylize import build_full_size

        bundle = build_full_size()
        for module in (bundle.unet, bundle.vae, bundle.text_encoder):
            module.to(device=device, dtype=dtype).requires_grad_(False)
    else:
        from vidforge.models import load_model

        bundle = load_model("tiny", "stylize", device, dtype)
    return StylizePipeline(bundle, device, dtype, select_backend("auto", device))


def warp_error(output: Path, source: Path) -> float:
    """`vidforge evaluate OUTPUT --metric warp-error --source SOURCE --json`, as a user runs it."""
    command = [sys.executable, "-m", "vidforge", "evaluate", str(output), "--metric", "warp-error",
               "--source", str(source), "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout)["videos"][0]["metrics"]["warp-error"]["value"]


def measure(pipe: StylizePipeline, source: Path, options: StylizeOptions, out: Path) -> dict:
    rows = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        if pipe.device.type == "cuda":
            torch.cuda.synchronize(pipe.device)
        wall, cpu = time.perf_counter(), time.process_time()
        result = run(source, options, output=out, pipeline=pipe, overwrite=True)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize(pipe.device)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        hook.remove()
    n = result.num_frames
    return {
        "mode": options.mode,
        "interval": options.keyframe_interval if options.mode == "keyframes" else None,
        "strength": options.propagation_strength if options.mode == "keyframes" else None,
        "frames": n,
        "keyframes": result.info.get("keyframes", n),
        "unet_calls": len(rows),
        "unet_rows": sum(rows),
        "s_per_frame": wall / n,
        "cpu_s_per_frame": cpu / n,
        "warp_error": warp_error(out, source),
    }


def prepare_source(args, folder: Path) -> Path:
    """The input as the runs see it: --max-frames frames from --start, at --resize (one file, so that
    the warp error's flow is computed on exactly the frames that were stylized)."""
    if args.max_frames is None and args.resize is None and not args.start:
        return Path(args.video)
    from vidforge.core.options import parse_size

    end = None if args.max_frames is None else args.start + args.max_frames
    video = read_video(args.video, end, parse_size(args.resize))
    return write_video(folder / "source.mp4", video.frames[args.start :], fps=video.fps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video", default=str(ROOT / "examples" / "clip.mp4"))
    parser.add_argument("--start", type=int, default=0, help="first frame used (skip a scene cut)")
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--resize", default=None, help="WxH")
    parser.add_argument("--steps", type=int, default=StylizeOptions.steps)
    parser.add_argument("--intervals", default="2,4,8,16,auto")
    parser.add_argument("--sweep-interval", default=str(StylizeOptions.keyframe_interval))
    parser.add_argument("--strengths", default="0.3,0.6,0.9,1.0")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--arch", choices=["auto", "full", "tiny"], default="auto", help="auto: full on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    pipe = build_pipeline(args.arch, device)
    base = StylizeOptions(style="ink wash", steps=args.steps, device=str(device))
    interval = lambda text: text if text == "auto" else int(text)  # noqa: E731
    runs = [base] + [
        replace(base, mode="keyframes", keyframe_interval=interval(k)) for k in args.intervals.split(",")
    ]
    runs += [
        replace(base, mode="keyframes", keyframe_interval=interval(args.sweep_interval), propagation_strength=float(s))
        for s in args.strengths.split(",") if float(s) != StylizeOptions.propagation_strength
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        source = prepare_source(args, Path(tmp))
        run(source, replace(base, steps=2, max_frames=2), pipeline=pipe)  # warm-up
        print(
            f"device {device}, model {pipe.bundle.name}, {args.steps} steps, input {args.video} -> {source.name}"
        )
        rows = []
        for options in runs:
            row = measure(pipe, source, options, Path(tmp) / "out.mp4")
            row["unet_rows_vs_frames"] = row["unet_rows"] / rows[0]["unet_rows"] if rows else 1.0
            rows.append(row)
            print(
                json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}),
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": str(device), "video": args.video, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
