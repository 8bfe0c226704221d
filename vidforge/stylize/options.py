"""Style-A-Video options (SPEC section 1). The only place these defaults are written."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import RunOptions, check, check_scale

TEXT_BRANCHES = ("paper", "image")
# frames: the diffusion model on every frame (Style-A-Video); keyframes: on keyframes only (StableVideo);
# atlas: one edit of a canonical image, every frame rendered from it (CoDeF fields; stylize/atlas)
MODES = ("frames", "keyframes", "atlas")
# Only samplers whose step reads (z_t, eps_t) alone: latent fusion rewrites eps and the CLIP step
# shifts z_t between steps, which would silently invalidate a multistep solver's history.
SCHEDULERS = ("ddim", "euler", "euler-a")
MULTISTEP_SCHEDULERS = ("dpm-solver", "dpm-solver++", "unipc", "lms", "pndm", "heun")


@dataclass(frozen=True)
class StylizeOptions(RunOptions):
    style: str = ""  # the style prompt, e.g. "ink wash painting"
    mode: str = "frames"
    steps: int = 30  # DDIM 30 steps (paper)
    # four-branch guidance: eps∅ + sI(epsI-eps∅) + sT(epsT-eps∅) + sM(epsM-eps∅)
    image_scale: float = 1.5  # sI: low end of SPEC's 1.5-2.5 sweep, InstructPix2Pix's own default
    text_scale: float = 7.5  # sT: top of SPEC's 5-7.5 sweep, the CFG value SD1.5 was tuned at
    attn_scale: float = 0.5  # sM: low end of SPEC's 0.5-1; larger values pull harder towards the input
    text_branch: str = "paper"  # "paper": eps(z, ∅, c_T); "image": eps(z, c_I, c_T) as InstructPix2Pix
    scheduler: str = "ddim"
    # CLIP sampling optimization: z_t - λ·g/‖g‖·‖z_t‖ on the first `clip_steps` steps.
    # Off by default (λ = 0): it needs a second model download and a VAE-decoder backward per step.
    clip_guidance: float = 0.0
    clip_steps: int = 5
    clip_model: str = "ViT-B-32/openai"  # open_clip MODEL/PRETRAINED; "tiny" presets use a tiny CLIP
    # temporal consistency
    fuse_window: tuple[float, float] = (0.0, 0.5)  # first half of the schedule: where layout is decided
    fuse_strength: float = 0.5
    deflicker: float = 0.5  # pixel fusion strength after decoding; 0 = off
    flow: str = "dis"
    # frames and sizes
    batch_frames: int = 8  # 8 frames x 4 branches = UNet batch 32
    max_frames: int | None = None
    resize: tuple[int, int] | None = None  # (width, height); processed at multiples of 8
    # SD1.5 was trained at 512 px: a 1080p or 4K frame means huge latents (memory, minutes per
    # frame) and worse results; larger frames are processed at this longer side and resized back
    max_side: int = 768
    # --mode keyframes (stylize/keyframes.py)
    keyframe_interval: int | str = 8  # every K-th frame and the last; "auto": by accumulated motion
    propagation_strength: float = 0.6  # SDEdit strength of a carried-over keyframe; 1 = independent
    # --mode atlas: the fit (CoDeF: 16 levels, 2^19 entries; sized for a GPU, see README)
    atlas_iterations: int = 3000
    atlas_batch: int = 65536  # pixels drawn per fit iteration
    atlas_levels: int = 16  # hash-grid levels of both fields
    atlas_table: int = 19  # log2 of the hash-table entries per level
    atlas_blend: float = 0.1  # per-frame result where the atlas's error exceeds this (RGB in [0, 1]); 0 = off
    refit: bool = False  # fit again even if a saved fit of the same frames and settings exists

    def validate(self) -> None:
        super().validate()
        check(bool(self.style.strip()), "--style must not be empty (give a style prompt, e.g. 'ink wash')")
        check(self.mode in MODES, f"--mode must be one of {', '.join(MODES)}")
        check(self.text_branch in TEXT_BRANCHES, f"--text-branch must be one of {', '.join(TEXT_BRANCHES)}")
        if self.scheduler in MULTISTEP_SCHEDULERS:
            check(
                False,
                f"--scheduler {self.scheduler}: multistep solvers keep a history that latent fusion and the "
                f"CLIP step invalidate; use one of {', '.join(SCHEDULERS)}",
            )
        check(self.scheduler in SCHEDULERS, f"--scheduler must be one of {', '.join(SCHEDULERS)}")
        for name in ("image_scale", "text_scale", "attn_scale"):
            check_scale(name, getattr(self, name))
        check(0 <= self.clip_guidance <= 1, "--clip-guidance must be in [0, 1] (λ: the step is λ·‖z_t‖)")
        check(self.clip_steps >= 0, "--clip-steps must be >= 0")
        lo, hi = self.fuse_window
        check(
            0 <= lo <= hi <= 1, f"--fuse-window must be START:END with 0 <= START <= END <= 1 (got {lo}:{hi})"
        )
        check(0 <= self.fuse_strength <= 1, "--fuse-strength must be in [0, 1]")
        check(0 <= self.deflicker <= 1, "--deflicker must be in [0, 1]")
        check(self.flow == "dis", "--flow must be dis (OpenCV DIS, no weights)")
        check(self.batch_frames >= 1, "--batch-frames must be at least 1")
        check(
            self.max_side == 0 or self.max_side >= 64,
            f"--max-side must be 0 (full size) or at least 64 (got {self.max_side})",
        )
        check(self.max_frames is None or self.max_frames >= 1, "--max-frames must be at least 1")
        check(
            self.resize is None or min(self.resize) >= 8,
            "--resize must be at least 8x8 (the VAE works on 8x8 pixel blocks)",
        )
        interval = self.keyframe_interval
        check(
            interval == "auto" or (type(interval) is int and interval >= 1),
            f"--keyframe-interval must be a whole number >= 1 or auto (got {interval})",
        )
        check(
            0 <= self.propagation_strength <= 1,
            f"--propagation-strength must be in [0, 1] (got {self.propagation_strength})",
        )

        self.validate_atlas()

    def validate_atlas(self) -> None:
        check(
            self.atlas_iterations >= 1, f"--atlas-iterations must be at least 1 (got {self.atlas_iterations})"
        )
        check(self.atlas_batch >= 1, f"--atlas-batch must be at least 1 pixel (got {self.atlas_batch})")
        check(1 <= self.atlas_levels <= 32, f"--atlas-levels must be in 1..32 (got {self.atlas_levels})")
        check(
            4 <= self.atlas_table <= 24,
            f"--atlas-table must be in 4..24, log2 entries (got {self.atlas_table})",
        )
        check(
            0 <= self.atlas_blend <= 1, f"--atlas-blend must be in [0, 1], 0 = off (got {self.atlas_blend})"
        )


def parse_keyframe_interval(text: str) -> int | str:
    """``"8"`` -> 8, ``"auto"`` -> ``"auto"`` (the range is checked by ``validate``)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        check(False, f"--keyframe-interval {text!r}: expected a whole number of frames or auto")
        raise
