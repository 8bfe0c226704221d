"""Options every generating command shares, and the result every command returns."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from vidforge.errors import OptionError

ATTENTION_BACKENDS = ("auto", "xformers", "sdpa")
DTYPE_NAMES = ("auto", "fp32", "fp16", "bf16")
CODEC_NAMES = ("h264", "h265", "vp9", "prores", "ffv1")  # core.writers.CODECS, without importing it
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes 64-bit seeds; -1 means "pick one"
MAX_SIDE = 8192  # larger frames would need tens of GB for one latent: refused up front
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
OFFLOAD_MODES = ("none", "model", "sequential")
MAX_GUIDANCE = 100.0  # a guidance scale beyond this only saturates (1e308 overflowed to black frames)


@dataclass(frozen=True)
class RunOptions:
    """Model, sampling length, seed and hardware. Subclasses add the method's own knobs."""

    model: str | None = None  # preset, hub id or local path; None: the command's default preset
    steps: int = 30
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "auto"
    # memory: accelerate's CPU offload hooks (as diffusers' enable_model_cpu_offload /
    # enable_sequential_cpu_offload), VAE one frame at a time (slicing) or in tiles, torch.compile
    offload: str = "none"
    vae_slicing: bool = False
    vae_tiling: bool = False
    compile: bool = False
    # output file
    codec: str | None = None  # None: the container's default (h264; vp9 for .webm)
    crf: int | None = None  # None: the codec's default (h264 18, h265 22, vp9 31)

    def vae_chunk(self, frames: int) -> int:
        """Frames per VAE call: the command's ``frames``, or one with ``--vae-slicing`` (the least
        memory)."""
        return 1 if self.vae_slicing else frames

    def resolved(self):
        """These options with every "the default depends" value (None) filled in: what a run uses
        and its settings record keeps. Commands whose defaults depend on a choice override it."""
        return self

    def validate(self) -> None:
        check_finite(self)
        check_seed(self.seed)
        check(
            DEVICE.fullmatch(self.device) is not None,
            f"--device {self.device!r}: unknown device (use auto, cpu, cuda or cuda:N)",
        )
        check(self.offload in OFFLOAD_MODES, f"--offload must be one of {', '.join(OFFLOAD_MODES)}")
        check(
            self.codec is None or self.codec in CODEC_NAMES,
            f"--codec must be one of {', '.join(CODEC_NAMES)}",
        )
        check(self.crf is None or 0 <= self.crf <= 63, f"--crf must be in [0, 63] (got {self.crf})")
        check(self.steps >= 1, f"--steps must be at least 1 (got {self.steps})")
        check(self.steps <= 1000, f"--steps must be at most 1000, the training timesteps (got {self.steps})")
        check(
            self.attention in ATTENTION_BACKENDS,
            f"--attention must be one of {', '.join(ATTENTION_BACKENDS)}",
        )
        check(self.dtype in DTYPE_NAMES, f"--dtype must be one of {', '.join(DTYPE_NAMES)}")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise OptionError(message)


def check_finite(options) -> None:
    """Every float of an options object (tuples included) must be finite: NaN or ±inf in a scale
    or a strength gives NaN latents, i.e. black frames, without any error."""
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise OptionError(f"{option(f.name)} must be a finite number (got {v})")


def check_scale(
    name: str, value: float | None, low: float = -MAX_GUIDANCE, high: float = MAX_GUIDANCE
) -> None:
    """A guidance scale (or similar factor) within ``[low, high]``."""
    check(
        value is None or low <= value <= high, f"{option(name)} must be in [{low:g}, {high:g}] (got {value})"
    )


def check_seed(seed: int) -> None:
    check(-1 <= seed <= MAX_SEED, f"--seed must be -1 (random) or in [0, {MAX_SEED}] (got {seed})")


def option(name: str) -> str:
    """The command-line spelling of an options field: ``text_scale`` -> ``--text-scale``."""
    return "--" + name.replace("_", "-")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"512x320"`` -> ``(512, 320)`` (width, height)."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise OptionError(f"--resize {text!r}: expected WIDTHxHEIGHT, e.g. 512x320") from None
    check(w > 0 and h > 0, f"--resize {text!r}: width and height must be positive")
    check(max(w, h) <= MAX_SIDE, f"--resize {text!r}: at most {MAX_SIDE} pixels per side")
    return w, h


@dataclass
class Result:
    """What a command produced: the output file (or frames when no output was asked for) and timing."""

    output: Path | None
    num_frames: int
    fps: float
    seconds: float
    frames: object = None  # (F, H, W, 3) uint8 numpy when run without an output path
    info: dict = field(default_factory=dict)  # model, seed, backend, method details
    settings: dict | None = None  # the settings record (core.settings), also beside the output
    note: str = ""  # for the summary line, e.g. a processing size other than the input's

    def to_json(self) -> str:
        """``--json``: the settings record (the same keys for every command)."""
        if self.settings is not None:
            return json.dumps(self.settings)
        return json.dumps(
            {
                "output": str(self.output) if self.output else None,
                "frames": self.num_frames,
                "fps": self.fps,
                "seconds": round(self.seconds, 3),
                "seconds_per_frame": round(self.seconds / max(self.num_frames, 1), 4),
                **self.info,
            }
        )
