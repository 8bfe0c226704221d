"""``extend`` options (SPEC section 3): Reuse-and-Diffuse defaults from the official config,
FIFO-Diffusion defaults from the authors' code (``videocrafter_main.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from vidforge.core.options import RunOptions, check, check_scale

METHODS = ("reuse", "fifo")
# The fields left None take their method's default. reuse: VidRD's official config. fifo: the
# authors' videocrafter_main.py (--eta 1.0, --unconditional_guidance_scale 12, and the empty
# prompt as the unconditional branch in funcs.fifo_ddim_sampling).
METHOD_DEFAULTS = {
    "reuse": {"negative_prompt": "watermark", "eta": 0.0, "text_scale": 10.0},
    "fifo": {"negative_prompt": "", "eta": 1.0, "text_scale": 12.0},
}


@dataclass(frozen=True)
class ExtendOptions(RunOptions):
    prompt: str = ""
    method: str = "reuse"  # "reuse" (Reuse-and-Diffuse, clip by clip) or "fifo" (FIFO-Diffusion)
    negative_prompt: str | None = None  # None: the method's default
    frames: int = 128  # total output frames (with --init: including the init video's frames)
    steps: int = 50  # S: DDIM steps per clip (reuse; fifo runs partitions × N levels)
    eta: float | None = None  # DDIM eta; None: the method's default (reuse 0, fifo 1)
    # CFG scale (CLI alias: --guidance-scale); <= 1: CFG off, as the official loop. None: the method's
    text_scale: float | None = None
    # Reuse-and-Diffuse (Gu et al. 2023)
    prompt_frames: int = 4  # M: last frames of clip k-1 reused (mirrored) by clip k
    noise_recycle: float = 4.0  # α: Past-dependent Noise Sampling strength
    staged_guidance: float = 0.4  # β: Denoising with Staged Guidance, fraction of the schedule
    # FIFO-Diffusion (Kim et al. 2024); the authors' defaults
    partitions: int = 4  # n: latent partitions; the queue holds n·N frames at n·N DDIM levels
    lookahead: bool = True  # lookahead denoising (N/2 clean context frames, half-overlapping windows)
    clip_frames: int | None = None  # N; None: the model's native length
    height: int | None = None  # None: the model's native size
    width: int | None = None
    fps: float | None = None  # None: the init video's fps, else 8
    init: str | None = None  # extend this video (reuse)
    image: str | None = None  # animate-UNet models: the conditioning image
    resume: bool = False  # continue from the checkpoints beside the output

    def resolved(self) -> ExtendOptions:
        """These options with the method's defaults in place of None (validate first)."""
        defaults = METHOD_DEFAULTS[self.method]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def validate(self) -> None:
        super().validate()
        check(self.method in METHODS, f"--method must be one of {', '.join(METHODS)} (got {self.method!r})")
        check(bool(self.prompt.strip()), "--prompt must not be empty")
        check(self.frames >= 1, f"--frames must be at least 1 (got {self.frames})")
        check(self.prompt_frames >= 0, f"--prompt-frames must be >= 0 (got {self.prompt_frames})")
        check(
            0 <= self.staged_guidance <= 1,
            f"--staged-guidance must be in [0, 1] (got {self.staged_guidance})",
        )
        check(self.eta is None or 0 <= self.eta <= 1, f"--eta must be in [0, 1] (got {self.eta})")
        check_scale("text_scale", self.text_scale, 0.0)
        check_scale("noise_recycle", self.noise_recycle, 0.0, 1000.0)
        check(self.partitions >= 1, f"--partitions must be at least 1 (got {self.partitions})")
        check(
            self.method == "reuse" or self.init is None,
            "--init works with --method reuse only (FIFO-Diffusion starts its queue from its own first clip)",
        )
        check(self.fps is None or 0 < self.fps <= 1000, f"--fps must be in (0, 1000] (got {self.fps})")
        check(self.clip_frames is None or self.clip_frames >= 1, "--clip-frames must be at least 1")
        if self.clip_frames is not None:
            check_clip_geometry(self, self.clip_frames)
        for name, value in (("--height", self.height), ("--width", self.width)):
            check(value is None or (value > 0 and value % 8 == 0), f"{name} must be a positive multiple of 8")

    def num_steps(self, clip_frames: int) -> int:
        """DDIM steps: ``--steps`` per clip (reuse), or one level per queue frame, ``n·N`` (fifo)."""
        return self.steps if self.method == "reuse" else self.partitions * clip_frames


def check_clip_geometry(options: ExtendOptions, clip_frames: int) -> None:
    """Checked again once N is known. reuse: M < N, clip k must generate at least one new frame.
    fifo: n·N levels within the 1000 training timesteps; lookahead needs an even N."""
    if options.method == "reuse":
        check(
            options.prompt_frames < clip_frames,
            f"--prompt-frames {options.prompt_frames} must be smaller than the clip length N = {clip_frames} "
            "(lower --prompt-frames or raise --clip-frames)",
        )
        return
    check(
        options.partitions * clip_frames <= 1000,
        f"--partitions {options.partitions} x N = {clip_frames} frames: at most 1000 DDIM levels (lower --partitions)",
    )
    check(
        not options.lookahead or clip_frames % 2 == 0,
        f"lookahead denoising needs an even clip length (N = {clip_frames}): set --clip-frames or --no-lookahead",
    )
