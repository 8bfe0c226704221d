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

from vidforge.animate.options import VAE_DECODE_PIXELS, AnimateOptions
from vidforge.core.options import Result, check
from vidforge.core.video_io import ImageInput
from vidforge.errors import VidforgeError
from vidforge.models.dynamicrafter import conditioning


@dataclasses.dataclass(frozen=True)
class Settings:
    """The per-model values a run uses once options and the release defaults are combined."""

    height: int
    width: int
    frames: int
    fps_cond: int  # fps (512/1024) or frame stride (256)
    guidance_rescale: float
    autocast_dtype: torch.dtype | None  # half-precision activations (weights stay as loaded on CPU)


@torch.no_grad()
def run(
    image: ImageInput,
    options: AnimateOptions | None = None,
    output: str | os.PathLike | None = None,
    bars=None,
    model=None,
    *,
    overwrite: bool = False,
    **overrides,
) -> Result:
    """Animate ``image`` (a path or an ``(H, W, 3)`` uint8 array) into ``options.frames`` frames.

    ``output``: a video path (.mp4, .gif, .png sequence) written atomically (an existing one only
    with ``overwrite``); without it the frames come back in ``Result.frames`` as ``(F, H, W, 3)``
    uint8. ``model``: an already loaded
    :class:`~vidforge.models.bundle.ModelBundle` or DynamiCrafter network (skips loading).
    ``overrides`` replace option fields (``run(img, prompt="waves")``).
    """
    from vidforge.core.attention import select_backend
    from vidforge.core.device import make_generator
    from vidforge.core.progress import Bars, Phases, Timer
    from vidforge.core.settings import finish_run, resolve_seed
    from vidforge.core.video_io import load_image
    from vidforge.core.writers import check_output

    timer, phases = Timer(), Phases()
    options = resolve_seed(dataclasses.replace(options or AnimateOptions(), **overrides))
    bars = bars or Bars(disable=True)

    # 0. Check inputs (cheap checks first: no model is loaded for a bad file, option or output)
    options.validate()
    check_output(output, options, overwrite, inputs=(image, options.end_image))
    first = load_image(image, "image")
    last = load_image(options.end_image, "--end-image") if options.end_image else None
    device, dtype = select_hardware(options, model)
    backend = select_backend(options.attention, device)

    # 1. Load the model (preset, hub id or local checkpoint; `tiny` = seeded random weights)
    with phases("load"):
        bundle = prepare_model(model, options, device, dtype, backend)
    settings = prepare_settings(options, bundle.config, dtype)
    check_memory(settings, bundle, device)

    # 2. Prepare the image(s): cover-resize + centre crop to (height, width), [-1, 1]
    generator = make_generator(options.seed, "cpu")
    images = prepare_images(first, last, bundle.config.interp, settings, device)

    # 3. Encode the conditions: text + CLIP image tokens (context stream), image latents (detail stream)
    with phases("encode"):
        contexts = encode_contexts(bundle.network, options, images[:1], settings.autocast_dtype)
        latents = conditioning.image_latents(
            bundle.vae, images, settings.frames, bundle.config.interp, generator
        )

    # 4. Denoise: DDIM + (multi-condition) CFG, all branches in one batched UNet call per step
    with phases("sample"):
        latents = denoise(bundle, options, settings, contexts, latents, generator, bars)
    if options.loop:  # the last frame repeats the first: drop it so the video loops seamlessly
        latents = latents[:-1]

    # 5. Decode in chunks (fp32 VAE by default) and stream the frames to the output
    with phases("decode"):
        frames = decode_and_write(bundle.vae, latents, options, settings, (output, overwrite), bars)
    info = run_info(bundle, options, settings, backend, device, dtype)
    record = finish_run(
        "animate", options, output, inputs=describe_inputs(image, options), model=bundle,
        frames=int(latents.shape[0]), fps=options.output_fps, size=(settings.width, settings.height),
        seconds=timer.seconds, timings=phases.rounded(), details=info,
    )  # fmt: skip
    return Result(
        output=Path(output) if output is not None else None,
        num_frames=int(latents.shape[0]),
        fps=options.output_fps,
        seconds=timer.seconds,
        frames=frames,
        info=info,
        settings=record,
    )


# -------------------------------------------------------------------------------------------- steps


def select_hardware(options: AnimateOptions, model) -> tuple[torch.device, torch.dtype]:
    """The run's device (a loaded model stays where it is) and compute dtype."""
    from vidforge.core.device import select_device, select_dtype

    if model is not None and options.device == "auto":
        device = next(
            model.parameters() if isinstance(model, torch.nn.Module) else model.unet.parameters()
        ).device
    else:
        device = select_device(options.device)
    return device, select_dtype(device, options.dtype)


def prepare_model(model, options: AnimateOptions, device, dtype, backend: str):
    """Load (or wrap) the model, refuse options its release cannot take, check its schedule, put
    the VAE in fp32 (fp16 VAE decodes give NaNs) and the attention backend on it."""
    from vidforge.core.attention import apply_attention_backend
    from vidforge.core.vae import set_tiling, vae_to_fp32
    from vidforge.models import load_model, resolve_model
    from vidforge.models.bundle import ModelBundle
    from vidforge.models.dynamicrafter import load as dynamicrafter

    if model is None:
        source = resolve_model(options.model, "animate")
        if source.preset is not None and source.preset.release:  # refuse before any weights load
            from vidforge.models.dynamicrafter.config import get_config

            check_options_for_config(options, get_config(source.preset.release))
        # GPU: half-precision weights under autocast. CPU: fp32 weights, bf16 only through autocast
        # (CPU kernels refuse fp32 activations with bf16 norm weights).
        weights_dtype = dtype if device.type == "cuda" else torch.float32
        try:
            model = load_model(source, "animate", device, weights_dtype, options.offload, options.compile)
        except torch.cuda.OutOfMemoryError as e:
            raise VidforgeError(
                f"--model {source.name}: out of GPU memory while loading (try --dtype fp16, or a smaller model)"
            ) from e
    elif not isinstance(model, ModelBundle):  # a DynamiCrafter network
        dynamicrafter.check_schedule(model, model.config.name)
        model = dynamicrafter.bundle(model, model.config.name)
    check_options_for_config(options, model.config)
    if options.vae_fp32 and model.vae.dtype != torch.float32:
        vae_to_fp32(model.vae)
    set_tiling(model.vae, options.vae_tiling)
    apply_attention_backend(model.vae, backend)  # our UNet/Resampler read the backend at call time
    return model


def check_options_for_config(options: AnimateOptions, config) -> None:
    """Options that only some DynamiCrafter releases accept."""
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


def prepare_settings(options: AnimateOptions, config, dtype: torch.dtype) -> Settings:
    """Size, fps conditioning and guidance rescale: the options where given, else the release's."""
    rescale = config.guidance_rescale if options.guidance_rescale is None else options.guidance_rescale
    return Settings(
        height=options.height or config.resolution[0],
        width=options.width or config.resolution[1],
        frames=options.frames,
        fps_cond=conditioning.fps_conditioning(config, options.fps, options.frame_stride),
        guidance_rescale=rescale,
        autocast_dtype=dtype if dtype != torch.float32 else None,
    )


# Activation memory of the video UNet, in elements per latent pixel, per frame, per guidance branch
# and per model channel: the skip connections of every level plus the widest transient layers
# (measured order of magnitude; used to refuse impossible runs, not to plan tight ones).
ACTIVATIONS_PER_CHANNEL = 20


def check_memory(settings: Settings, bundle, device) -> None:
    """Refuse a run whose activations alone would not fit (``--frames 100000`` grew past 5 GB
    before failing), naming the options to change."""
    from vidforge.core.device import available_memory

    unet = getattr(bundle.config, "unet", None)
    free = available_memory(device)
    if unet is None or free is None:
        return
    factor = bundle.vae_scale_factor
    latent_pixels = (settings.height // factor) * (settings.width // factor)
    element = 2 if settings.autocast_dtype is not None or bundle.dtype != torch.float32 else 4
    channels = bundle.config.unet.model_channels
    need = (
        ACTIVATIONS_PER_CHANNEL * channels * latent_pixels * settings.frames * 3 * element
    )  # up to 3 branches
    if free is not None and need > free:
        raise VidforgeError(
            f"--frames {settings.frames} at {settings.width}x{settings.height} needs about {need / 2**30:.1f} GiB "
            f"for the UNet alone, more than the {free / 2**30:.1f} GiB free on {device}: lower --frames or "
            "--width/--height"
        )


def prepare_images(first: np.ndarray, last: np.ndarray | None, interp: bool, settings: Settings, device):
    """``(1 or 2, 3, H, W)`` in [-1, 1]; interp/loop models also get the last frame (the end image,
    or the input again)."""
    images = [conditioning.preprocess_image(first, settings.height, settings.width)]
    if interp:
        images.append(
            conditioning.preprocess_image(last, settings.height, settings.width)
            if last is not None
            else images[0]
        )
    return torch.cat(images).to(device)


def guidance_branches(options: AnimateOptions) -> tuple[str, ...]:
    """Branches of the batched UNet call: ``c`` = (prompt, image), ``img`` = (empty, image), ``u`` =
    (empty, zero image); plain CFG uses ``u, c``; ``--text-scale 1`` without an image scale only ``c``."""
    if options.image_scale is not None:
        return ("u", "img", "c")
    return ("c",) if options.text_scale == 1 else ("u", "c")


def encode_contexts(network, options: AnimateOptions, image: torch.Tensor, autocast_dtype) -> dict:
    """The cross-attention context of each guidance branch (see :func:`guidance_branches`)."""
    branches = guidance_branches(options)
    texts = [options.prompt] + ([""] if len(branches) > 1 else [])
    images = torch.cat([image, torch.zeros_like(image)]) if "u" in branches else image
    pairs = {"c": (0, 0), "u": (1, 1), "img": (1, 0)}
    enabled = autocast_dtype is not None
    with torch.autocast(image.device.type, dtype=autocast_dtype or torch.float32, enabled=enabled):
        return conditioning.encode_contexts(network, texts, images, {b: pairs[b] for b in branches})


def guidance(options: AnimateOptions, guidance_rescale: float):
    """Combine the branch outputs: multi-condition CFG with ``--image-scale``, else plain CFG, then
    guidance rescale; a lone ``c`` branch as it is."""
    from vidforge.sampling.guidance import cfg, multi_cond_cfg, rescale_guidance

    def combine(outs: dict[str, torch.Tensor]) -> torch.Tensor:
        if len(outs) == 1:
            return outs["c"]
        if options.image_scale is None:
            guided = cfg(outs["u"], outs["c"], options.text_scale)
        else:
            guided = multi_cond_cfg(
                outs["u"], outs["img"], outs["c"], options.text_scale, options.image_scale
            )
        return rescale_guidance(guided, outs["c"], guidance_rescale)

    return combine


def denoise(bundle, options: AnimateOptions, settings: Settings, contexts, latents, generator, bars):
    """DDIM from x_T ~ N(0, I) with every guidance branch in one UNet call per step -> ``(F, 4, h, w)``."""
    from vidforge.core.device import randn
    from vidforge.sampling.ddim import sample_ddim
    from vidforge.sampling.denoisers import Denoiser
    from vidforge.sampling.guidance import BatchedGuidance
    from vidforge.sampling.schedules import ddim_schedule

    unet = conditioning.conditioned_unet(bundle.network, latents, settings.fps_cond, settings.autocast_dtype)
    guided = BatchedGuidance(unet, contexts, guidance(options, settings.guidance_rescale))
    denoiser = Denoiser(guided, bundle.noise_schedule.prediction_type)
    schedule = ddim_schedule(bundle.noise_schedule, options.steps)
    noise = randn((1, bundle.latent_channels, *latents.shape[2:]), generator, latents.device)
    try:
        out = sample_ddim(
            denoiser, noise, schedule, eta=options.eta, generator=generator,
            progress=lambda it: bars.track(it, "denoise", total=len(schedule)),
        )  # fmt: skip
    except torch.cuda.OutOfMemoryError as e:
        raise VidforgeError(
            f"out of GPU memory denoising {settings.frames} frames at {settings.width}x{settings.height}: "
            "try fewer --frames, a smaller --width/--height, or --attention xformers"
        ) from e
    return out[0].transpose(0, 1)  # (F, 4, h, w)


def decode_and_write(vae, latents, options: AnimateOptions, settings: Settings, target, bars):
    """Decode ``(F, 4, h, w)`` latents a chunk of frames at a time (one with ``--vae-slicing``);
    stream them at ``--output-fps`` to ``target = (output, overwrite)`` if there is an output,
    else return all frames ``(F, H, W, 3)`` uint8."""
    from vidforge.core.settings import comment
    from vidforge.core.vae import decode_latents, to_uint8
    from vidforge.core.writers import Sink, output_settings

    output, overwrite = target
    pixels = settings.height * settings.width
    chunk = options.vae_chunk(max(1, VAE_DECODE_PIXELS // pixels))
    vae_dtype = torch.float32 if options.vae_fp32 else vae.dtype

    def decoded():
        for part in bars.track(latents.split(chunk), "decode", total=-(-latents.shape[0] // chunk)):
            frames = decode_latents(vae, part, chunk_size=chunk, dtype=vae_dtype)
            if not torch.isfinite(frames).all():
                raise VidforgeError("the VAE decode produced NaN/inf values (decode in fp32: --vae-fp32)")
            yield to_uint8(frames)

    try:
        encoding = output_settings(options, overwrite, comment=comment("animate", options))
        with Sink(output, options.output_fps, settings=encoding) as sink:
            for frames in decoded():
                sink.write(frames)
        return sink.frames
    except torch.cuda.OutOfMemoryError as e:
        raise VidforgeError(
            f"out of GPU memory decoding {settings.width}x{settings.height} frames: try --vae-slicing"
        ) from e


def describe_inputs(image, options: AnimateOptions) -> dict:
    """The run's images as the settings record keeps them (path, content hash)."""
    from vidforge.core.settings import describe_input

    inputs = {"image": describe_input(image)}
    if options.end_image:
        inputs["end_image"] = describe_input(options.end_image)
    return inputs


def run_info(bundle, options: AnimateOptions, settings: Settings, backend, device, dtype) -> dict:
    config = bundle.config
    return {
        "command": "animate",
        "model": bundle.name,
        "seed": options.seed,
        "steps": options.steps,
        "eta": options.eta,
        "attention": backend,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "size": [settings.width, settings.height],
        "prediction_type": config.prediction_type,
        "timestep_spacing": config.timestep_spacing,
        f"cond_{config.fps_conditioning}": settings.fps_cond,  # cond_fps or cond_frame_stride
        "text_scale": options.text_scale,
        "image_scale": options.image_scale,
        "guidance_rescale": settings.guidance_rescale,
    }
