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

import numpy as np
import torch

from vidforge.core.attention import apply_attention_backend, select_backend
from vidforge.core.device import make_generator, randn, select_device, select_dtype
from vidforge.core.options import Result
from vidforge.core.progress import Bars, Phases, Timer
from vidforge.core.vae import decode_latents, encode_frames, set_tiling, to_tensor, to_uint8
from vidforge.core.video_io import (
    Video,
    VideoInfo,
    VideoInput,
    iter_frames,
    load_video,
    probe_video,
    resize_frames,
)
from vidforge.core.writers import Sink
from vidforge.models.bundle import ModelBundle
from vidforge.sampling.ddim import sample_ddim
from vidforge.sampling.denoisers import Denoiser, Prediction, eps_from_x0
from vidforge.sampling.euler import sample_euler
from vidforge.sampling.schedules import Step, ddim_schedule, noised, sigma_schedule
from vidforge.stylize.attention_map import attention_condition, install_probs_processor, saliency_mask
from vidforge.stylize.clip_guidance import clip_guidance_step
from vidforge.stylize.guidance import batch_branches, branch_conditions, four_branch_guidance, split_branches
from vidforge.stylize.options import StylizeOptions
from vidforge.stylize.temporal import FrameFlows, chunk_flows, fuse_latent, fuse_pixels, fuse_window_steps


def processing_size(width: int, height: int, factor: int = 8, max_side: int = 0) -> tuple[int, int]:
    """Frame size the model sees: scaled down to a longer side of ``max_side`` (0 = never) and each
    side rounded to the NEAREST multiple of the VAE's scale factor (halves round up), at least one.
    The aspect ratio changes by at most half a factor per side; the output is resized back."""
    scale = max_side / max(width, height) if 0 < max_side < max(width, height) else 1.0
    return max(factor, math.floor(width * scale / factor + 0.5) * factor), max(
        factor, math.floor(height * scale / factor + 0.5) * factor
    )


def make_schedule(scheduler: str, bundle: ModelBundle, steps: int):
    """The sampler's per-step table: ``ddim`` over ᾱ, ``euler`` / ``euler-a`` over σ."""
    if scheduler == "ddim":
        return ddim_schedule(bundle.noise_schedule, steps)
    return sigma_schedule(bundle.noise_schedule, steps, ancestral=scheduler == "euler-a")


def sample(scheduler: str, denoiser, latents, schedule, generator, before_step, progress):
    """Run the chosen sampler (none keeps a history, so fusion and the CLIP step are safe)."""
    if scheduler == "ddim":
        return sample_ddim(
            denoiser, latents, schedule, generator=generator, before_step=before_step, progress=progress
        )
    return sample_euler(
        denoiser, latents, schedule, generator=generator, ancestral=scheduler == "euler-a",
        before_step=before_step, progress=progress,
    )  # fmt: skip


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


class StylizePipeline:
    """Four-branch InstructPix2Pix sampling with attention condition, CLIP optimization and flow fusion."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: torch.device,
        dtype: torch.dtype,
        attention_backend: str = "sdpa",
        clip_loader=None,
    ):
        self.bundle = bundle
        self.unet, self.vae = bundle.unet, bundle.vae
        self.device, self.dtype = device, dtype
        self.attention_backend = apply_attention_backend(self.unet, attention_backend)
        self.probs = install_probs_processor(self.unet)  # the one layer that exposes attention
        self._clip_loader = clip_loader
        self.clip = None
        self.phases = Phases()  # seconds per phase; run() passes its own

    @classmethod
    def from_options(cls, options: StylizeOptions, model: ModelBundle | None = None) -> StylizePipeline:
        """The pipeline on ``options``' hardware, over ``model`` (loaded from ``options.model`` if None)."""
        from vidforge.models import load_model

        if model is not None and options.device == "auto":  # a loaded model stays where it is
            device = model.device
        else:
            device = select_device(options.device)
        dtype = select_dtype(device, options.dtype)
        backend = select_backend(options.attention, device)
        model = model or load_model(options.model, "stylize", device, dtype, options.offload)
        pipeline = cls(model, device, dtype, backend)
        if options.compile and not hasattr(model.unet, "_orig_mod"):
            from vidforge.models.bundle import compile_denoiser

            compile_denoiser(model)  # after the attention processors are in place
            pipeline.unet = model.unet
        return pipeline

    # ------------------------------------------------------------------------------------- helpers

    def load_clip(self, spec: str):
        """The CLIP image encoder of the sampling optimization (only called when ``λ > 0``)."""
        if self.clip is None:
            from vidforge.models.clip import load_clip

            loader = self._clip_loader or load_clip
            self.clip = loader("tiny" if self.bundle.is_tiny else spec, self.device)
        return self.clip

    def encode_prompt(self, style: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Null (empty prompt) and style text embeddings, each ``(1, L, D)``."""
        embeds = self.bundle.encode_prompts(["", style])
        return embeds[:1], embeds[1:]

    def encode_image_latents(self, frames: np.ndarray, chunk_size: int) -> torch.Tensor:
        """c_I: ``vae.encode(frame).latent_dist.mode()`` UNSCALED, as InstructPix2Pix, ``(F, C, h, w)``."""
        pixels = to_tensor(frames, self.device, self.dtype)
        with self.phases("encode"):
            return encode_frames(self.vae, pixels, chunk_size=chunk_size, sample=False, scale=False)

    def decode(self, latents: torch.Tensor, chunk_size: int) -> np.ndarray:
        """uint8 frames ``(F, H, W, 3)`` of scaled latents, ``chunk_size`` frames per VAE call."""
        with self.phases("decode"):
            return to_uint8(decode_latents(self.vae, latents, chunk_size=chunk_size))

    def unet_branches(
        self, latents, t, image_latents, attn_latents, text_null, text_style, text_branch, capture
    ):
        """ONE UNet call over the four branches; returns their noise predictions ``4 × (F, C, h, w)``.

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

    def guided_eps(self, model_input, t, image_latents, attn_latents, text, options, capture):
        """Guided eps ``(F, C, h, w)`` and, if ``capture``, the saliency ``(F, L)`` of the c_I branch."""
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
        factor = self.bundle.vae_scale_factor
        if height % factor or width % factor:
            raise ValueError(
                f"frame size {width}x{height} must be a multiple of {factor} (see processing_size)"
            )
        latent_size = (height // factor, width // factor)
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
        noise = randn((1, self.bundle.latent_channels, *latent_size), generator, self.device, self.dtype)

        # previous chunk's last frame: per-step x0, final output, and input (for the flow)
        carry = {"x0": {}, "out": None, "input": None}
        total = math.ceil(num_frames / options.batch_frames) if num_frames is not None else None
        start = 0
        for chunk in bars.track(chunks, "chunks", total=total):
            indices = list(range(start, start + len(chunk)))
            with self.phases("flow"):
                flows = chunk_flows(chunk, start, carry["input"], options.flow) if need_flow else None
            # 5. Denoise the chunk
            latents = self.denoise_chunk(
                chunk, indices, noise, text, flows, fuse_steps, clip, options, generator, carry, bars
            )
            # 6. Decode
            out = self.decode(latents, options.vae_chunk(options.batch_frames))
            # 7. Pixel fusion with the previous output frame (deflicker)
            if options.deflicker > 0:
                out = self.pixel_fusion(out, indices, flows, options.deflicker, carry)
            # copies, so the previous chunk's arrays are freed
            carry["out"], carry["input"] = out[-1].copy(), chunk[-1].copy()
            start += len(chunk)
            yield out

    def denoise_chunk(
        self, chunk, indices, noise, text, flows, fuse_steps, clip, options, generator, carry, bars,
        init=None, start=0,
    ):  # fmt: skip
        """Sample the latents ``(F, C, h, w)`` of one chunk of frames. ``init`` (scaled latents
        ``(F, C, h, w)``) and ``start``: begin at step ``start`` from ``init`` noised to that step's
        level (SDEdit) instead of from pure noise at step 0."""
        num = len(indices)
        latent_size = tuple(noise.shape[-2:])
        # 5.1 Timesteps (from step `start` on)
        schedule = make_schedule(options.scheduler, self.bundle, options.steps).from_step(start)
        # 5.2 Conditions: c_I, and c_M = c_I until the first attention map exists
        image_latents = self.encode_image_latents(chunk, options.vae_chunk(options.batch_frames))
        branches = FourBranchModel(self, image_latents, text, options, latent_size)
        denoiser = Denoiser(branches, "epsilon")
        # 5.3 Latent fusion with the previous frame's flow-warped x0, inside --fuse-window
        if len(fuse_steps):
            flow_latents = [flows.latent(k, latent_size, self.device) for k in range(num)]
            denoiser = LatentFusion(denoiser, indices, fuse_steps, flow_latents, options.fuse_strength, carry)
        denoiser = Recorded(denoiser)
        # 5.4 CLIP sampling optimization on the first --clip-steps steps: shift z_t before the UNet
        before_step = None
        if clip is not None:
            target = clip.encode_images(to_tensor(chunk, self.device).add(1).div(2))
            before_step = clip_optimization(self.vae, clip, target, branches, denoiser, options)
        # 5.5 Sample from one noise shared by all frames (or from `init` noised with it)
        latents = noise.expand(num, -1, -1, -1)
        if init is None:
            latents = latents * schedule_init_sigma(schedule)
        else:
            latents = noised(init.to(latents.dtype), latents, schedule.step(0, self.device))
        progress = lambda it: bars.track(it, "denoise", total=len(schedule))  # noqa: E731
        with self.phases("sample"):
            return sample(options.scheduler, denoiser, latents, schedule, generator, before_step, progress)

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


class FourBranchModel:
    """``model(z_in, t) -> guided ε`` of one chunk: the four branches in one UNet call. After each
    call the c_I branch's attention saliency becomes the next step's ``c_M = M_t ⊙ c_I`` (the map
    lags one step, so all four branches stay in one call; the first step uses ``c_M = c_I``)."""

    def __init__(self, pipe: StylizePipeline, image_latents, text, options: StylizeOptions, latent_size):
        self.pipe, self.image_latents, self.text, self.options = pipe, image_latents, text, options
        self.attn_latents = image_latents
        self.latent_size = latent_size

    def __call__(self, z_in: torch.Tensor, t: torch.Tensor, capture: bool | None = None) -> torch.Tensor:
        capture = self.options.attn_scale != 0 if capture is None else capture
        eps, saliency = self.pipe.guided_eps(
            z_in, t, self.image_latents, self.attn_latents, self.text, self.options, capture
        )
        if saliency is not None:
            mask = saliency_mask(saliency, self.latent_size)
            self.attn_latents = attention_condition(mask, self.image_latents)
        return eps


class LatentFusion:
    """Denoiser wrapper: inside ``--fuse-window``, each frame's x0 is blended with the previous
    frame's flow-warped x0 (frame by frame in video order; the first frame of a chunk uses the
    previous chunk's last frame at the same step), and ε is recomputed to match."""

    def __init__(self, denoiser, indices, fuse_steps, flow_latents, strength, carry):
        self.denoiser, self.indices, self.fuse_steps = denoiser, indices, fuse_steps
        self.flow_latents, self.strength, self.carry = flow_latents, strength, carry

    def __call__(self, x: torch.Tensor, step: Step) -> Prediction:
        prediction = self.denoiser(x, step)
        if step.index not in self.fuse_steps:
            return prediction
        prev = self.carry["x0"].get(step.index)
        fused = []
        for k, f in enumerate(self.indices):
            current = prediction.x0[k]
            if prev is not None and f > 0:
                flow, valid = self.flow_latents[k]
                current = fuse_latent(current, prev, flow, valid, self.strength)
            fused.append(current)
            prev = current
        self.carry["x0"][step.index] = prev
        x0 = torch.stack(fused)
        return Prediction(eps_from_x0(x, x0, step), x0)


class Recorded:
    """Denoiser wrapper that keeps its last prediction (the CLIP step reuses the previous step's ε)."""

    def __init__(self, denoiser):
        self.denoiser, self.last = denoiser, None

    def __call__(self, x: torch.Tensor, step: Step) -> Prediction:
        self.last = self.denoiser(x, step)
        return self.last


def clip_optimization(vae, clip, target_embeds, branches: FourBranchModel, denoiser: Recorded, options):
    """``before_step`` of Style-A-Video's sampling optimization, on the first ``--clip-steps`` steps:
    ``z_t ← z_t - λ·g/‖g‖·‖z_t‖`` with ``g = ∇ L_s`` through the x0 of the previous step's guided ε
    (the first step makes one extra guided call, without fusion or a new attention map)."""

    def before_step(z: torch.Tensor, step: Step) -> torch.Tensor:
        if step.index >= options.clip_steps:
            return z
        if denoiser.last is None:
            z_in = z if step.input_scale is None else z / step.input_scale
            eps = branches(z_in, step.t, capture=False)
        else:
            eps = denoiser.last.eps

        def predict_x0(latent, f):
            return (latent - step.b * eps[f : f + 1]) / step.a

        shifted, _ = clip_guidance_step(z, predict_x0, vae, clip, target_embeds, options.clip_guidance)
        return shifted

    return before_step


def schedule_init_sigma(schedule) -> float:
    """The scale of the initial noise: 1 for DDIM (ᾱ-space), ``init_noise_sigma`` for Euler."""
    return getattr(schedule, "init_noise_sigma", 1.0)


def open_input(input: VideoInput, options: StylizeOptions) -> tuple[VideoInfo, Iterator]:
    """The input's metadata (after ``--max-frames`` and ``--resize``) and its frames as lazily read
    chunks of ``--batch-frames`` frames: a file is probed, then decoded chunk by chunk, never whole;
    frames given as an array or :class:`Video` are cut into chunks."""
    if isinstance(input, Video | np.ndarray):
        video = load_video(input, options.max_frames)
        info = VideoInfo(video.num_frames, video.fps, video.size, video.path, video.has_audio)
        chunks = rechunk(video.frames, options.batch_frames)
        if options.resize is not None:
            chunks = (resize_frames(chunk, options.resize) for chunk in chunks)
    else:
        info = probe_video(input)
        chunks = iter_frames(input, options.batch_frames, options.max_frames, options.resize)
    num_frames = info.num_frames if options.max_frames is None else min(info.num_frames, options.max_frames)
    size = options.resize or info.size
    return VideoInfo(num_frames, info.fps, size, info.path, info.has_audio), chunks


def run(
    input: VideoInput,
    options: StylizeOptions,
    output: str | os.PathLike | None = None,
    bars: Bars | None = None,
    pipeline: StylizePipeline | None = None,
    *,
    model: ModelBundle | None = None,
    overwrite: bool = False,
) -> Result:
    """Stylize a video (a file, a PNG folder, ``(F, H, W, 3)`` uint8 frames or a :class:`Video`)
    with Style-A-Video; write ``output`` (fps and audio of the input, and its settings record
    beside it) or, without an output path, return the frames in :attr:`Result.frames`. An
    existing ``output`` needs ``overwrite``. ``model`` (a loaded bundle) or ``pipeline`` skip loading.

    With an output path, memory is bounded in video length in modes frames and keyframes: the
    input is read, stylized and written one chunk of ``--batch-frames`` frames at a time."""
    from vidforge.core.settings import comment, describe_input, finish_run, resolve_seed
    from vidforge.core.writers import check_output, output_settings

    timer, phases = Timer(), Phases()
    bars = bars or Bars(disable=True)
    options = resolve_seed(options)
    # 0. Check inputs and the output path
    options.validate()
    check_output(output, options, overwrite, inputs=(input,))
    # 1. Open the input (optionally first N frames, resized): probe now, read chunk by chunk later
    info, chunks = open_input(input, options)
    # 2. Load the models
    with phases("load"):
        pipeline = pipeline or StylizePipeline.from_options(options, model)
    pipeline.phases = phases
    # 3. Each chunk at the processing size (multiples of the VAE's factor, at most --max-side)
    out_size = info.size
    size = processing_size(*out_size, pipeline.bundle.vae_scale_factor, options.max_side)
    chunks = (resize_frames(chunk, size) for chunk in chunks)
    # 4. Stylize (frames: chunk by chunk; keyframes: interval by interval; atlas: fit, edit once,
    #    render), streaming the result to the output, resized back
    method = stylizer(pipeline, options)
    encoding = output_settings(options, overwrite, info.color, comment("stylize", options))
    with Sink(output, info.fps, info.path, encoding) as sink:
        for out in method.stream(chunks, bars, num_frames=info.num_frames):
            sink.write(resize_frames(out, out_size))
    details = {
        "model": pipeline.bundle.name,
        "seed": options.seed,
        "steps": options.steps,
        "scheduler": options.scheduler,
        "attention": pipeline.attention_backend,
        "size": f"{size[0]}x{size[1]}",
        "clip_guidance": options.clip_guidance,
        "mode": options.mode,
        **method.summary(),
    }
    record = finish_run(
        "stylize", options, output, inputs={"input": describe_input(input, info)}, model=pipeline.bundle,
        frames=sink.num_frames, fps=info.fps, size=out_size, seconds=timer.seconds,
        timings=phases.rounded(), details=details,
    )  # fmt: skip
    note = f"processed at {size[0]}x{size[1]} (--max-side {options.max_side})" if size != out_size else ""
    return Result(
        output=sink.output, num_frames=sink.num_frames, fps=info.fps, seconds=timer.seconds,
        frames=sink.frames, info=details, settings=record, note=note,
    )  # fmt: skip


class FrameStylizer:
    """``--mode frames``: Style-A-Video on every frame, chunk by chunk (:meth:`StylizePipeline.stream`)."""

    def __init__(self, pipe: StylizePipeline, options: StylizeOptions):
        self.pipe, self.options = pipe, options

    def stream(self, chunks, bars: Bars | None = None, num_frames: int | None = None) -> Iterator[np.ndarray]:
        return self.pipe.stream(chunks, self.options, bars, num_frames=num_frames)

    def summary(self) -> dict:
        return {}


def stylizer(pipeline: StylizePipeline, options: StylizeOptions):
    """The ``--mode``'s method: ``stream(chunks, bars, num_frames)`` yields output chunks in video
    order, ``summary()`` adds its details to the record once the stream has ended."""
    if options.mode == "keyframes":
        from vidforge.stylize.keyframes import KeyframeStylizer

        return KeyframeStylizer(pipeline, options)
    if options.mode == "atlas":
        from vidforge.stylize.atlas.pipeline import AtlasStylizer

        return AtlasStylizer(pipeline, options)
    return FrameStylizer(pipeline, options)
