"""DynamiCrafter options (SPEC section 2). Per-model defaults (fps, rescale, size...) are None here and
filled from the model's config (``DynamiCrafterConfig``) by the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from vidforge.core.options import RunOptions, check, check_scale

# VAE decode chunk: as many frames as fit in two 320x512 frames' worth of pixels (2 at 320x512,
# 1 at 576x1024 like the authors' per-frame decoding, 6 at 256x256); 1 with --vae-slicing.
VAE_DECODE_PIXELS = 2 * 320 * 512


@dataclass(frozen=True)
class AnimateOptions(RunOptions):
    prompt: str = ""
    steps: int = 50
    eta: float = 1.0
    text_scale: float = 7.5
    image_scale: float | None = None  # multi-condition CFG when set; plain CFG otherwise
    guidance_rescale: float | None = None  # None: 0.7 for v-prediction models, 0 otherwise
    frames: int = 16
    fps: int | None = None  # 512/1024 models: fps conditioning (default 24 / 10)
    frame_stride: int | None = None  # 256 model: frame stride conditioning (default 3)
    end_image: str | None = None  # interp model: last frame
    loop: bool = False  # interp model: end on the input image
    height: int | None = None  # None: the model's native size
    width: int | None = None
    output_fps: float = 8.0  # the authors save at 8 fps, whatever the fps conditioning
    vae_fp32: bool = True  # decode the VAE in fp32 (fp16 VAE decodes can give NaNs)

    def validate(self) -> None:
        super().validate()
        check(self.frames >= 1, f"--frames must be at least 1 (got {self.frames})")
        check(0 <= self.eta <= 1, "--eta must be in [0, 1]")
        check(self.fps is None or self.fps >= 1, "--fps must be at least 1")
        check(self.frame_stride is None or self.frame_stride >= 1, "--frame-stride must be at least 1")
        for name in ("height", "width"):
            v = getattr(self, name)
            check(v is None or (v > 0 and v % 64 == 0), f"--{name} must be a positive multiple of 64")
        check(not (self.loop and self.end_image), "--loop and --end-image exclude each other")
        check_scale("text_scale", self.text_scale, 0.0)
        check_scale("image_scale", self.image_scale, 0.0)
        check(0 < self.output_fps <= 1000, f"--output-fps must be in (0, 1000] (got {self.output_fps})")
        check(self.fps is None or self.fps <= 1000, "--fps must be at most 1000")
        check(
            self.guidance_rescale is None or 0 <= self.guidance_rescale <= 1,
            "--guidance-rescale must be in [0, 1]",
        )
