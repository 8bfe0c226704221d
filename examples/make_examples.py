"""Make the sample media in this folder: a procedural scene, no third-party content.

    python examples/make_examples.py

writes ``clip.mp4`` (24 frames, 384x256, 12 fps, with a soft tone as audio: parallax hills,
a moving sun and a bouncing ball, so there is real motion and occlusion) and ``still.png``
(the first frame at 512x320, for ``vidforge animate``).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).parent
FPS = 12
NUM_FRAMES = 24


def render(t: float, width: int, height: int) -> np.ndarray:
    """One RGB frame of the scene at time ``t`` seconds."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    sky = (1 - y) * np.array([90, 150, 235], np.float32) + y * np.array([250, 210, 170], np.float32)
    frame = np.broadcast_to(sky, (height, width, 3)).copy()

    sun = (int(width * (0.15 + 0.05 * t)), int(height * (0.25 - 0.02 * t)))
    cv2.circle(frame, sun, height // 10, (255, 230, 120), -1, cv2.LINE_AA)

    x = np.arange(width, dtype=np.float32)
    rng = np.random.default_rng(0)
    grain = rng.integers(-12, 12, (height, width * 2, 1)).astype(np.float32)
    for depth, (speed, base, amp, colour) in enumerate(
        [(8, 0.60, 0.08, (70, 120, 90)), (24, 0.72, 0.06, (50, 140, 60)), (60, 0.85, 0.04, (40, 110, 40))]
    ):
        offset = speed * t
        ridge = height * (
            base - amp * np.sin((x + offset) / (40 + 25 * depth)) - 0.5 * amp * np.sin((x + offset) / 13)
        )
        below = np.arange(height)[:, None] >= ridge[None, :]
        shift = int(offset) % width
        texture = np.array(colour, np.float32) + grain[:, shift : shift + width]
        frame = np.where(below[..., None], texture, frame)

    bounce = abs(np.sin(np.pi * t * 1.2))
    ball = (int(width * (0.2 + 0.3 * t)) % width, int(height * (0.8 - 0.45 * bounce)))
    cv2.ellipse(frame, (ball[0], int(height * 0.83)), (18, 5), 0, 0, 360, (30, 60, 30), -1, cv2.LINE_AA)
    cv2.circle(frame, ball, 16, (220, 60, 50), -1, cv2.LINE_AA)
    cv2.circle(frame, (ball[0] - 5, ball[1] - 5), 5, (250, 170, 160), -1, cv2.LINE_AA)
    return np.clip(frame, 0, 255).astype(np.uint8)


def main() -> None:
    import imageio_ffmpeg

    from vidforge.core.writers import write_video

    frames = np.stack([render(i / FPS, 384, 256) for i in range(NUM_FRAMES)])
    with tempfile.TemporaryDirectory() as tmp:
        tone = Path(tmp) / "tone.m4a"
        ffmpeg = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
        duration = f"{NUM_FRAMES / FPS}"
        subprocess.run(
            ffmpeg + ["-f", "lavfi", "-i", "sine=frequency=330:sample_rate=22050", "-t", duration]
            + ["-af", "volume=0.2", "-c:a", "aac", "-b:a", "32k", str(tone)],
            check=True,
        )  # fmt: skip
        write_video(HERE / "clip.mp4", frames, FPS, audio_from=tone)
    cv2.imwrite(str(HERE / "still.png"), cv2.cvtColor(render(0.0, 512, 320), cv2.COLOR_RGB2BGR))
    print(f"wrote {HERE / 'clip.mp4'} and {HERE / 'still.png'}")


if __name__ == "__main__":
    main()
