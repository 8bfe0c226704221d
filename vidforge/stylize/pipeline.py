"""Style-A-Video (Huang et al. 2023, arXiv 2305.05464): zero-shot, text-driven video stylization on
an InstructPix2Pix backbone, read as a numbered recipe (SPEC section 1).

Per chunk of ``--batch-frames`` frames and per denoising step:

1. CLIP sampling optimization (first ``--clip-steps`` steps, if ``λ > 0``): shift ``z_t``.
2. ONE UNet call over ``4 × chunk`` rows, branch-major ``[∅∅, I∅, ∅T, M∅]``; the decoder layer
   with :class:`AttentionProbsProcessor` records the ``c_I`` branch's self-attention saliency.
3. Four-branch guidance; the new mask ``M_t`` becomes ``c_M`` for the next step (lag of one step).
4. Latent fusion with the previous frame's flow-warped x0 (inside ``--fuse-window``).
5. Scheduler step. After the loop: VAE decode, pixel fusion (``--deflicker``), resize back.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from vidforge.core.attention import apply_attention_backend, select_backend
from vidforge.core.device import make_generator, randn, select_device, select_dtype
from vidforge.core.options import Result
from vidforge.core.progress import Bars, Timer
from vidforge.core.text import encode_prompts
from vidforge.core.vae import decode_latents, encode_frames, set_tiling, to_tensor, to_uint8
from vidforge.core.video_io import Video, VideoInfo, VideoWriter, iter_frames, probe_video, resize_frames
from vidforge.stylize.attention_map import attention_condition, install_probs_processor, saliency_mask
from vidforge.stylize.clip_guidance import clip_guidance_step
from vidforge.stylize.guidance import batch_branches, branch_conditions, four_branch_guidance, split_branches
from vidforge.stylize.models import Components, load_components, make_scheduler
from vidforge.stylize.options import StylizeOptions
from vidforge.stylize.temporal import FrameFlows, chunk_flows, fuse_latent, fuse_pixels, fuse_window_steps

LATENT_FACTOR = 8


def processing_size(width: int, height: int) -> tuple[int, int]:
    """Frame size the model sees: each side rounded to the NEAREST multiple of 8 (halves round up),
    at least 8. The aspect ratio changes by at most 4 px per side; the output is resized back."""
    return max(8, math.floor(width / 8 + 0.5) * 8), max(8, math.floor(height / 8 + 0.5) * 8)


def rechunk(frames: np.ndarray | Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Frames ``(F, H, W, 3)``, or chunks ``(f, H, W, 3)`` of any sizes in video order, as chunks of
    exactly ``size`` frames (the last may be shorter). Chunks that already have ``size`` frames pass
    through uncopied; at most ``size`` frames plus one incoming chunk are held."""
    if isinstance(frames, np.ndarray):
        for start in range(0, len(frames), size):
            yield frames[start : start + size]
        return
    pending, count = [], 0
    for chunk in frames:
        if not pending and len(chunk) == size:
            yield chunk
            continue
        pending.append(chunk)
        count += len(chunk)
        while count >= size:
            joined = np.concatenate(pending)
            yield joined[:size]
            pending = [joined[size:]] if count > size else []
            count -= size
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


class Parameterization:
    """``z = a·x0 + b·eps`` at step ``i``, so x0 and eps convert both ways for any supported scheduler.

    DDIM (variance preserving): ``a = √ᾱ_t, b = √(1-ᾱ_t)``; Euler (k-diffusion sigmas): ``a = 1, b = σ_i``.
    """

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.sigma_space = hasattr(scheduler, "sigmas") and scheduler.init_noise_sigma != 1.0

    def coefficients(self, i: int, t) -> tuple[float, float]:
        if self.sigma_space:
            return 1.0, float(self.scheduler.sigmas[i])
        alpha_bar = float(self.scheduler.alphas_cumprod[int(t)])
        return math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)

    def x0(self, z: torch.Tensor, eps: torch.Tensor, i: int, t) -> torch.Tensor:
        a, b = self.coefficients(i, t)
        return (z - b * eps) / a

    def eps(self, z: torch.Tensor, x0: torch.Tensor, i: int, t) -> torch.Tensor:
        a, b = self.coefficients(i, t)
        return (z - a * x0) / b


class StylizePipeline:
    """Four-branch InstructPix2Pix sampling with attention condition, CLIP optimization and flow fusion."""

    def __init__(
        self,
        components: Components,
        device: torch.device,
        dtype: torch.dtype,
        attention_backend: str = "sdpa",
        clip_loader=None,
    ):
        self.unet, self.vae = components.unet, components.vae
        self.text_encoder, self.tokenizer = components.text_encoder, components.tokenizer
        self.scheduler_config = components.scheduler_config
        self.components = components
        self.device, self.dtype = device, dtype
        self.attention_backend = apply_attention_backend(self.unet, attention_backend)
        self.probs = install_probs_processor(self.unet)  # the one layer that exposes attention
        self._clip_loader = clip_loader
        self.clip = None

    @classmethod
    def from_options(cls, options: StylizeOptions) -> StylizePipeline:
        device = select_device(options.device)
        dtype = select_dtype(device, options.dtype)
        backend = select_backend(options.attention, device)
        return cls(load_components(options.model, device, dtype, options.seed), device, dtype, backend)

    # ------------------------------------------------------------------------------------- helpers

    def load_clip(self, spec: str):
        """The CLIP image encoder of the sampling optimization (only called when ``λ > 0``)."""
        if self.clip is None:
            from vidforge.core.clip import load_clip

            loader = self._clip_loader or load_clip
            self.clip = loader("tiny" if self.components.is_tiny else spec, self.device)
        return self.clip

    def encode_prompt(self, style: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Null (empty prompt) and style text embeddings, each ``(1, L, D)``."""
        embeds = encode_prompts(self.tokenizer, self.text_encoder, ["", style], self.device, self.dtype)
        return embeds[:1], embeds[1:]

    def encode_image_latents(self, frames: np.ndarray, chunk_size: int) -> torch.Tensor:
        """c_I: ``vae.encode(frame).latent_dist.mode()`` UNSCALED, as InstructPix2Pix, ``(F, 4, h, w)``."""
        pixels = to_tensor(frames, self.device, self.dtype)
        return encode_frames(self.vae, pixels, chunk_size=chunk_size, sample=False, scale=False)

    def unet_branches(
        self, latents, t, image_latents, attn_latents, text_null, text_style, text_branch, capture
    ):
        """ONE UNet call over the four branches; returns their noise predictions ``4 × (F, 4, h, w)``.

        ``capture``: record the ``c_I`` branch's self-attention saliency in ``self.probs.saliency``.
        ``attn_latents=None`` (``sM = 0``): the M∅ branch is not computed and is returned as None.
        """
        num_frames = latents.shape[0]
        image_cond, text_cond = branch_conditions(
            image_latents, attn_latents, text_null, text_style, text_branch
        )
        branches = image_cond.shape[0] // num_frames
        model_input = torch.cat([batch_branches(*[latents] * branches), image_cond.to(latents.dtype)], dim=1)
        self.probs.rows = slice(num_frames, 2 * num_frames) if capture else None
        self.probs.saliency = None
        try:
            out = self.unet(model_input, t, encoder_hidden_states=text_cond, return_dict=False)[0]
        finally:
            self.probs.rows = None
        eps = split_branches(out, branches)
        return eps if branches == 4 else (*eps, None)

    def predict_noise(self, scheduler, latents, t, image_latents, attn_latents, text, options, capture):
        """Guided eps ``(F, 4, h, w)`` and, if ``capture``, the saliency ``(F, L)`` of the c_I branch."""
        model_input = scheduler.scale_model_input(latents, t)
        if options.attn_scale == 0:
            attn_latents = None  # sM·(epsM - eps∅) = 0: skip the branch (a quarter of the UNet work)
        eps_uncond, eps_image, eps_text, eps_attn = self.unet_branches(
            model_input, t, image_latents, attn_latents, *text, options.text_branch, capture
        )
        if eps_attn is None:
            eps_attn = eps_uncond
        # Style-A-Video guidance: eps∅ + sI(epsI - eps∅) + sT(epsT - eps∅) + sM(epsM - eps∅)
        eps = four_branch_guidance(
            eps_uncond,
            eps_image,
            eps_text,
            eps_attn,
            options.image_scale,
            options.text_scale,
            options.attn_scale,
        )
        return eps, self.probs.saliency

    # --------------------------------------------------------------------------------- the recipe

    @torch.no_grad()
    def __call__(self, frames: np.ndarray, options: StylizeOptions, bars: Bars | None = None) -> np.ndarray:
        """Stylize uint8 frames ``(F, H, W, 3)`` (sides multiples of 8) -> uint8 frames of the same shape."""
        return np.concatenate(list(self.stream(frames, options, bars)))

    @torch.no_grad()
    def stream(
        self,
        frames: np.ndarray | Iterable[np.ndarray],
        options: StylizeOptions,
        bars: Bars | None = None,
        num_frames: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Like ``__call__``, but the input may also be an iterable of ``(f, H, W, 3)`` chunks in
        video order (e.g. :func:`~vidforge.core.video_io.iter_frames`), read lazily, and each chunk's
        output is yielded as soon as it is done. Memory is bounded in video length: one chunk of
        ``batch_frames`` input frames plus the previous input frame (for flow) are held.
        ``num_frames`` (optional) only sizes the progress bar."""
        bars = bars or Bars(disable=True)
        if isinstance(frames, np.ndarray):
            num_frames = len(frames)
        chunks = rechunk(frames, options.batch_frames)
        first = next(chunks, None)
        if first is None:
            return
        # 0. Check inputs
        height, width = first.shape[1:3]
        if height % LATENT_FACTOR or width % LATENT_FACTOR:
            raise ValueError(f"frame size {width}x{height} must be a multiple of 8 (see processing_size)")
        latent_size = (height // LATENT_FACTOR, width // LATENT_FACTOR)
        chunks = itertools.chain([first], chunks)
        del first  # held by the chain only until it is consumed
        generator = make_generator(options.seed)
        set_tiling(self.vae, options.vae_tiling)

        # 1. Encode the style prompt and the null prompt
        text = self.encode_prompt(options.style)

        # 2. Temporal mechanisms in use (flow on the input video is computed chunk by chunk)
        fuse_steps = (
            fuse_window_steps(options.steps, options.fuse_window) if options.fuse_strength > 0 else range(0)
        )
        need_flow = len(fuse_steps) > 0 or options.deflicker > 0

        # 3. CLIP encoder of the sampling optimization (nothing is loaded when λ = 0)
        clip_on = options.clip_guidance > 0 and options.clip_steps > 0
        clip = self.load_clip(options.clip_model) if clip_on else None

        # 4. Initial noise: one draw shared by every frame (a common start reduces flicker, and makes
        #    the result independent of --batch-frames)
        noise = randn((1, 4, *latent_size), generator, self.device, self.dtype)

        # previous chunk's last frame: per-step x0, final output, and input (for the flow)
        carry = {"x0": {}, "out": None, "input": None}
        total = math.ceil(num_frames / options.batch_frames) if num_frames is not None else None
        start = 0
        for chunk in bars.track(chunks, "chunks", total=total):
            indices = list(range(start, start + len(chunk)))
            flows = chunk_flows(chunk, start, carry["input"], options.flow) if need_flow else None
            # 5. Denoise the chunk
            latents = self.denoise_chunk(
                chunk, indices, noise, text, flows, fuse_steps, clip, options, generator, carry, bars
            )
            # 6. Decode
            pixels = decode_latents(self.vae, latents, chunk_size=options.batch_frames)
            out = to_uint8(pixels)
            # 7. Pixel fusion with the previous output frame (deflicker)
            if options.deflicker > 0:
                out = self.pixel_fusion(out, indices, flows, options.deflicker, carry)
            # copies, so the previous chunk's arrays are freed
            carry["out"], carry["input"] = out[-1].copy(), chunk[-1].copy()
            start += len(chunk)
            yield out

    def denoise_chunk(
        self, chunk, indices, noise, text, flows, fuse_steps, clip, options, generator, carry, bars
    ):
        """Sample the latents ``(F, 4, h, w)`` of one chunk of frames."""
        num = len(indices)
        latent_size = noise.shape[-2:]
        # 5.1 Timesteps (a fresh scheduler per chunk: no state leaks between chunks)
        scheduler = make_scheduler(options.scheduler, self.scheduler_config)
        scheduler.set_timesteps(options.steps, device=self.device)
        param = Parameterization(scheduler)
        # 5.2 Conditions: c_I, and c_M = c_I until the first attention map exists
        image_latents = self.encode_image_latents(chunk, options.batch_frames)
        attn_latents = image_latents
        target_embeds = clip.encode_images(to_tensor(chunk, self.device).add(1).div(2)) if clip else None
        flow_latents = (
            [flows.latent(k, latent_size, self.device) for k in range(num)] if len(fuse_steps) else None
        )
        # 5.3 Latents
        latents = noise.expand(num, -1, -1, -1) * scheduler.init_noise_sigma
        capture = options.attn_scale != 0
        eps_prev = None
        for i, t in enumerate(bars.track(scheduler.timesteps, "denoise", total=options.steps)):
            # 5.4 CLIP sampling optimization: z_t ← z_t - λ·g/‖g‖·‖z_t‖ (eps detached)
            if clip is not None and i < options.clip_steps:
                if eps_prev is None:  # first step: no eps yet, one extra guided call
                    eps_prev, _ = self.predict_noise(
                        scheduler, latents, t, image_latents, attn_latents, text, options, False
                    )

                def predict_x0(z, f, i=i, t=t, eps=eps_prev):
                    return param.x0(z, eps[f : f + 1], i, t)

                latents, _ = clip_guidance_step(
                    latents, predict_x0, self.vae, clip, target_embeds, options.clip_guidance
                )
            # 5.5 Four branches in one UNet call, guided
            eps, saliency = self.predict_noise(
                scheduler, latents, t, image_latents, attn_latents, text, options, capture
            )
            # 5.6 Self-attention condition for the NEXT step: c_M = M_t ⊙ c_I
            if saliency is not None:
                attn_latents = attention_condition(saliency_mask(saliency, tuple(latent_size)), image_latents)
            # 5.7 Latent fusion: blend x0 with the previous frame's warped x0, then the matching eps
            if i in fuse_steps:
                x0 = param.x0(latents, eps, i, t)
                x0 = self.latent_fusion(x0, indices, i, flow_latents, options.fuse_strength, carry)
                eps = param.eps(latents, x0, i, t)
            # 5.8 Scheduler step
            latents = scheduler.step(eps, t, latents, generator=generator, return_dict=False)[0]
            eps_prev = eps
        return latents

    @staticmethod
    def latent_fusion(x0, indices, step, flow_latents, strength, carry):
        """Frame by frame in video order: ``x0_f ← fuse(x0_f, x0_{f-1})``; frame f-1 of the first
        frame in a chunk is the previous chunk's last frame at the same step."""
        prev = carry["x0"].get(step)
        fused = []
        for k, f in enumerate(indices):
            current = x0[k]
            if prev is not None and f > 0:
                flow, valid = flow_latents[k]
                current = fuse_latent(current, prev, flow, valid, strength)
            fused.append(current)
            prev = current
        carry["x0"][step] = prev
        return torch.stack(fused)

    @staticmethod
    def pixel_fusion(out, indices, flows: FrameFlows, strength, carry):
        """``out_f ← out_f + d·V·(warp(out_{f-1}) - out_f)`` in video order, across chunks."""
        prev = carry["out"]
        fused = []
        for k, f in enumerate(indices):
            current = out[k]
            if prev is not None and f > 0:
                current = fuse_pixels(current, prev, flows.flow[k], flows.valid[k], strength)
            fused.append(current)
            prev = current
        return np.stack(fused)


def open_input(input: str | os.PathLike | Video, options: StylizeOptions) -> tuple[VideoInfo, Iterator]:
    """The input's metadata (after ``--max-frames`` and ``--resize``) and its frames as lazily read
    chunks of ``--batch-frames`` frames: a file is probed, then decoded chunk by chunk, never whole."""
    if isinstance(input, Video):
        frames = input.frames[: options.max_frames]
        info = VideoInfo(len(frames), input.fps, input.size, input.path, input.has_audio)
        chunks = rechunk(frames, options.batch_frames)
        if options.resize is not None:
            chunks = (resize_frames(chunk, options.resize) for chunk in chunks)
    else:
        info = probe_video(input)
        chunks = iter_frames(input, options.batch_frames, options.max_frames, options.resize)
    num_frames = info.num_frames if options.max_frames is None else min(info.num_frames, options.max_frames)
    size = options.resize or info.size
    return VideoInfo(num_frames, info.fps, size, info.path, info.has_audio), chunks


def run(
    input: str | os.PathLike | Video,
    options: StylizeOptions,
    output: str | os.PathLike | None = None,
    bars: Bars | None = None,
    pipeline: StylizePipeline | None = None,
) -> Result:
    """Stylize a video file with Style-A-Video; write ``output`` (fps and audio of the input) or,
    without an output path, return the frames in :attr:`Result.frames`.

    With an output path, memory is bounded in video length: the input is read, stylized and
    written one chunk of ``--batch-frames`` frames at a time."""
    timer = Timer()
    bars = bars or Bars(disable=True)
    # 0. Check inputs
    options.validate()
    # 1. Open the input (optionally first N frames, resized): probe now, read chunk by chunk later,
    #    each chunk rounded to the processing size (multiples of 8)
    info, chunks = open_input(input, options)
    out_width, out_height = info.size
    size = processing_size(out_width, out_height)
    chunks = (resize_frames(chunk, size) for chunk in chunks)
    # 2. Load the models
    pipeline = pipeline or StylizePipeline.from_options(options)
    # 3. Stylize chunk by chunk, streaming each chunk to the writer
    writer = VideoWriter(output, info.fps, audio_from=info.path) if output is not None else None
    kept, num_frames = [], 0
    try:
        for out in pipeline.stream(chunks, options, bars, num_frames=info.num_frames):
            out = resize_frames(out, (out_width, out_height))
            num_frames += len(out)
            if writer is not None:
                writer.write(out)
            else:
                kept.append(out)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    # 4. Finish the file
    path = writer.close() if writer is not None else None
    info_out = {
        "model": pipeline.components.name,
        "seed": options.seed,
        "steps": options.steps,
        "scheduler": options.scheduler,
        "attention": pipeline.attention_backend,
        "size": f"{size[0]}x{size[1]}",
        "clip_guidance": options.clip_guidance,
    }
    return Result(
        output=Path(path) if path else None,
        num_frames=num_frames,
        fps=info.fps,
        seconds=timer.seconds,
        frames=np.concatenate(kept) if kept else None,
        info=info_out,
    )
