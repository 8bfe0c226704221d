"""``stylize --mode keyframes``: the diffusion model edits keyframes only, each keyframe's edit
starts from the previous one carried over to it, and the frames between are rendered from the two
edited keyframes by optical flow. StableVideo's inter-frame propagation (Chai et al., ICCV 2023)
without its layered atlases (that is ``--mode atlas``); flow between keyframes as in
Rerender-A-Video. Flow is always computed on the INPUT video (:mod:`vidforge.core.flow`).

1. Keyframes: frames 0, K, 2K, ... and the last (``--keyframe-interval K``); or ``auto``: frame t
   becomes a keyframe when, since the previous keyframe a, the flow chained from t back to a moves
   pixels by more than ``AUTO_FLOW`` of the frame's longer side on average, or more than
   ``AUTO_OCCLUDED`` of frame t is not visible in frame a, or t - a reaches ``AUTO_MAX_INTERVAL``.
2. Keyframe 0: the Style-A-Video recipe of ``--mode frames`` (:class:`StylizePipeline`'s
   ``denoise_chunk``: four-branch guidance, c_M, optional CLIP step) on that frame alone.
3. Inter-frame propagation, keyframe b after a: ``Ê_b = V·warp(E_a, w_{b→a}) + (1-V)·I_b``, the
   edit of a warped by the flow chained over the interval, with the pixels not visible in frame a
   taken from input frame b. Visible (V): inside frame a, and passing the forward-backward test
   of :mod:`vidforge.core.flow` on the chained flows, or, where it fails, with the input frames
   agreeing after the warp (``PHOTO_TOLERANCE``): on the sample clip the test alone flags 14% of
   a frame after one step and 58% after eight, mostly flat sky, where flow is ambiguous. ``Ê_b`` is
   VAE-encoded, noised to ``--propagation-strength`` s and denoised over the last ``int(s·S)``
   steps with the same guidance, conditioned on c_I of frame b (SDEdit): structure follows the
   input frame, appearance the previous edit. s = 1 starts from noise (independent keyframes);
   s = 0 keeps ``Ê_b`` as it is (no diffusion, no VAE round trip).
4. Frame t between a and b: ``(w_a·W_a + w_b·W_b) / (w_a + w_b)`` with ``W_k`` = E_k warped to t
   by the chained flow, ``w_a = (b-t)/(b-a)·V_a``, ``w_b = (t-a)/(b-a)·V_b`` (V_k: t's pixel is
   visible in k). Where both are occluded: the plain temporal blend
   ``(b-t)/(b-a)·W_a + (t-a)/(b-a)·W_b`` (no jump half-way, unlike switching to the nearer
   keyframe). Then the pixel deflicker of ``--mode frames`` on every frame, in video order.

Memory is bounded in video length: frames are read chunk by chunk and only the current interval's
step flows and E_a warped to each of its frames are held (K frames' worth, ``AUTO_MAX_INTERVAL``
with ``auto``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from vidforge.core.device import make_generator, randn
from vidforge.core.flow import compose_flows, compute_flow, occlusion_mask, warp
from vidforge.core.progress import Bars
from vidforge.core.vae import encode_frames, set_tiling, to_tensor
from vidforge.sampling.schedules import sdedit_start
from vidforge.stylize.options import StylizeOptions
from vidforge.stylize.temporal import fuse_pixels

# --keyframe-interval auto (module docstring; measured motion of the sample clips in BENCHMARKS.md)
AUTO_FLOW = 0.05  # mean chained displacement since the keyframe, fraction of the longer side
AUTO_OCCLUDED = 0.10  # fraction of the frame not visible in the keyframe
AUTO_MAX_INTERVAL = 16  # frames; bounds the interval held in memory
# a pixel that fails the forward-backward test still counts as visible where the input frames agree
# to within this many uint8 levels (per channel) after warping
PHOTO_TOLERANCE = 16


def visible(flow_to: np.ndarray, flow_from: np.ndarray, this: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels of input frame ``this`` found in input frame ``other`` (``flow_to``:
    this -> other on this grid, ``flow_from``: other -> this): inside it, and passing the
    forward-backward test, or (where that test fails) matching it, ``other`` warped within
    ``PHOTO_TOLERANCE`` of ``this``. The test alone rejects most of a flat sky or a smooth gradient,
    where flow is ambiguous and any nearby match is as good (module docstring)."""
    h, w = flow_to.shape[:2]
    x = np.arange(w, dtype=np.float32)[None, :] + flow_to[..., 0]
    y = np.arange(h, dtype=np.float32)[:, None] + flow_to[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    error = np.abs(warp(other.astype(np.float32), flow_to) - this.astype(np.float32)).max(-1)
    return inside & (~occlusion_mask(flow_to, flow_from) | (error < PHOTO_TOLERANCE))


def to_uint8_pixels(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


class Interval:
    """The frames after keyframe a, as they are read: per frame t the step flows ``w_{t-1→t}``,
    ``w_{t→t-1}`` and E_a warped to t by the chained ``w_{t→a}``, with its visibility ``V_a``."""

    def __init__(self, start: int, edited: np.ndarray, frame: np.ndarray, method: str):
        self.start, self.edited, self.method = start, edited.astype(np.float32), method
        self.first = self.last = frame  # input frames a and the last one read
        zero = np.zeros((*frame.shape[:2], 2), np.float32)
        self.to_start, self.from_start = zero, zero  # w_{t→a}, w_{a→t} of the last frame read
        self.frames, self.forward, self.backward, self.warped, self.valid = [], [], [], [], []

    def __len__(self) -> int:
        return len(self.forward)

    def add(self, frame: np.ndarray) -> None:
        frame = frame.copy()  # not a view that would keep its whole chunk alive
        forward = compute_flow(self.last, frame, self.method)  # w_{t-1→t}
        backward = compute_flow(frame, self.last, self.method)  # w_{t→t-1}
        self.to_start = compose_flows(backward, self.to_start)  # w_{t→a} = w_{t→t-1} then w_{t-1→a}
        self.from_start = compose_flows(self.from_start, forward)  # w_{a→t} = w_{a→t-1} then w_{t-1→t}
        self.frames.append(frame)
        self.forward.append(forward)
        self.backward.append(backward)
        self.warped.append(warp(self.edited, self.to_start))
        self.valid.append(visible(self.to_start, self.from_start, frame, self.first))
        self.last = frame

    def motion(self) -> tuple[float, float]:
        """Of the last frame read: mean chained displacement since the keyframe (fraction of the
        longer side) and the fraction of its pixels not visible in the keyframe."""
        size = max(self.to_start.shape[:2])
        displacement = float(np.sqrt((self.to_start**2).sum(-1)).mean()) / size
        return displacement, 1.0 - float(self.valid[-1].mean())

    def carried(self) -> np.ndarray:
        """Ê_b for the last frame read (the next keyframe): the warped edit, occluded pixels from
        the input frame, uint8 ``(H, W, 3)``."""
        valid = self.valid[-1][..., None]
        return to_uint8_pixels(np.where(valid, self.warped[-1], self.last.astype(np.float32)))

    def render(self, edited: np.ndarray) -> list[np.ndarray]:
        """The frames a+1 .. b (b = the last frame read, ``edited`` its edit E_b): the frames
        between blended from both warps (module docstring, 4.), then E_b; uint8 ``(H, W, 3)`` each."""
        n = len(self)
        out = [None] * (n - 1) + [edited]
        to_end = from_end = np.zeros_like(self.to_start)  # w_{t→b}, w_{b→t}
        edited_b = edited.astype(np.float32)
        for j in range(n - 2, -1, -1):  # frame t = a + 1 + j, from b-1 down to a+1
            to_end = compose_flows(self.forward[j + 1], to_end)  # w_{t→t+1} then w_{t+1→b}
            from_end = compose_flows(from_end, self.backward[j + 1])  # w_{b→t+1} then w_{t+1→t}
            alpha = (j + 1) / n  # (t - a) / (b - a)
            warped_b = warp(edited_b, to_end)
            valid_b = visible(to_end, from_end, self.frames[j], self.last)
            w_a = (1 - alpha) * self.valid[j][..., None]
            w_b = alpha * valid_b[..., None]
            total = w_a + w_b
            blend = (w_a * self.warped[j] + w_b * warped_b) / np.maximum(total, 1e-8)
            plain = (1 - alpha) * self.warped[j] + alpha * warped_b  # both occluded
            out[j] = to_uint8_pixels(np.where(total > 0, blend, plain))
        return out

    def deflicker(self, frames: list[np.ndarray], previous: np.ndarray, strength: float) -> np.ndarray:
        """``--mode frames``' pixel fusion of the frames a+1 .. b with the output before each."""
        fused = []
        for j, frame in enumerate(frames):
            valid = (~occlusion_mask(self.backward[j], self.forward[j])).astype(np.float32)
            previous = fuse_pixels(frame, previous, self.backward[j], valid, strength)
            fused.append(previous)
        return np.stack(fused)


class KeyframeStylizer:
    """``--mode keyframes`` over a :class:`~vidforge.stylize.pipeline.StylizePipeline` (its model,
    its denoising recipe). :meth:`stream` yields the output frames interval by interval;
    ``keyframes`` lists the frame indices edited by the diffusion model."""

    def __init__(self, pipe, options: StylizeOptions):
        self.pipe, self.options = pipe, options
        self.keyframes: list[int] = []

    def summary(self) -> dict:
        return {
            "keyframes": len(self.keyframes),
            "keyframe_interval": self.options.keyframe_interval,
            "propagation_strength": self.options.propagation_strength,
        }

    def is_keyframe(self, interval: Interval) -> bool:
        if self.options.keyframe_interval != "auto":
            return len(interval) == self.options.keyframe_interval
        displacement, occluded = interval.motion()
        return len(interval) >= AUTO_MAX_INTERVAL or displacement > AUTO_FLOW or occluded > AUTO_OCCLUDED

    @torch.no_grad()
    def stream(
        self, chunks: Iterable[np.ndarray], bars: Bars | None = None, num_frames: int | None = None
    ) -> Iterator[np.ndarray]:
        """Stylize uint8 chunks ``(f, H, W, 3)`` in video order (sides multiples of the VAE's
        factor); yields uint8 ``(n, H, W, 3)``: frame 0, then each interval's frames up to and
        including its closing keyframe. ``num_frames`` only sizes the progress bar."""
        bars = bars or Bars(disable=True)
        options = self.options
        frames = bars.track((frame for chunk in chunks for frame in chunk), "frames", total=num_frames)
        first = next(frames, None)
        if first is None:
            return
        # 0. Check inputs
        factor = self.pipe.bundle.vae_scale_factor
        height, width = first.shape[:2]
        if height % factor or width % factor:
            raise ValueError(
                f"frame size {width}x{height} must be a multiple of {factor} (see processing_size)"
            )
        set_tiling(self.pipe.vae, options.vae_tiling)
        # 1. What every keyframe shares: prompts, the CLIP encoder (λ > 0), one initial noise
        self.prepare((height // factor, width // factor), bars)
        # 2. Keyframe 0: the Style-A-Video recipe
        edited = self.edit(first, 0)
        yield edited[None]
        # 3. Interval by interval: read and chain flows, close at the next keyframe (and the last frame)
        interval, previous = Interval(0, edited, first, options.flow), edited
        for frame in frames:
            with self.pipe.phases("flow"):
                interval.add(frame)
            if self.is_keyframe(interval):
                interval, previous, out = self.close(interval, previous)
                yield out
        if len(interval):
            yield self.close(interval, previous)[2]

    def prepare(self, latent_size: tuple[int, int], bars: Bars) -> None:
        """State shared by all keyframes, drawn in the order ``--mode frames`` draws it."""
        options, pipe = self.options, self.pipe
        self.generator = make_generator(options.seed)
        self.text = pipe.encode_prompt(options.style)
        clip_on = options.clip_guidance > 0 and options.clip_steps > 0
        self.clip = pipe.load_clip(options.clip_model) if clip_on else None
        channels = pipe.bundle.latent_channels
        self.noise = randn((1, channels, *latent_size), self.generator, pipe.device, pipe.dtype)
        self.bars = bars

    def close(self, interval: Interval, previous: np.ndarray):
        """Edit the interval's closing keyframe b from Ê_b (3.), render a+1 .. b (4.), deflicker.
        Returns the next interval (from b), the last output frame and the output frames."""
        b = interval.start + len(interval)
        edited = self.edit(interval.last, b, interval.carried())
        out = interval.render(edited)
        if self.options.deflicker > 0:
            out = interval.deflicker(out, previous, self.options.deflicker)
        else:
            out = np.stack(out)
        return Interval(b, edited, interval.last, self.options.flow), out[-1], out

    def edit(self, frame: np.ndarray, index: int, carried: np.ndarray | None = None) -> np.ndarray:
        """E_index: frame ``(H, W, 3)`` uint8 stylized from noise (``carried`` None, or strength 1),
        or from ``carried`` Ê noised to ``--propagation-strength`` (SDEdit). uint8 ``(H, W, 3)``."""
        options, pipe = self.options, self.pipe
        self.keyframes.append(index)
        start = 0 if carried is None else sdedit_start(options.steps, options.propagation_strength)
        if start == options.steps:  # strength 0: the carried edit as it is
            return carried
        init = None
        if start > 0:
            pixels = to_tensor(carried[None], pipe.device, pipe.dtype)
            with pipe.phases("encode"):
                init = encode_frames(pipe.vae, pixels, chunk_size=1, sample=False, scale=True)
        latents = pipe.denoise_chunk(
            frame[None], [index], self.noise, self.text, None, range(0), self.clip, options,
            self.generator, {"x0": {}}, self.bars, init=init, start=start,
        )  # fmt: skip
        return pipe.decode(latents, chunk_size=1)[0]
