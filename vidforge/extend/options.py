"""Reuse-and-Diffuse options (SPEC section 3); defaults from the official config."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import RunOptions, check


@dataclass(frozen=True)
class ExtendOptions(RunOptions):
    prompt: str = ""
    negative_prompt: str = "watermark"
    frames: int = 128  # total output frames
    steps: int = 50
    eta: float = 0.0
    guidance_scale: float = 10.0
    prompt_frames: int = 4  # M: last frames of clip k-1 reused by clip k
    noise_recycle: float = 4.0  # α (PNS)
    staged_guidance: float = 0.4  # β (DSG)
    keep_prompt_frames: bool = False  # the official code's K·N output layout
    clip_frames: int | None = None  # N; None: the model's native length
    height: int | None = None
    width: int | None = None
    fps: float = 8.0
    init: str | None = None  # extend this video
    image: str | None = None  # animate-UNet models: the conditioning image
    resume: bool = False

    def validate(self) -> None:
        super().validate()
        check(bool(self.prompt.strip()), "--prompt must not be empty")
        check(self.frames >= 1, f"--frames must be at least 1 (got {self.frames})")
        check(self.prompt_frames >= 0, f"--prompt-frames must be >= 0 (got {self.prompt_frames})")
        check(self.noise_recycle >= 0, "--noise-recycle must be >= 0")
        check(0 <= self.staged_guidance <= 1, "--staged-guidance must be in [0, 1]")
        check(0 <= self.eta <= 1, "--eta must be in [0, 1]")
        check(self.fps > 0, "--fps must be positive")
        check(
            self.clip_frames is None or self.clip_frames > self.prompt_frames,
            "--prompt-frames must be smaller than the clip length N",
        )
