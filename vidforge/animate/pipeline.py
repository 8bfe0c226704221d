"""``vidforge animate``: DynamiCrafter image animation (Xing et al. 2023), SPEC section 2.

:func:`run` reads like the paper: check inputs, load the model, prepare the image, encode the two
image streams (CLIP tokens for cross-attention, VAE latent concatenated to the noise), denoise
with DDIM and multi-condition guidance, decode frame chunks and stream them to the video file.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from vidforge.animate.options import FRAME_STRIDE_OUTPUT_FPS, VAE_DECODE_PIXELS, AnimateOptions
from vidforge.animate.sampler import CFGDenoiser, sample_ddim, schedule_for_config, schedule_mismatches
from vidforge.core.options import Result, check
from vidforge.core.vae import vae_to_fp32
from vidforge.errors import VidforgeError

ImageInput = str | os.PathLike | np.ndarray


@torch.no_grad()
def run(
    image: ImageInput,
    options: AnimateOptions | None = None,
    output: str | os.PathLike | None = None,
    bars=None,
    model=None,
    **overrides,
) -> Result:
    """Animate ``image`` (a path or an ``(H, W, 3)`` uint8 array) into ``options.frames`` frames.

    ``output``: a video path (.mp4, .gif, .png sequence) written atomically; without it the frames
    come back in ``Result.frames`` as ``(F, H, W, 3)`` uint8. ``model``: an already loaded
    ``DynamiCrafter`` (skips loading). ``overrides`` replace option fields
    (``run(img, prompt="waves")``).
    """
    from vidforge.core.attention import apply_attention_backend, select_backend
    from vidforge.core.device import make_generator, randn, select_device, select_dtype
    from vidforge.core.progress import Bars, Timer

    timer = Timer()
    options = dataclasses.replace(options or AnimateOptions(), **overrides)
    bars = bars or Bars(disable=True)

    # 0. Check inputs (cheap checks first: no model is loaded for a bad file or option)
    options.validate()
    first = _read_input_image(image, "image")
    last = _read_input_image(options.end_image, "--end-image") if options.end_image else None
    if model is not None and options.device == "auto":  # a loaded model stays where it is
        device = next(model.parameters()).device
    else:
        device = select_device(options.device)
    dtype = select_dtype(device, options.dtype)
    backend = select_backend(options.attention, device)

    # 1. Load the model (preset, hub id or local checkpoint; `tiny` = seeded random weights)
    if model is None:
        # GPU: half-precision weights under autocast. CPU: fp32 weights, bf16 only through autocast
        # (CPU kernels refuse fp32 activations with bf16 norm weights).
        weights_dtype = dtype if device.type == "cuda" else torch.float32
        model, model_name = load_animate_model(options.model, device, weights_dtype, options)
    else:
        model_name = getattr(model.config, "name", type(model).__name__)
    config = model.config
    check_options_for_config(options, config)
    check_schedule(model, model_name)
    if options.vae_fp32 and model.vae.dtype != torch.float32:
        vae_to_fp32(model.vae)  # fp16 VAE decodes give NaNs (a known DynamiCrafter complaint)
    apply_attention_backend(model.vae, backend)  # our UNet/Resampler read the backend at call time

    # 2. Per-model settings: size, fps conditioning, guidance rescale
    height, width = options.height or config.resolution[0], options.width or config.resolution[1]
    fps_cond = fps_conditioning(options, config)
    guidance_rescale = (
        config.guidance_rescale if options.guidance_rescale is None else options.guidance_rescale
    )
    num_frames = options.frames

    # 3. Prepare the image(s): cover-resize + center crop to (height, width), [-1, 1]
    generator = make_generator(options.seed, "cpu")
    images = [preprocess_image(first, height, width)]
    if config.interp:  # interp/loop: the last frame is the end image (or the input again)
        images.append(preprocess_image(last, height, width) if last is not None else images[0])
    images = torch.cat(images).to(device)  # (1 or 2, 3, H, W)

    # 4. Encode the conditions
    #    context stream: text (prompt / empty) + CLIP image tokens (image / zero image = mid-gray)
    autocast_dtype = dtype if dtype != torch.float32 else None
    with torch.autocast(
        device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
    ):
        contexts = encode_contexts(model, options.prompt, images[:1], options.text_scale, options.image_scale)
    #    detail stream: 0.18215·VAE.encode(img).sample() on every frame (interp: first and last only)
    image_latents = prepare_image_latents(model.vae, images, num_frames, config.interp, generator)

    # 5. Timesteps
    schedule = schedule_for_config(config, options.steps)

    # 6. Initial noise x_T ~ N(0, I), (1, 4, F, h, w)
    noise = randn((1, model.vae.config.latent_channels, *image_latents.shape[2:]), generator, device)

    # 7. Denoise: DDIM + (multi-condition) CFG, all branches in one batched UNet call per step
    denoiser = CFGDenoiser(
        model,
        contexts,
        image_latents,
        torch.full((1,), fps_cond, dtype=torch.long, device=device),
        text_scale=options.text_scale,
        image_scale=options.image_scale,
        guidance_rescale=guidance_rescale,
        autocast_dtype=autocast_dtype,
    )
    try:
        latents = sample_ddim(
            denoiser,
            noise,
            schedule,
            eta=options.eta,
            generator=generator,
            progress=lambda it: bars.track(it, "denoise", total=len(schedule)),
        )
    except torch.cuda.OutOfMemoryError as e:
        raise VidforgeError(
            f"out of GPU memory denoising {num_frames} frames at {width}x{height}: "
            "try fewer --frames, a smaller --width/--height, or --attention xformers"
        ) from e
    latents = latents[0].transpose(0, 1)  # (F, 4, h, w)
    if options.loop:  # the last frame repeats the first: drop it so the video loops seamlessly
        latents = latents[:-1]

    # 8. Decode in chunks (fp32 VAE by default) and 9. stream the frames to the output
    out_fps = output_fps(config, fps_cond)
    chunk = 1 if options.decode_per_frame else max(1, VAE_DECODE_PIXELS // (height * width))
    vae_dtype = torch.float32 if options.vae_fp32 else model.vae.dtype
    try:
        frames = write_frames(model.vae, latents, chunk, vae_dtype, output, out_fps, bars)
    except torch.cuda.OutOfMemoryError as e:
        raise VidforgeError(
            f"out of GPU memory decoding {width}x{height} frames: try --decode-per-frame"
        ) from e

    info = {
        "command": "animate",
        "model": model_name,
        "seed": options.seed,
        "steps": options.steps,
        "eta": options.eta,
        "attention": backend,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "size": [width, height],
        "prediction_type": config.prediction_type,
        "timestep_spacing": config.timestep_spacing,
        f"cond_{config.fps_conditioning}": fps_cond,  # cond_fps or cond_frame_stride
        "text_scale": options.text_scale,
        "image_scale": options.image_scale,
        "guidance_rescale": guidance_rescale,
    }
    return Result(
        output=Path(output) if output is not None else None,
        num_frames=int(latents.shape[0]),
        fps=float(out_fps),
        seconds=timer.seconds,
        frames=None if output is not None else frames,
        info=info,
    )


# -------------------------------------------------------------------------------------------- steps


def _read_input_image(image: ImageInput, what: str) -> np.ndarray:
    """A path or an ``(H, W, 3)`` uint8 array -> ``(H, W, 3)`` uint8, with one-line errors."""
    from vidforge.core.video_io import read_image

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise VidforgeError(f"{what}: expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
        return image
    try:
        return read_image(image)
    except VidforgeError as e:
        if what == "image":
            raise
        raise VidforgeError(f"{what}: {e}") from e


def load_animate_model(name, device: torch.device, dtype: torch.dtype, options: AnimateOptions):
    """Resolve ``--model`` and load it; interp-only options are refused before any weights load."""
    from vidforge.animate.model import PRESET_CONFIGS, load_model
    from vidforge.core.models import resolve_model

    source = resolve_model(name, "animate")
    known = PRESET_CONFIGS.get(source.name)
    if known is not None:
        check_options_for_config(options, known)
    try:
        return load_model(source, device, dtype), source.name
    except torch.cuda.OutOfMemoryError as e:
        raise VidforgeError(
            f"--model {source.name}: out of GPU memory while loading (try --dtype fp16, or a smaller model)"
        ) from e


def check_schedule(model, name: str) -> None:
    """The checkpoint's own noise-schedule buffers must match the config's schedule."""
    bad = schedule_mismatches(model.config, getattr(model, "schedule", None) or {})
    if bad:
        raise VidforgeError(
            f"--model {name}: the checkpoint's {' and '.join(bad)} do not match the {model.config.name!r} "
            "release settings (zero-SNR, dynamic rescale); is it a different DynamiCrafter release?"
        )


def check_options_for_config(options: AnimateOptions, config) -> None:
    """Options that only some DynamiCrafter variants accept."""
    if not config.interp:
        check(
            options.end_image is None and not options.loop,
            f"--end-image/--loop need an interpolation model (--model dynamicrafter-512-interp); "
            f"{config.name!r} animates a single image",
        )
    if config.fps_conditioning == "fps":
        check(
            options.frame_stride is None,
            f"--frame-stride applies to the 256 model; {config.name!r} is conditioned on --fps",
        )
    else:
        check(
            options.fps is None, f"--fps applies to the 512/1024 models; {config.name!r} takes --frame-stride"
        )
    if options.loop:
        check(options.frames >= 3, "--loop needs --frames >= 3 (the repeated last frame is dropped)")


def fps_conditioning(options: AnimateOptions, config) -> int:
    """The fps (512/1024) or frame-stride (256) value fed to ``fps_embedding``."""
    value = options.fps if config.fps_conditioning == "fps" else options.frame_stride
    return int(value if value is not None else config.default_fps)


def output_fps(config, fps_cond: int) -> int:
    """fps-conditioned models play at their conditioning fps; the frame-stride model at 8 fps."""
    return fps_cond if config.fps_conditioning == "fps" else FRAME_STRIDE_OUTPUT_FPS


def preprocess_image(image: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``(H0, W0, 3)`` uint8 -> ``(1, 3, height, width)`` float in [-1, 1]: resize so the image
    covers the target (aspect kept), then center crop. No padding, no distortion."""
    from vidforge.core.vae import to_tensor
    from vidforge.core.video_io import resize_cover

    return to_tensor(resize_cover(image[None], (width, height)))


def encode_contexts(
    model, prompt: str, image: torch.Tensor, text_scale: float, image_scale: float | None
) -> dict[str, torch.Tensor]:
    """Cross-attention contexts ``cat(text77, image_tokens)`` for each guidance branch.

    ``c`` = (prompt, image); ``img`` = (empty, image); ``u`` = (empty, zero image). The zero image
    is 0 in [-1, 1], i.e. mid-gray, as the authors' unconditional image tokens.
    """
    branches = CFGDenoiser.branch_names(text_scale, image_scale)
    prompts = [prompt] + ([""] if len(branches) > 1 else [])
    text = model.encode_text(prompts)  # (1 or 2, 77, D)
    images = torch.cat([image, torch.zeros_like(image)]) if "u" in branches else image
    tokens = model.encode_image_tokens(images)  # (1 or 2, L, D)
    contexts = {"c": torch.cat([text[:1], tokens[:1]], dim=1)}
    if "u" in branches:
        contexts["u"] = torch.cat([text[1:2], tokens[1:2]], dim=1)
    if "img" in branches:
        contexts["img"] = torch.cat([text[1:2], tokens[:1]], dim=1)
    return contexts


def prepare_image_latents(
    vae, images: torch.Tensor, num_frames: int, interp: bool, generator: torch.Generator
) -> torch.Tensor:
    """The concat stream ``(1, 4, F, h, w)``: the image latent ``s·E(img).sample()`` on every frame;
    interp/loop models: the first and last image's latents on the first and last frame, zeros between."""
    from vidforge.core.vae import encode_frames

    z = encode_frames(vae, images, chunk_size=2, sample=True, generator=generator).float()  # (n, 4, h, w)
    if not interp:
        return z[:1, :, None].expand(-1, -1, num_frames, -1, -1).contiguous()
    out = torch.zeros(1, z.shape[1], num_frames, *z.shape[2:], device=z.device)
    out[:, :, 0] = z[0]
    out[:, :, -1] = z[-1]
    return out


def write_frames(vae, latents: torch.Tensor, chunk: int, vae_dtype, output, fps: float, bars):
    """Decode ``(F, 4, h, w)`` latents ``chunk`` frames at a time; stream to ``output`` if given,
    else return all frames ``(F, H, W, 3)`` uint8."""
    from vidforge.core.vae import decode_latents, to_uint8
    from vidforge.core.video_io import VideoWriter

    def decoded():
        for part in bars.track(latents.split(chunk), "decode", total=-(-latents.shape[0] // chunk)):
            frames = decode_latents(vae, part, chunk_size=chunk, dtype=vae_dtype)
            if not torch.isfinite(frames).all():
                raise VidforgeError("the VAE decode produced NaN/inf values (decode in fp32: --vae-fp32)")
            yield to_uint8(frames)

    if output is None:
        return np.concatenate(list(decoded()))
    with VideoWriter(output, fps) as writer:
        for frames in decoded():
            writer.write(frames)
    return None
