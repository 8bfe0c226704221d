"""Reuse-and-Diffuse options (SPEC section 3); defaults from the official config."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import RunOptions, check


@dataclass(frozen=True)
class ExtendOptions(RunOptions):
    prompt: str = ""
    negative_prompt: str = "watermark"
    frames: int = 128  # total output frames (with --init: including the init video's frames)
    steps: int = 50  # S: DDIM steps per clip
    eta: float = 0.0  # DDIM eta (0: deterministic)
    text_scale: float = 10.0  # CFG scale (CLI alias: --guidance-scale); <= 1: CFG off, as the official loop
    # Reuse-and-Diffuse (Gu et al. 2023)
    prompt_frames: int = 4  # M: last frames of clip k-1 reused (mirrored) by clip k
    noise_recycle: float = 4.0  # α: Past-dependent Noise Sampling strength
    staged_guidance: float = 0.4  # β: Denoising with Staged Guidance, fraction of the schedule
    clip_frames: int | None = None  # N; None: the model's native length
    height: int | None = None  # None: the model's native size
    width: int | None = None
    fps: float | None = None  # None: the init video's fps, else 8
    init: str | None = None  # extend this video
    image: str | None = None  # animate-UNet models: the conditioning image
    resume: bool = False  # continue from the checkpoints beside the output

    def validate(self) -> None:
        super().validate()
        check(bool(self.prompt.strip()), "--prompt must not be empty")
        check(self.frames >= 1, f"--frames must be at least 1 (got {self.frames})")
        check(self.prompt_frames >= 0, f"--prompt-frames must be >= 0 (got {self.prompt_frames})")
        check(self.noise_recycle >= 0, f"--noise-recycle must be >= 0 (got {self.noise_recycle})")
        check(
            0 <= self.staged_guidance <= 1,
            f"--staged-guidance must be in [0, 1] (got {self.staged_guidance})",
        )
        check(0 <= self.eta <= 1, f"--eta must be in [0, 1] (got {self.eta})")
        check(self.text_scale >= 0, f"--text-scale must be >= 0 (got {self.text_scale})")
        check(self.fps is None or self.fps > 0, "--fps must be positive")
        check(self.clip_frames is None or self.clip_frames >= 1, "--clip-frames must be at least 1")
        if self.clip_frames is not None:
            check_prompt_frames(self.prompt_frames, self.clip_frames)
        for name, value in (("--height", self.height), ("--width", self.width)):
            check(value is None or (value > 0 and value % 8 == 0), f"{name} must be a positive multiple of 8")


def check_prompt_frames(prompt_frames: int, clip_frames: int) -> None:
    """M < N: clip k must generate at least one new frame. Called again once N is known."""
    check(
        prompt_frames < clip_frames,
        f"--prompt-frames {prompt_frames} must be smaller than the clip length N = {clip_frames} "
        "(lower --prompt-frames or raise --clip-frames)",
    )
