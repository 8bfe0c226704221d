"""``vidforge extend``: a long video from a short-clip video model, clip by clip (Reuse and Diffuse,
Gu et al. 2023; SPEC section 3).

Only one clip's latents and the small :class:`~vidforge.extend.sampler.ReuseState` live in memory;
each clip's frames are decoded and streamed to the output (and to the checkpoint) at once. Clips
are laid out as the official code does: all ``N`` frames of every clip, in generation order.
The model is a text-to-video UNet, or with ``--image`` DynamiCrafter's image-conditioned UNet
(``animate``'s model, with its own schedule, image latent on every frame and fps conditioning).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vidforge.core.options import Result, check
from vidforge.core.progress import Bars, Phases, Timer
from vidforge.core.settings import comment, describe_input, finish_run, resolve_seed
from vidforge.core.vae import decode_latents, encode_frames, set_tiling, to_tensor, to_uint8
from vidforge.core.video_io import (
    ImageInput,
    VideoInput,
    check_video_path,
    load_image,
    load_video,
    media_path,
    resize_frames,
)
from vidforge.core.writers import Sink, check_output, output_settings
from vidforge.errors import OptionError, VidforgeError
from vidforge.extend.checkpoint import Checkpoint, state_dir_for
from vidforge.extend.fifo import FifoState, sample_fifo
from vidforge.extend.options import ExtendOptions, check_clip_geometry
from vidforge.extend.sampler import ReuseState, invert_clip, sample_reuse_and_diffuse
from vidforge.models.bundle import ModelBundle
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import DDIMSchedule, ddim_schedule

DECODE_CHUNK = 8
DEFAULT_FPS = 8.0  # text-to-video output without --fps or --init


@dataclass(frozen=True)
class ClipPlan:
    """How clips map to output frames, as the official code lays them out: every clip contributes
    all its ``N`` frames in generation order, and the end is trimmed to ``target``.

    Clip ``k``'s first ``M`` frames are DSG-tied to clip ``k-1``'s last ``M`` in mirrored order, the
    pair tied longest being (clip ``k-1`` frame ``N-1``, clip ``k`` frame 0): exactly the junction the
    output shows. With ``--init`` the first clip continues the init video the same way (its frame 0
    is tied to the init video's last frame), so it too contributes all ``N`` frames.
    """

    clip_frames: int  # N
    target: int  # frames to generate (``--frames`` minus the init video's frames)

    @classmethod
    def for_run(cls, options: ExtendOptions, n: int, init_frames: np.ndarray | None) -> ClipPlan:
        """The plan of a run: ``--frames`` counts the init video's frames too."""
        done = len(init_frames) if init_frames is not None else 0
        return cls(n, options.frames - done)

    @property
    def num_clips(self) -> int:
        return max(0, math.ceil(self.target / self.clip_frames))


@dataclass
class Conditions:
    """The guided denoiser of the run and the unguided one DDIM inversion uses."""

    denoiser: Denoiser
    inversion: Denoiser
    fps_cond: int | None = None  # DynamiCrafter's fps conditioning


@torch.no_grad()
def run(
    options: ExtendOptions,
    output: str | os.PathLike | None = None,
    bars: Bars | None = None,
    callback: Callable[[int, int], None] | None = None,
    model: ModelBundle | None = None,
    *,
    init: VideoInput | None = None,
    image: ImageInput | None = None,
    overwrite: bool = False,
) -> Result:
    """Generate ``options.frames`` frames and stream them to ``output``: clip by clip
    (``method="reuse"``) or frame by frame from a queue (``"fifo"``), ``N`` frames per chunk.

    ``init`` / ``image`` (a path, or frames / an image array) default to ``options.init`` /
    ``options.image``. Without ``output`` the frames are returned in ``Result.frames``. An existing
    ``output`` is refused unless ``overwrite`` or ``options.resume``. ``callback(k, frames_written)``
    runs after clip (or chunk of ``N`` FIFO frames) ``k`` is written and checkpointed. ``model``: an
    already loaded bundle.
    """
    timer, phases = Timer(), Phases()
    bars = bars or Bars(disable=True)
    # 0. Check inputs (no model is loaded for a bad option, file or output); the method's defaults;
    # --seed -1: a resumed run's recorded seed, else a new one
    options.validate()
    options = options.resolved()
    image, init = check_inputs(options, image, init, model)
    output = check_extend_output(options, output, overwrite)
    checkpoint = Checkpoint.load(state_dir_for(output), options) if options.resume else None
    options = checkpoint.seeded(options) if checkpoint is not None else resolve_seed(options)

    # 1. Load the model
    with phases("load"):
        bundle = model or load_extend_model(options, image is not None)
    backend = check_model_for_input(bundle, options, image is not None)
    set_tiling(bundle.vae, options.vae_tiling)

    # 2. Clip geometry: N (M or the FIFO partitions checked against it), frame size, the init video
    n = options.clip_frames or bundle.frames
    check_clip_geometry(options, n)
    height, width = prepare_size(options, bundle)
    init_frames, fps = prepare_init(init, options, width, height, default_fps(bundle))
    plan = ClipPlan.for_run(options, n, init_frames)

    # 3. Conditions: prompt and negative prompt (and with --image the image's tokens and latent)
    with phases("encode"):
        conditions = prepare_conditions(bundle, options, image, height, width)

    # 4. Timesteps (DDIM): S per clip, or FIFO's n·N, one level per queue frame
    schedule = ddim_schedule(bundle.noise_schedule, options.num_steps(n))

    # 5. Starting state: resumed checkpoint, DDIM inversion of --init, or nothing (from noise)
    with phases("invert" if init_frames is not None and checkpoint is None else "start"):
        generator, state, checkpoint = starting_state(
            bundle, conditions, schedule, options, init_frames, n, output, checkpoint, bars
        )

    # 6. Generate; decode each clip (or chunk of N FIFO frames) and stream it out
    encoding = output_settings(options, overwrite or options.resume, comment=comment("extend", options))
    with ExtendSink(output, fps, checkpoint, encoding) as sink:
        sink.replay(init_frames, options.frames)
        generate = fifo_chunks if options.method == "fifo" else reuse_and_diffuse
        chunks = generate(
            conditions, schedule, plan, options, bundle, (height, width), generator, state, bars
        )
        for k, z0, state in phases.iterate("sample", chunks):  # noqa: B007 (the last state is reported)
            with phases("decode"):
                frames = decode_clip(
                    bundle, z0, options.frames - sink.num_frames, options.vae_chunk(DECODE_CHUNK)
                )
            sink.add_clip(frames, state, generator)
            if callback is not None:
                callback(k, sink.num_frames)

    # 7. Finished: the checkpoint is gone, the video and its settings record are in place
    info = run_info(bundle, options, plan, state, (width, height), backend, conditions.fps_cond)
    return finish(options, output, sink, bundle, {"init": init, "image": image}, info, timer, phases)


# -------------------------------------------------------------------------------------------- steps


def finish(options, output, sink, bundle, inputs: dict, info: dict, timer: Timer, phases: Phases) -> Result:
    """The run's settings record (written beside the output) and its result."""
    record = finish_run(
        "extend", options, output, model=bundle, frames=sink.num_frames, fps=sink.fps, size=info["size"],
        inputs={name: describe_input(value) for name, value in inputs.items() if value is not None},
        seconds=timer.seconds, timings=phases.rounded(), details=info,
    )  # fmt: skip
    return Result(
        output=output, num_frames=sink.num_frames, fps=sink.fps, seconds=timer.seconds, frames=sink.frames,
        info=info, settings=record,
    )  # fmt: skip


def check_inputs(options: ExtendOptions, image, init, model) -> tuple[np.ndarray | None, VideoInput | None]:
    """``--image`` read (after refusing a preset that cannot take it) and ``--init`` checked
    (read later, at the model's frame size); both default to the options'."""
    image = image if image is not None else options.image
    if image is not None and model is None:
        check_image_preset(options.model)
    image = load_image(image, "--image") if image is not None else None
    init = init if init is not None else options.init
    if isinstance(init, str | os.PathLike):
        check_video_path(init, "--init")
    return image, init


def check_extend_output(options: ExtendOptions, output, overwrite: bool) -> Path | None:
    """The output path, checked: ``--resume`` needs one; an existing output is refused unless
    ``--overwrite``, and one left by an interrupted run names ``--resume``."""
    check(
        not options.resume or output is not None, "--resume needs --output (the checkpoint lives beside it)"
    )
    if output is None:
        return None
    output = Path(output)
    if media_path(output).exists() and state_dir_for(output).exists() and not (options.resume or overwrite):
        raise VidforgeError(
            f"output {str(output)!r} is an interrupted run (checkpoint in {state_dir_for(output)}): "
            "continue it with --resume or start over with --overwrite"
        )
    return check_output(output, options, overwrite or options.resume, inputs=(options.init, options.image))


def load_extend_model(options: ExtendOptions, with_image: bool) -> ModelBundle:
    """A text-to-video model, or with ``--image`` an animate model (DynamiCrafter:
    ``dynamicrafter-256/512/1024``, ``tiny``, a checkpoint path or hub id), refused before any
    weights load when it cannot take the input."""
    from vidforge.core.device import select_device, select_dtype
    from vidforge.models import load_model, resolve_model

    task = "animate" if with_image else "extend"
    source = resolve_model(options.model, task)
    device = select_device(options.device)
    dtype = select_dtype(device, options.dtype)
    return load_model(source, task, device, dtype, options.offload, options.compile)


def check_image_preset(name: str | None) -> None:
    """``--image`` needs a single-image DynamiCrafter model: not a text-to-video or interp preset."""
    from vidforge.models import PRESETS

    preset = PRESETS.get(name)
    if preset is not None and preset.task == "extend":
        raise OptionError(
            f"--image is not supported by --model {name} (a text-to-video UNet); "
            "use --model dynamicrafter-256, dynamicrafter-512, dynamicrafter-1024 or tiny"
        )
    if preset is not None and preset.release == "512-interp":
        raise OptionError(
            f"--image: --model {name} is an interpolation model (first + last frame); "
            "use --model dynamicrafter-256, dynamicrafter-512 or dynamicrafter-1024"
        )


def check_model_for_input(bundle: ModelBundle, options: ExtendOptions, with_image: bool) -> str:
    """An image model needs ``--image``, a text-to-video model cannot take it. Puts the attention
    backend on the UNet (returned) and, for DynamiCrafter, the VAE in fp32 (fp16 VAE decodes give NaNs)."""
    from vidforge.core.attention import apply_attention_backend, select_backend
    from vidforge.core.vae import vae_to_fp32

    is_image_model = bundle.family == "dynamicrafter"
    if with_image and not is_image_model:
        raise OptionError(
            f"--image is not supported by --model {bundle.name} (text-to-video UNet); "
            "it needs an image-conditioned (animate) video UNet"
        )
    check(not is_image_model or with_image, f"--model {bundle.name} animates an image: pass --image")
    if is_image_model and bundle.config.interp:
        raise OptionError(
            f"--image: --model {bundle.name} is an interpolation model (first + last frame); "
            "use --model dynamicrafter-256, dynamicrafter-512 or dynamicrafter-1024"
        )
    if is_image_model and bundle.vae.dtype != torch.float32:
        vae_to_fp32(bundle.vae)
    return apply_attention_backend(bundle.unet, select_backend(options.attention, bundle.device))


def prepare_size(options: ExtendOptions, bundle: ModelBundle) -> tuple[int, int]:
    """``(height, width)``: the options' or the model's native size, checked against the model."""
    height = options.height or bundle.height
    width = options.width or bundle.width
    multiple = bundle.vae_scale_factor * bundle.unet_downsample
    check(
        height % multiple == 0 and width % multiple == 0,
        f"--height/--width {height}x{width}: must be multiples of {multiple} for --model {bundle.name}",
    )
    return height, width


def default_fps(bundle: ModelBundle) -> float:
    """Output fps without ``--fps`` or ``--init``: DynamiCrafter's default conditioning, else 8."""
    from vidforge.models.dynamicrafter.conditioning import output_fps

    if bundle.config is None:
        return DEFAULT_FPS
    return float(output_fps(bundle.config, bundle.config.default_fps))


def clip_shape(bundle: ModelBundle, plan: ClipPlan, size: tuple[int, int]) -> tuple[int, ...]:
    """``(1, C, N, h, w)``: one clip's latents at ``size = (height, width)``."""
    factor = bundle.vae_scale_factor
    return (1, bundle.latent_channels, plan.clip_frames, size[0] // factor, size[1] // factor)


def reuse_and_diffuse(conditions, schedule, plan: ClipPlan, options, bundle, size, generator, state, bars):
    """``(k, z^k_0 (1, C, N, h, w), state)`` clip by clip from ``state`` on
    (:func:`~vidforge.extend.sampler.sample_reuse_and_diffuse`), under a clip bar."""
    clips = sample_reuse_and_diffuse(
        conditions.denoiser, schedule, clip_shape(bundle, plan, size), num_clips=plan.num_clips,
        prompt_frames=options.prompt_frames, noise_recycle=options.noise_recycle,
        staged_guidance=options.staged_guidance, eta=options.eta, generator=generator, state=state,
        device=bundle.device, dtype=bundle.dtype,
        progress=lambda steps, k: bars.track(steps, f"clip {k + 1}/{plan.num_clips}", total=len(steps)),
    )  # fmt: skip
    return bars.track(clips, "clips", total=max(0, plan.num_clips - state.clip_index))


def fifo_chunks(conditions, schedule, plan: ClipPlan, options, bundle, size, generator, state, bars):
    """FIFO-Diffusion's frames (:func:`~vidforge.extend.fifo.sample_fifo`) from ``state`` on, ``N`` at
    a time: ``(k, latents (1, C, <=N, h, w), state after them)``, so a chunk is decoded, written
    and checkpointed together (the queue and the generator state are exact at chunk ends)."""
    frames = sample_fifo(
        conditions.denoiser, schedule, clip_shape(bundle, plan, size), num_frames=plan.target,
        lookahead=options.lookahead, eta=options.eta, generator=generator, state=state,
        device=bundle.device, dtype=bundle.dtype,
        progress=lambda items, description: bars.track(items, description, total=len(items)),
    )  # fmt: skip
    chunk = []
    for i, z0, state in frames:
        chunk.append(z0)
        if (i + 1) % plan.clip_frames == 0 or i == plan.target - 1:
            yield i // plan.clip_frames, torch.cat(chunk, dim=2), state
            chunk = []


def decode_clip(bundle: ModelBundle, z0: torch.Tensor, limit: int, chunk: int = DECODE_CHUNK) -> np.ndarray:
    """A clip's latents ``(1, C, N, h, w)`` (the first ``limit`` frames at most), decoded to uint8
    ``(F, H, W, 3)`` ``chunk`` frames per VAE call; DynamiCrafter decodes in fp32 (fp16 VAE decodes
    give NaNs)."""
    latents = z0[0].permute(1, 0, 2, 3)[:limit]  # (F, C, h, w)
    dtype = torch.float32 if bundle.family == "dynamicrafter" else None
    return to_uint8(decode_latents(bundle.vae, latents, chunk, dtype))


def prepare_init(
    init: VideoInput | None, options: ExtendOptions, width: int, height: int, fps: float
) -> tuple[np.ndarray | None, float]:
    """The ``--init`` video resized to the model's frame size; returns ``(frames or None, fps)``."""
    if init is None:
        return None, options.fps or fps
    video = load_video(init, what="--init")
    frames = resize_frames(video.frames, (width, height))
    check(
        len(frames) < options.frames,
        f"--frames {options.frames} must be larger than the --init video's {len(frames)} frames "
        "(--frames counts the whole output, init video included)",
    )
    return frames, options.fps or video.fps


def prepare_conditions(
    bundle: ModelBundle, options: ExtendOptions, image: np.ndarray | None, height: int, width: int
) -> Conditions:
    """The CFG denoiser (positive and negative branch in one batched call; CFG off, the positive
    branch alone, for a scale <= 1 as in the official loop) and the unguided positive denoiser for
    DDIM inversion.

    Text-to-video: the prompt and negative prompt embeddings. ``--image`` (DynamiCrafter):
    ``cat(text, image tokens)`` contexts, the image's for the prompt and a zero image's for the
    negative prompt, and the image latent concatenated on every frame (never dropped)."""
    from vidforge.sampling.guidance import BatchedGuidance, cfg_combine

    fps_cond = None
    if image is None:
        from vidforge.models.text_to_video import unet_model

        text = bundle.encode_prompts([options.prompt, options.negative_prompt])
        positive, negative = text[:1], text[1:]
        model = unet_model(bundle.unet)
    else:
        positive, negative, model, fps_cond = image_conditions(bundle, options, image, height, width)
    # CFG off for any scale <= 1, as the official loop: the conditional branch alone
    conds = (
        {"positive": positive} if options.text_scale <= 1 else {"negative": negative, "positive": positive}
    )
    rescale = bundle.config.guidance_rescale if bundle.config is not None else 0.0
    guided = BatchedGuidance(model, conds, cfg_combine(options.text_scale, rescale, "negative", "positive"))
    prediction = bundle.noise_schedule.prediction_type
    inversion = Denoiser(lambda x, t: model(x, t, positive), prediction)
    return Conditions(Denoiser(guided, prediction), inversion, fps_cond)


def image_conditions(bundle: ModelBundle, options: ExtendOptions, image: np.ndarray, height: int, width: int):
    """DynamiCrafter's positive and negative contexts, its conditioned UNet and fps conditioning.
    The image latent is drawn with its own generator, so a resumed run gets the same latent."""
    from vidforge.core.device import make_generator
    from vidforge.models.dynamicrafter import conditioning

    pixels = conditioning.preprocess_image(image, height, width).to(bundle.device)  # (1, 3, H, W)
    images = torch.cat([pixels, torch.zeros_like(pixels)])
    pairs = {"positive": (0, 0), "negative": (1, 1)}
    contexts = conditioning.encode_contexts(
        bundle.network, [options.prompt, options.negative_prompt], images, pairs
    )
    latents = conditioning.image_latents(bundle.vae, pixels, 1, False, make_generator(options.seed, "cpu"))
    fps_cond = conditioning.fps_conditioning(bundle.config, options.fps)
    model = conditioning.conditioned_unet(bundle.network, latents, fps_cond)
    return contexts["positive"], contexts["negative"], model, fps_cond


def starting_state(
    bundle: ModelBundle, conditions: Conditions, schedule: DDIMSchedule, options: ExtendOptions,
    init_frames: np.ndarray | None, n: int, output: Path | None, checkpoint: Checkpoint | None, bars: Bars,
):  # fmt: skip
    """``(generator, state, checkpoint)``: a resumed checkpoint's, or a fresh start (from noise, or
    the DDIM inversion of ``--init``) with a new checkpoint beside ``output``. The state is a
    :class:`ReuseState` (reuse) or a :class:`FifoState` (fifo: the queue)."""
    from vidforge.core.device import make_generator

    state_type = FifoState if options.method == "fifo" else ReuseState
    generator = make_generator(options.seed, "cpu")
    if checkpoint is not None:
        state, rng_state = checkpoint.state(bundle.device, bundle.dtype, state_type)
        if rng_state is not None:
            generator.set_state(rng_state)
        return generator, state, checkpoint
    state = state_type()
    if init_frames is not None:
        state = invert_init(bundle, conditions.inversion, init_frames, n, schedule, options, bars)
    if output is not None:
        checkpoint = Checkpoint(state_dir_for(output))
        checkpoint.start(options)
        if init_frames is not None:
            checkpoint.add_frames(init_frames)
            checkpoint.commit(state, generator)
    return generator, state, checkpoint


def invert_init(
    bundle: ModelBundle, denoiser: Denoiser, frames: np.ndarray, n: int, schedule, options, bars
) -> ReuseState:
    """Encode the init video's last ``N`` frames (the first frame repeated in front when it is
    shorter) and DDIM-invert them: the trajectory FNR/PNS/DSG reuse for the next clip."""
    last = frames[-n:]
    if len(last) < n:
        last = np.concatenate([np.repeat(last[:1], n - len(last), axis=0), last])
    pixels = to_tensor(last, device=bundle.vae.device, dtype=bundle.vae.dtype)
    latents = encode_frames(bundle.vae, pixels, DECODE_CHUNK).to(bundle.dtype)  # (N, C, h, w), scaled
    latents = latents.permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, N, h, w)
    return invert_clip(
        denoiser, latents, schedule, prompt_frames=options.prompt_frames, staged_guidance=options.staged_guidance,
        progress=lambda steps: bars.track(steps, "invert --init", total=len(steps)),
    )  # fmt: skip


class ExtendSink(Sink):
    """The output of a run: frames streamed to the video (or memory) and committed to the
    checkpoint clip by clip. Ctrl-C turns the committed frames into a valid partial video and keeps
    the checkpoint for ``--resume``; success removes the checkpoint."""

    def __init__(self, output: Path | None, fps: float, checkpoint: Checkpoint | None, settings=None):
        super().__init__(output, fps, settings=settings)
        self.checkpoint = checkpoint

    def replay(self, init_frames: np.ndarray | None, limit: int) -> None:
        """Frames already part of the video: the resumed checkpoint's chunks, or the init video."""
        if self.checkpoint is not None and self.checkpoint.meta.get("chunks"):
            chunks = self.checkpoint.frame_chunks()
        elif init_frames is not None:
            chunks = iter([init_frames])
        else:
            return
        for chunk in chunks:
            chunk = chunk[: limit - self.num_frames]
            if len(chunk) == 0:
                break
            self.write(chunk)

    def add_clip(self, frames: np.ndarray, state: ReuseState | FifoState, generator: torch.Generator) -> None:
        self.write(frames)
        if self.checkpoint is not None:
            self.checkpoint.add_frames(frames)
            self.checkpoint.commit(state, generator)

    def close(self) -> Path | None:
        path = super().close()
        if self.checkpoint is not None:
            self.checkpoint.remove()
        return path

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):  # Ctrl-C or SIGTERM
            raise exc_type(self._finish_partial()) from None
        super().__exit__(exc_type, exc, tb)

    def _finish_partial(self) -> str:
        """Rebuild a valid video at ``output`` from the checkpoint (never from an encoder that may
        have seen the signal) and say where to resume from."""
        if self.writer is None:
            return "interrupted"
        self.abort()
        checkpoint, output = self.checkpoint, self.output
        if checkpoint is None or checkpoint.num_frames == 0:
            return f"interrupted before the first clip finished; nothing written to {output}"
        with Sink(output, self.fps, settings=replace(self.settings, overwrite=True)) as partial:
            for chunk in checkpoint.frame_chunks():
                partial.write(chunk)
        return (
            f"interrupted: {checkpoint.num_frames} frames written to {output}; "
            f"checkpoint kept in {checkpoint.folder}, continue with --resume"
        )


def run_info(bundle, options: ExtendOptions, plan: ClipPlan, state, size, backend, fps_cond) -> dict:
    n = plan.clip_frames
    if options.method == "fifo":
        method = {"partitions": options.partitions, "lookahead": options.lookahead,
                  "queue_frames": options.num_steps(n) + (n // 2 if options.lookahead else 0),
                  "chunks": plan.num_clips}  # fmt: skip
    else:
        method = {"prompt_frames": options.prompt_frames, "noise_recycle": options.noise_recycle,
                  "staged_guidance": options.staged_guidance, "clips": plan.num_clips}  # fmt: skip
    return {
        "command": "extend",
        "method": options.method,
        "model": bundle.name,
        "seed": options.seed,
        "clip_frames": n,
        **method,
        "steps": options.num_steps(n),
        "eta": options.eta,
        "text_scale": options.text_scale,
        "size": list(size),
        "attention": backend,
        "state_bytes": state.nbytes,
        "init": options.init,
        "image": options.image,
        **({"cond_fps": fps_cond} if fps_cond is not None else {}),
        "resumed": bool(options.resume),
    }
