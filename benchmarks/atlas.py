"""Benchmark ``vidforge stylize --mode atlas``: fit quality, a known edit, warp error, fit time.

For each video (a smooth texture translating and zooming: known motion, one layer; and
``examples/clip.mp4``: parallax layers, a bouncing ball, occlusions):

* ``atlas_psnr``: PSNR of ``C(D(x, y, t))`` against the frames after the fit; ``canonical_psnr``:
  the same through the rendered canonical image (what the edit is made on);
* ``colour_psnr`` / ``colour_mae``: the canonical image edited with a known colour transform
  (channels inverted and rotated) renders frames compared with the transformed input frames;
* ``warp_error``: Lai et al.'s warp error (flow of the input, ``vidforge.evaluate``) of the
  ``--model tiny`` output in ``--mode atlas`` and in ``--mode frames`` at the same settings (tiny's
  output is noise-like: per-frame generation flickers, the atlas cannot);
* ``fit_s_per_frame``: fit seconds divided by the frame count.

    .venv/bin/python benchmarks/atlas.py                      # CPU: small sizes (see --help)
    .venv/bin/python benchmarks/atlas.py --full --json a.json # GPU: the default fit at full size
    .venv/bin/python benchmarks/atlas.py --ablation           # flow weight and learning rate

``--ablation`` fits ``examples/clip.mp4`` at 192x128 (400 iterations of 2048 pixels, 12 levels of
2^14) with other flow-consistency weights and learning rates, and reports the PSNR and the warp
error of frames rendered from a canonical image replaced by a smooth random texture (a stand-in
edit that shows whether the canonical content moves with the scene).

Prints one JSON line per video. Not a test: run it by hand, on an idle machine for the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import moving_texture  # noqa: E402

from vidforge.core.flow import video_flows  # noqa: E402
from vidforge.core.video_io import read_video, resize_frames  # noqa: E402
from vidforge.evaluate.metrics import warp_error  # noqa: E402
from vidforge.models import load_model  # noqa: E402
from vidforge.stylize import StylizeOptions, StylizePipeline, run  # noqa: E402

SMALL = {"atlas_iterations": 1000, "atlas_batch": 4096, "atlas_levels": 12, "atlas_table": 14}


class ColourEdit:
    """A pipeline whose 'stylization' is the known colour transform (on ``pipeline``'s device)."""

    def __init__(self, pipeline: StylizePipeline):
        self.device, self.bundle = pipeline.device, pipeline.bundle
        self.attention_backend = pipeline.attention_backend

    def __call__(self, frames, options, bars=None):
        return colour(frames)

    def stream(self, frames, options, bars=None, num_frames=None):
        for start in range(0, len(frames), options.batch_frames):
            yield colour(frames[start : start + options.batch_frames])


def colour(frames: np.ndarray) -> np.ndarray:
    return 255 - frames[..., [2, 0, 1]]


def measure(name: str, frames: np.ndarray, options: StylizeOptions, bundle, device) -> dict:
    flows = video_flows(frames)
    row = {"video": name, "frames": len(frames), "size": f"{frames.shape[2]}x{frames.shape[1]}"}
    row["input_warp_error"] = round(warp_error(frames, zip(*flows, strict=True))[0], 6)
    pipeline = StylizePipeline(bundle, device, torch.float32)  # tiny runs in fp32
    edit = run(frames, options, pipeline=ColourEdit(pipeline))
    info = edit.info
    row |= {k: info[k] for k in ("atlas_psnr", "canonical_psnr", "canonical_size", "fit_seconds", "blended")}
    row["fit_s_per_frame"] = round(info["fit_seconds"] / len(frames), 3)
    error = np.abs(edit.frames.astype(np.float32) - colour(frames)) / 255
    row["colour_psnr"] = round(float(10 * np.log10(1 / np.mean(error**2))), 2)
    row["colour_mae"] = round(float(error.mean()), 5)
    for mode in ("frames", "atlas"):
        out = run(frames, replace(options, mode=mode), pipeline=pipeline).frames
        row[f"warp_error_{mode}"] = round(warp_error(out, zip(*flows, strict=True))[0], 6)
    return row


def ablation() -> list[dict]:
    import cv2

    from vidforge.stylize.atlas.canonical import canvas_from_fields, render_frame, to_images
    from vidforge.stylize.atlas.fields import FieldConfig
    from vidforge.stylize.atlas.fit import FitSettings, fit, video_tensors
    from vidforge.stylize.atlas.pipeline import new_fields, reconstruction_psnr

    frames = resize_frames(read_video(ROOT / "examples" / "clip.mp4").frames, (192, 128))
    flows = video_flows(frames)
    rows = []
    for flow_weight, lr in [(0.0, 5e-2), (1.0, 5e-2), (3.0, 5e-2), (10.0, 5e-2), (3.0, 2e-2)]:
        fields = new_fields(FieldConfig(192, 128, len(frames), levels=12, log2_table=14), 0, "cpu")
        video = video_tensors(frames, "cpu")
        fit(fields, video, FitSettings(400, 2048, lr=lr, flow_weight=flow_weight))
        canvas = canvas_from_fields(fields, 8)
        noise = np.random.default_rng(1).integers(
            0, 256, (canvas.height // 4, canvas.width // 4, 3), np.uint8
        )
        noise = cv2.resize(noise, (canvas.width, canvas.height), interpolation=cv2.INTER_CUBIC)
        images = to_images(noise, device="cpu")
        edited = torch.stack([render_frame(fields, t, images, canvas)[0] for t in range(len(frames))])
        edited = (edited.permute(0, 2, 3, 1) * 255).round().byte().numpy()
        rows.append({
            "flow_weight": flow_weight, "lr": lr, "atlas_psnr": round(reconstruction_psnr(fields, video.frames), 2),
            "noise_edit_warp_error": round(warp_error(edited, zip(*flows, strict=True))[0], 6),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="default fit options and native sizes (GPU)")
    parser.add_argument("--size", default="192x128", help="examples/clip.mp4 size without --full")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps of the tiny model")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--ablation", action="store_true", help="flow weight and learning rate on the clip")
    args = parser.parse_args(argv)
    if args.ablation:
        return ablation()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bundle = load_model("tiny", "stylize", device, torch.float32)
    fit = {} if args.full else SMALL
    options = StylizeOptions(style="ink wash", mode="atlas", model="tiny", steps=args.steps, **fit)
    clip = read_video(ROOT / "examples" / "clip.mp4").frames
    if args.full:
        videos = {"texture 512x512": moving_texture(48, 512, 512, shift=(4, 2)), "examples/clip.mp4": clip}
    else:
        size = tuple(int(v) for v in args.size.split("x"))
        videos = {"texture 96x64": moving_texture(24, 64, 96), "examples/clip.mp4": resize_frames(clip, size)}
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["VIDFORGE_CACHE"] = cache  # fresh fits, nothing left behind
        for name, frames in videos.items():
            rows.append({**measure(name, frames, options, bundle, device), "device": device.type, **fit})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
