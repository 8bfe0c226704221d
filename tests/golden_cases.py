"""Golden outputs: each command on ``tiny`` with fixed seeds, recorded so that a refactor can prove
it changed nothing (bit for bit). ``tests/test_golden.py`` compares; regenerate on purpose only:

    .venv/bin/python tests/golden_cases.py --write [CASE ...]

and say in the commit why the numbers changed. Inputs are synthetic and lossless (arrays, PNG
folders), so no codec sits between the pipeline and the recorded frames.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GOLDEN_DIR = Path(__file__).parent / "data" / "golden"


def _video(num_frames=5, height=36, width=44, seed=0) -> np.ndarray:
    """Smooth random texture drifting right and down: (F, H, W, 3) uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 4, width // 4 + 4, 3), dtype=np.uint8)
    base = cv2.resize(base, (width + 16, height + 16), interpolation=cv2.INTER_CUBIC)
    return np.stack([base[t : t + height, 2 * t : 2 * t + width] for t in range(num_frames)])


def _image(height=80, width=100, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _png_folder(frames: np.ndarray, folder: Path, fps: float = 12.0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:05d}.png")
    (folder / "fps.txt").write_text(f"{fps}\n")
    return folder


def _png(image: np.ndarray, path: Path) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path)
    return path


# ------------------------------------------------------------------------------------------ cases


def stylize_default(tmp: Path) -> np.ndarray:
    from vidforge import stylize
    from vidforge.core.video_io import Video

    options = stylize.StylizeOptions(style="ink wash", model="tiny", steps=4, batch_frames=3)
    return stylize.run(Video(_video(), 12.0), options).frames


def stylize_clip_image_branch(tmp: Path) -> np.ndarray:
    from vidforge import stylize
    from vidforge.core.video_io import Video

    options = stylize.StylizeOptions(
        style="ink wash", model="tiny", steps=3, batch_frames=2, clip_guidance=0.3, clip_steps=2,
        text_branch="image", image_scale=1.2, attn_scale=0.8, deflicker=0.0, seed=3,
    )  # fmt: skip
    return stylize.run(Video(_video(3), 12.0), options).frames


def stylize_euler_a(tmp: Path) -> np.ndarray:
    from vidforge import stylize
    from vidforge.core.video_io import Video

    options = stylize.StylizeOptions(style="ink wash", model="tiny", steps=4, scheduler="euler-a", seed=5)
    return stylize.run(Video(_video(4), 12.0), options).frames


def animate_default(tmp: Path) -> np.ndarray:
    from vidforge import animate

    options = animate.AnimateOptions(prompt="waves", model="tiny", steps=3, frames=8)
    return animate.run(_image(), options).frames


def animate_multi_condition(tmp: Path) -> np.ndarray:
    from vidforge import animate

    options = animate.AnimateOptions(
        prompt="waves", model="tiny", steps=3, frames=8, image_scale=1.5, text_scale=4.0,
        guidance_rescale=0.3, eta=0.0, seed=2,
    )  # fmt: skip
    return animate.run(_image(), options).frames


def extend_text(tmp: Path) -> np.ndarray:
    from vidforge import extend

    options = extend.ExtendOptions(
        prompt="a river", model="tiny", frames=20, steps=4, text_scale=3.0, height=32, width=32
    )
    return extend.run(options).frames


def extend_text_eta(tmp: Path) -> np.ndarray:
    from vidforge import extend

    options = extend.ExtendOptions(
        prompt="a river", model="tiny", frames=14, steps=3, text_scale=4.0, eta=0.5, seed=7,
        height=32, width=32, prompt_frames=2, noise_recycle=1.0, staged_guidance=0.7,
    )  # fmt: skip
    return extend.run(options).frames


def extend_image(tmp: Path) -> np.ndarray:
    from vidforge import extend

    image = _png(_image(), tmp / "image.png")
    options = extend.ExtendOptions(
        prompt="a boat", model="tiny", frames=20, steps=3, text_scale=3.0, image=str(image),
        height=32, width=32,
    )  # fmt: skip
    return extend.run(options).frames


def extend_init(tmp: Path) -> np.ndarray:
    from vidforge import extend
    from vidforge.core.writers import write_video

    init = write_video(tmp / "init.gif", _video(6, 32, 32), fps=12.0)
    options = extend.ExtendOptions(
        prompt="a river", model="tiny", frames=14, steps=4, text_scale=3.0, init=str(init),
        height=32, width=32,
    )  # fmt: skip
    return extend.run(options).frames


def evaluate_weight_free(tmp: Path) -> np.ndarray:
    from vidforge import evaluate

    video = _png_folder(_video(6, 48, 64), tmp / "video")
    source = _png_folder(_video(6, 48, 64, seed=1), tmp / "source")
    report = evaluate.run([str(video)], evaluate.EvaluateOptions(source=str(source)))
    values = []
    for name in sorted(report.videos[0].metrics):
        metric = report.videos[0].metrics[name]
        values += [metric.value, *(metric.per_frame or [])]
    return np.array(values, dtype=np.float64)


CASES = {
    f.__name__: f
    for f in [
        stylize_default,
        stylize_clip_image_branch,
        stylize_euler_a,
        animate_default,
        animate_multi_condition,
        extend_text,
        extend_text_eta,
        extend_image,
        extend_init,
        evaluate_weight_free,
    ]
}


def compute(name: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        return CASES[name](Path(tmp))


def platform() -> dict:
    """What bit-for-bit equality depends on: the same torch build, CPU kernels and thread count
    (reductions split over threads round differently: OMP_NUM_THREADS=1 changes the last bits)."""
    import torch

    cpu = torch.backends.cpu.get_cpu_capability()
    return {"torch": torch.__version__, "cpu": cpu, "threads": torch.get_num_threads()}


def write(names: list[str]) -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        array = compute(name)
        np.savez_compressed(GOLDEN_DIR / f"{name}.npz", output=array)
        print(f"{name}: {array.dtype} {array.shape}")
    (GOLDEN_DIR / "platform.json").write_text(json.dumps(platform(), indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"]:
        sys.exit("usage: golden_cases.py --write [CASE ...]")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    write(sys.argv[2:] or list(CASES))
