"""Style-A-Video options (SPEC section 1). The only place these defaults are written."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import RunOptions, check

TEXT_BRANCHES = ("paper", "image")
SCHEDULERS = ("ddim", "euler", "euler-a", "dpm-solver")


@dataclass(frozen=True)
class StylizeOptions(RunOptions):
    style: str = ""  # the style prompt, e.g. "ink wash painting"
    steps: int = 30
    # four-branch guidance: eps∅ + sI(epsI-eps∅) + sT(epsT-eps∅) + sM(epsM-eps∅)
    image_scale: float = 1.5  # sI
    text_scale: float = 7.5  # sT
    attn_scale: float = 0.5  # sM
    text_branch: str = "paper"  # "paper": eps(z, ∅, c_T); "image": eps(z, c_I, c_T) as InstructPix2Pix
    scheduler: str = "ddim"
    # CLIP sampling optimization: z_t - λ·g/‖g‖·‖z_t‖ on the first `clip_steps` steps; λ = 0 disables
    clip_guidance: float = 0.0
    clip_steps: int = 5
    clip_model: str = "ViT-B-32/openai"
    # temporal consistency
    fuse_window: tuple[float, float] = (0.0, 0.5)  # fraction of the schedule with latent x0 fusion
    fuse_strength: float = 0.5
    deflicker: float = 0.5  # pixel fusion strength after decoding; 0 = off
    flow: str = "dis"
    # frames and sizes
    batch_frames: int = 8
    max_frames: int | None = None
    resize: tuple[int, int] | None = None  # (width, height), rounded to multiples of 8
    vae_tiling: bool = False

    def validate(self) -> None:
        super().validate()
        check(bool(self.style.strip()), "--style must not be empty")
        check(self.text_branch in TEXT_BRANCHES, f"--text-branch must be one of {', '.join(TEXT_BRANCHES)}")
        check(self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}")
        check(self.clip_guidance >= 0, "--clip-guidance must be >= 0")
        check(self.clip_steps >= 0, "--clip-steps must be >= 0")
        lo, hi = self.fuse_window
        check(
            0 <= lo <= hi <= 1, f"--fuse-window must be START:END with 0 <= START <= END <= 1 (got {lo}:{hi})"
        )
        check(0 <= self.fuse_strength <= 1, "--fuse-strength must be in [0, 1]")
        check(0 <= self.deflicker <= 1, "--deflicker must be in [0, 1]")
        check(self.batch_frames >= 1, "--batch-frames must be at least 1")
        check(self.max_frames is None or self.max_frames >= 1, "--max-frames must be at least 1")
