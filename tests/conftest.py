"""Shared fixtures: offline, deterministic, synthetic media whose true answer is known."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def textured_frames(num_frames=8, height=64, width=64, shift=(2, 0), seed=0) -> np.ndarray:
    """A smooth random texture translating by whole pixels ``shift = (dx, dy)`` per frame,
    ``(F, H, W, 3)`` uint8. Frame t+1 equals frame t moved by ``shift`` (wrapping around)."""
    rng = np.random.default_rng(seed)
    import cv2

    base = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    base = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    dx, dy = shift
    return np.stack([np.roll(base, (t * dy, t * dx), axis=(0, 1)) for t in range(num_frames)])


@pytest.fixture
def frames():
    return textured_frames()


@pytest.fixture
def clip_path(tmp_path, frames):
    """An 8-frame 64x64 MP4 at 12 fps."""
    from vidforge.core.writers import write_video

    return write_video(tmp_path / "clip.mp4", frames, fps=12)


def moving_texture(num_frames=8, height=48, width=64, shift=(1.5, 0.5), zoom=1.2, seed=0) -> np.ndarray:
    """A smooth random texture translating by ``shift = (dx, dy)`` pixels per frame (sub-pixel) and
    zooming in by ``zoom`` in total over the clip, about the frame's centre, ``(F, H, W, 3)`` uint8.
    The texture is larger than the frame, so nothing wraps around: every frame is an exact affine
    view of one image (the content a single-layer atlas can represent)."""
    import cv2

    rng = np.random.default_rng(seed)
    big_h, big_w = 2 * height, 2 * width
    base = rng.integers(0, 256, (big_h // 4, big_w // 4, 3), dtype=np.uint8)
    base = cv2.resize(base, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    frames = []
    for t in range(num_frames):
        scale = zoom ** (t / max(num_frames - 1, 1))
        # frame pixel p shows texture point centre + (p - frame centre) / scale + t·shift
        cx, cy = big_w / 2 + t * shift[0], big_h / 2 + t * shift[1]
        matrix = np.array(
            [[1 / scale, 0, cx - (width / 2) / scale], [0, 1 / scale, cy - (height / 2) / scale]]
        )
        frames.append(
            cv2.warpAffine(base, matrix, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        )
    return np.stack(frames)
