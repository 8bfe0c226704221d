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


@pytest.fixture
def stream_events(monkeypatch):
    """stylize's streaming, recorded: ``("read", n)`` per chunk pulled from the input, ``("write",
    n)`` per chunk written; decoding a whole video at once fails the test."""
    import vidforge.core.video_io as video_io
    import vidforge.stylize.pipeline as stylize_pipeline
    from vidforge.core.writers import Sink

    events = []
    real_iter_frames = video_io.iter_frames

    def recording_iter_frames(*args, **kwargs):
        for chunk in real_iter_frames(*args, **kwargs):
            events.append(("read", len(chunk)))
            yield chunk

    class RecordingSink(Sink):
        def write(self, frames):
            events.append(("write", len(frames)))
            return super().write(frames)

    def whole_video(*args, **kwargs):
        raise AssertionError("stylize decoded the whole video")

    monkeypatch.setattr(stylize_pipeline, "iter_frames", recording_iter_frames)
    monkeypatch.setattr(stylize_pipeline, "Sink", RecordingSink)
    monkeypatch.setattr(video_io, "read_video", whole_video)
    return events


def traced_peak(function):
    """``(function(), peak bytes)``: the peak of Python-traced memory while it ran (numpy registers
    its buffers, so every decoded or resized frame counts)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def clips(tmp_path):
    """A folder of two short clips, ``a.mp4`` and ``b.mov``, and a file that is no video."""
    from vidforge.core.writers import write_video

    folder = tmp_path / "clips"
    folder.mkdir()
    write_video(folder / "a.mp4", textured_frames(3, 32, 32), fps=8)
    write_video(folder / "b.mov", textured_frames(3, 32, 32, seed=1), fps=8)
    (folder / "notes.md").write_text("not a video")
    return folder
