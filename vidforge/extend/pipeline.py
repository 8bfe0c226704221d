"""``vidforge extend``: a long video from a short-clip text-to-video model, clip by clip
(Reuse and Diffuse, Gu et al. 2023; SPEC section 3).

Only one clip's latents and the small :class:`~vidforge.extend.sampler.ReuseState` live in memory;
each clip's new frames are decoded and streamed to the writer (and to the checkpoint) at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidforge.core.attention import apply_attention_backend, select_backend
from vidforge.core.device import make_generator, select_device, select_dtype
from vidforge.core.models import resolve_model
from vidforge.core.options import Result, check
from vidforge.core.progress import Bars, Timer
from vidforge.core.text import encode_prompts
from vidforge.core.vae import decode_latents, encode_frames, to_tensor, to_uint8
from vidforge.core.video_io import VideoWriter, check_input_file, read_image, read_video, resize_frames
from vidforge.errors import OptionError, VidforgeError
from vidforge.extend.checkpoint import Checkpoint, state_dir_for
from vidforge.extend.dynamicrafter import check_image_model, encode_image_conditions, fps_conditioning
from vidforge.extend.models import ExtendModel, load_image_model, load_model
from vidforge.extend.options import ExtendOptions, check_prompt_frames
from vidforge.extend.sampler import (
    ReuseState,
    classifier_free_guidance,
    ddim_inversion,
    sample_reuse_and_diffuse,
)

DECODE_CHUNK = 8


@dataclass(frozen=True)
class ClipPlan:
    """How clips map to output frames. Clip 0 (from noise) gives all ``N`` frames; every later clip
    gives its ``N - M`` new frames (its first ``M`` re-render already emitted frames, mirrored);
    ``keep_prompt_frames`` keeps all ``N`` of every clip (official K·N layout). Trimmed to ``target``.
    """

    clip_frames: int  # N
    prompt_frames: int  # M
    target: int  # frames to generate (``--frames`` minus the init video's frames)
    keep_prompt_frames: bool = False
    first_from_noise: bool = True  # False with --init: clip 0 already continues a video

    def new_frames(self, k: int) -> slice:
        if self.keep_prompt_frames or (k == 0 and self.first_from_noise):
            return slice(0, self.clip_frames)
        return slice(self.prompt_frames, self.clip_frames)

    @property
    def num_clips(self) -> int:
        if self.target <= 0:
            return 0
        n, m = self.clip_frames, self.prompt_frames
        if self.keep_prompt_frames:
            return math.ceil(self.target / n)
        if self.first_from_noise:
            return 1 + math.ceil(max(0, self.target - n) / (n - m))
        return math.ceil(self.target / (n - m))


def run(
    options: ExtendOptions,
    output: str | Path | None = None,
    bars: Bars | None = None,
    callback: Callable[[int, int], None] | None = None,
    model: ExtendModel | None = None,
) -> Result:
    """Generate ``options.frames`` frames clip by clip and stream them to ``output``.

    Without ``output`` the frames are returned in ``Result.frames`` (then they are held in memory).
    ``callback(k, frames_written)`` runs after clip ``k`` is written and checkpointed. ``model``: an
    already loaded :class:`ExtendModel` (``options.model`` then only names it in checkpoints).
    """
    return _run(options, output, bars, callback, model)


@torch.no_grad()
def _run(options, output, bars, callback, model) -> Result:
    timer = Timer()
    bars = bars or Bars(disable=True)
    # 0. Check inputs
    options.validate()
    source = resolve_source(options) if model is None else None
    image = read_conditioning_image(options.image) if options.image is not None else None
    check(
        not options.resume or output is not None, "--resume needs --output (the checkpoint lives beside it)"
    )
    if options.init is not None:
        check_input_file(options.init, "--init video")
    output = Path(output) if output is not None else None
    state_dir = state_dir_for(output) if output is not None else None
    checkpoint = Checkpoint.load(state_dir, options) if options.resume else None

    # 1. Load the model
    if model is None:
        device = select_device(options.device)
        dtype = select_dtype(device, options.dtype)
        model = (load_image_model if image is not None else load_model)(source, device, dtype)
    else:
        device, dtype = model.device, model.dtype
    if image is not None and not model.supports_image:
        raise OptionError(
            f"--image is not supported by --model {model.name} (text-to-video UNet); "
            "it needs an image-conditioned (animate) video UNet"
        )
    check(
        image is not None or not model.supports_image, f"--model {model.name} animates an image: pass --image"
    )
    backend = apply_attention_backend(model.denoiser.unet, select_backend(options.attention, device))

    # 2. Clip geometry: N, M, frame size, the init video
    n = options.clip_frames or model.clip_frames
    m = options.prompt_frames
    check_prompt_frames(m, n)
    height, width = prepare_size(options, model)
    init_frames, fps = prepare_init(options, width, height, model.default_fps)
    plan = ClipPlan(
        clip_frames=n,
        prompt_frames=m,
        target=options.frames - (len(init_frames) if init_frames is not None else 0),
        keep_prompt_frames=options.keep_prompt_frames,
        first_from_noise=init_frames is None,
    )

    # 3. Encode the prompt and the negative prompt (image models: + the image's CLIP tokens for the
    #    positive branch, a zero image's for the negative one, and the image latent for every frame)
    base = model.denoiser
    if image is None:
        cond = encode_prompts(
            model.tokenizer, model.text_encoder, [options.prompt, options.negative_prompt], device, dtype
        )
        positive, negative = cond[:1], cond[1:]
    else:
        positive, negative, image_latents = encode_image_conditions(
            base.model, image, options.prompt, options.negative_prompt, height, width, options.seed
        )
        base = base.with_image(image_latents, fps_conditioning(base.model.config, options.fps))
    denoiser = classifier_free_guidance(base, options.guidance_scale, model.guidance_rescale)

    # 4. Timesteps (DDIM)
    model.scheduler.set_timesteps(options.steps, device=device)
    timesteps = model.scheduler.timesteps
    shape = (1, model.latent_channels, n, height // model.vae_scale, width // model.vae_scale)

    # 5. Starting state: resumed checkpoint, DDIM inversion of --init, or nothing (clip 0 from noise)
    generator = make_generator(options.seed, "cpu")
    if checkpoint is not None:
        state, rng_state = checkpoint.state(device, dtype)
        if rng_state is not None:
            generator.set_state(rng_state)
    else:
        state = ReuseState()
        if init_frames is not None:
            state = invert_init(model, base, init_frames, n, positive, timesteps, options, bars)
        if output is not None:
            checkpoint = Checkpoint(state_dir)
            checkpoint.start(options)
            if init_frames is not None:
                checkpoint.add_frames(init_frames)
                checkpoint.commit(state, generator)

    # 6. Generate clip by clip; decode each clip's new frames and stream them out
    collected: list[np.ndarray] = []
    writer = VideoWriter(output, fps) if output is not None else None
    written = 0
    try:
        for chunk in _committed_frames(checkpoint, init_frames, options.frames):
            written += _emit(chunk, writer, collected)
        clips = sample_reuse_and_diffuse(
            denoiser,
            model.scheduler,
            timesteps,
            shape,
            (positive, negative),
            num_clips=plan.num_clips,
            prompt_frames=m,
            noise_recycle=options.noise_recycle,
            staged_guidance=options.staged_guidance,
            eta=options.eta,
            generator=generator,
            state=state,
            device=device,
            dtype=dtype,
            progress=lambda steps, k: bars.track(steps, f"clip {k + 1}/{plan.num_clips}", total=len(steps)),
        )
        for k, z0, next_state in bars.track(clips, "clips", total=max(0, plan.num_clips - state.clip_index)):
            state = next_state
            latents = z0[0, :, plan.new_frames(k)].permute(1, 0, 2, 3)  # (F, C, h, w)
            latents = latents[: options.frames - written]
            frames = to_uint8(decode_latents(model.vae, latents, DECODE_CHUNK, model.vae_dtype))
            written += _emit(frames, writer, collected)
            if checkpoint is not None:
                checkpoint.add_frames(frames)
                checkpoint.commit(state, generator)
            if callback is not None:
                callback(k, written)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_finish_partial(writer, checkpoint, output, fps)) from None
    except BaseException:
        if writer is not None:
            writer.abort()
        raise

    # 7. Finish: close the video, drop the checkpoint
    if writer is not None:
        writer.close()
    if checkpoint is not None:
        checkpoint.remove()
    return Result(
        output=output,
        num_frames=written,
        fps=fps,
        seconds=timer.seconds,
        frames=np.concatenate(collected) if collected else None,
        info={
            "command": "extend",
            "model": model.name,
            "seed": options.seed,
            "clip_frames": n,
            "prompt_frames": m,
            "noise_recycle": options.noise_recycle,
            "staged_guidance": options.staged_guidance,
            "clips": plan.num_clips,
            "steps": options.steps,
            "size": [width, height],
            "attention": backend,
            "state_bytes": state.nbytes,
            "init": options.init,
            "image": options.image,
            **({"cond_fps": base.fps} if image is not None else {}),
            "resumed": bool(options.resume),
        },
    )


def resolve_source(options: ExtendOptions):
    """``--model`` for ``extend``: a text-to-video model, or with ``--image`` an animate model
    (DynamiCrafter: ``dynamicrafter-256/512/1024``, ``tiny``, a checkpoint path or hub id)."""
    if options.image is None:
        return resolve_model(options.model, "extend")
    check_image_model(options.model)
    return resolve_model(options.model, "animate")


def read_conditioning_image(path: str) -> np.ndarray:
    """``--image`` as ``(H, W, 3)`` uint8, with one-line errors naming the option."""
    try:
        return read_image(path)
    except VidforgeError as e:
        raise VidforgeError(f"--image: {e}") from e


def prepare_size(options: ExtendOptions, model: ExtendModel) -> tuple[int, int]:
    """``(height, width)``: the options' or the model's native size, checked against the model."""
    height = options.height or model.height
    width = options.width or model.width
    multiple = model.size_multiple
    check(
        height % multiple == 0 and width % multiple == 0,
        f"--height/--width {height}x{width}: must be multiples of {multiple} for --model {model.name}",
    )
    return height, width


def prepare_init(
    options: ExtendOptions, width: int, height: int, default_fps: float
) -> tuple[np.ndarray | None, float]:
    """Read ``--init`` resized to the model's frame size; returns ``(frames or None, fps)``."""
    if options.init is None:
        return None, options.fps or default_fps
    video = read_video(options.init)
    frames = resize_frames(video.frames, (width, height))
    check(
        len(frames) < options.frames,
        f"--frames {options.frames} must be larger than the --init video's {len(frames)} frames "
        "(--frames counts the whole output, init video included)",
    )
    return frames, options.fps or video.fps


def invert_init(
    model: ExtendModel, denoiser, frames: np.ndarray, n: int, positive, timesteps, options, bars
) -> ReuseState:
    """Encode the init video's last ``N`` frames (the first frame repeated in front when it is
    shorter) and DDIM-invert them: the trajectory FNR/PNS/DSG reuse for the next clip."""
    last = frames[-n:]
    if len(last) < n:
        last = np.concatenate([np.repeat(last[:1], n - len(last), axis=0), last])
    pixels = to_tensor(last, device=model.vae.device, dtype=model.vae.dtype)
    latents = encode_frames(model.vae, pixels, DECODE_CHUNK)  # (N, C, h, w), scaled
    latents = latents.permute(1, 0, 2, 3).unsqueeze(0)  # (1, C, N, h, w)
    return ddim_inversion(
        denoiser,
        latents,
        timesteps,
        model.scheduler,
        positive,
        prompt_frames=options.prompt_frames,
        staged_guidance=options.staged_guidance,
        progress=lambda steps: bars.track(steps, "invert --init", total=len(steps)),
    )


def _committed_frames(checkpoint: Checkpoint | None, init_frames, limit: int):
    """Frames already part of the video: the resumed checkpoint's chunks, or the init video."""
    if checkpoint is not None and checkpoint.meta.get("chunks"):
        chunks = checkpoint.frame_chunks()
    elif init_frames is not None:
        chunks = iter([init_frames])
    else:
        return
    count = 0
    for chunk in chunks:
        chunk = chunk[: limit - count]
        if len(chunk) == 0:
            break
        count += len(chunk)
        yield chunk


def _emit(frames: np.ndarray, writer: VideoWriter | None, collected: list) -> int:
    if writer is not None:
        writer.write(frames)
    else:
        collected.append(frames)
    return len(frames)


def _finish_partial(writer: VideoWriter | None, checkpoint: Checkpoint | None, output, fps) -> str:
    """Ctrl-C: turn the frames of the finished clips into a valid video at ``output`` (rebuilt
    from the checkpoint, so it never depends on an encoder that may have seen the signal) and keep
    the checkpoint for ``--resume``."""
    if writer is None:
        return "interrupted"
    writer.abort()
    if checkpoint is None or checkpoint.num_frames == 0:
        return f"interrupted before the first clip finished; nothing written to {output}"
    with VideoWriter(output, fps) as partial:
        for chunk in checkpoint.frame_chunks():
            partial.write(chunk)
    return (
        f"interrupted: {checkpoint.num_frames} frames written to {output}; "
        f"checkpoint kept in {checkpoint.folder}, continue with --resume"
    )


__all__ = ["ClipPlan", "VidforgeError", "run"]
