"""Evaluation options (SPEC section 4). The only place these defaults are written."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import check, check_finite, check_seed

WEIGHT_FREE_METRICS = ("warp-error", "flicker", "motion", "repetition")  # the default set
OPT_IN_METRICS = ("seams",)  # weight-free too, asked for by name
MODEL_METRICS = ("clip-text", "clip-frame", "clip-content", "pic", "fvd", "kvd")
METRICS = WEIGHT_FREE_METRICS + OPT_IN_METRICS + MODEL_METRICS
SET_METRICS = ("fvd", "kvd")  # compare two sets of videos, not one video
PIC_DISTANCES = ("dreamsim", "lpips")


@dataclass(frozen=True)
class EvaluateOptions:
    metrics: tuple[str, ...] = WEIGHT_FREE_METRICS
    # a source video (warp-error flow, clip-content, pic), an image (pic), or a folder/list of
    # videos: paired with the inputs in order when counts match, and the reference set for fvd/kvd
    source: str | None = None
    prompt: str | None = None  # clip-text
    prompts: str | None = (
        None  # clip-text per video: a JSON file {file name: prompt}; --prompt is the fallback
    )
    flow: str = "dis"  # "dis" (OpenCV, no weights) or "raft" (torchvision RAFT-large, cached weights)
    max_frames: int | None = None
    resize: tuple[int, int] | None = None  # (width, height)
    clip_model: str = "ViT-L-14/openai"
    warp_variant: str = "lai"  # "lai" (MSE) or "dvp" (L1, short + long term)
    clip_frame_variant: str = "consecutive"  # or "all-pairs" (Tune-A-Video)
    pic_distance: str = "dreamsim"  # DynamiCrafter's PIC uses DreamSim; "lpips" is the fallback variant
    i3d: str | None = None  # TorchScript I3D (StyleGAN-V's i3d_torchscript.pt); None: look in the cache
    seam_threshold: float = 2.5  # seams: a pair changing this many times its neighbourhood's median
    fvd_frames: int = 16  # frames per video fed to I3D (StyleGAN-V protocol)
    fvd_size: int = 224  # I3D input: shorter side resized to this, then centre-cropped square
    kvd_subsets: int = 100  # KID-style subset estimate (StyleGAN-V / StyleGAN2-ADA)
    kvd_subset_size: int = 1000
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        check_finite(self)
        check_seed(self.seed)
        unknown = [m for m in self.metrics if m not in METRICS]
        check(
            not unknown, f"--metric: unknown metric {', '.join(unknown)} (choose from {', '.join(METRICS)})"
        )
        check(self.flow in ("dis", "raft"), "--flow must be dis or raft")
        check(self.max_frames is None or self.max_frames >= 2, "--max-frames must be at least 2")
        check(self.seam_threshold > 1, f"--seam-threshold must be above 1 (got {self.seam_threshold})")
        check(self.warp_variant in ("lai", "dvp"), "--warp-variant must be lai or dvp")
        check(
            self.clip_frame_variant in ("consecutive", "all-pairs"),
            "--clip-frame-variant must be consecutive or all-pairs",
        )
        check(self.pic_distance in PIC_DISTANCES, f"--pic-distance must be one of {', '.join(PIC_DISTANCES)}")
        check(
            "clip-text" not in self.metrics or bool(self.prompt) or bool(self.prompts),
            "--metric clip-text needs --prompt (one for every video) or --prompts FILE (per video)",
        )
        for name in ("clip-content", "pic", "fvd", "kvd"):
            check(
                name not in self.metrics or bool(self.source),
                f"--metric {name} needs --source ({_SOURCE_HELP[name]})",
            )
        check(
            self.fvd_frames >= 1 and self.fvd_size >= 8,
            "--fvd-frames must be >= 1 (and the FVD frame size >= 8)",
        )
        check(self.kvd_subsets >= 1 and self.kvd_subset_size >= 2, "kvd subsets need >= 1 subset of >= 2")


_SOURCE_HELP = {
    "clip-content": "the input video the output was made from",
    "pic": "the input image or video whose first frame was animated",
    "fvd": "a folder or .txt list of reference videos",
    "kvd": "a folder or .txt list of reference videos",
}
