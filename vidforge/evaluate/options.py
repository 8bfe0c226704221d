"""Evaluation options (SPEC section 4)."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import check

WEIGHT_FREE_METRICS = ("warp-error", "flicker", "motion", "repetition")
MODEL_METRICS = ("clip-text", "clip-frame", "clip-content", "pic", "fvd", "kvd")
METRICS = WEIGHT_FREE_METRICS + MODEL_METRICS


@dataclass(frozen=True)
class EvaluateOptions:
    metrics: tuple[str, ...] = WEIGHT_FREE_METRICS
    source: str | None = None  # source video (warp-error flow, clip-content), or a folder/list for fvd
    prompt: str | None = None  # clip-text
    flow: str = "dis"  # "dis" (OpenCV, no weights) or "raft" (torchvision RAFT-large, cached weights)
    max_frames: int | None = None
    resize: tuple[int, int] | None = None  # (width, height)
    clip_model: str = "ViT-L-14/openai"
    warp_variant: str = "lai"  # "lai" (MSE) or "dvp" (L1, short + long term)
    clip_frame_variant: str = "consecutive"  # or "all-pairs"
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        check(
            not unknown, f"--metric: unknown metric {', '.join(unknown)} (choose from {', '.join(METRICS)})"
        )
        check(self.flow in ("dis", "raft"), "--flow must be dis or raft")
        check(self.max_frames is None or self.max_frames >= 2, "--max-frames must be at least 2")
        check(self.warp_variant in ("lai", "dvp"), "--warp-variant must be lai or dvp")
        check(
            self.clip_frame_variant in ("consecutive", "all-pairs"),
            "--clip-frame-variant must be consecutive or all-pairs",
        )
        check("clip-text" not in self.metrics or bool(self.prompt), "--metric clip-text needs --prompt")
