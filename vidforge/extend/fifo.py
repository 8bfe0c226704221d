"""FIFO-Diffusion (Kim et al., NeurIPS 2024, arXiv 2405.11473): diagonal denoising over a queue.

A queue holds ``S = n·f`` latent frames at increasing noise levels, one DDIM level each: position 0
(the head) is one step from clean, position ``S-1`` (the tail) is at the first timestep. Every
step denoises the whole queue by one level, in windows of the model's ``f`` frames with one
timestep per frame (latent partitioning: ``n`` windows), then dequeues the clean head frame and
enqueues fresh noise at the tail. One network pass over the queue gives one output frame, and the
queue never grows: memory is constant in the video's length.

Lookahead denoising (on by default, as in the authors' code): the queue gets ``f/2`` more frames
in front, windows overlap by half (``2n`` of them, stride ``f/2``), and each window writes back only
its second half, so every frame is denoised with ``f/2`` less noisy frames ahead of it. The front
``f/2`` positions hold the last output frames (clean latents fed at the smallest timestep): they
are context and are never updated. Windows never read what another window writes within a step,
so their order does not matter.

The first queue is built as the authors build it: a plain DDIM sample of ``f`` frames (``S``
steps), forward-noised per position: position ``p`` (of the ``S``) holds clip frame
``max(0, p - (S - f))`` at level ``p``, and the lookahead front holds frame 0 at the smallest
level. The first ``S - f`` frames dequeued are re-denoised copies of frame 0, a warm-up the
authors drop; output starts after it (the re-denoised first clip, then new frames).

The sampler only needs a :class:`~vidforge.sampling.denoisers.Denoiser` whose model takes one
timestep per frame (``t (1, f)``); steps are the shared :func:`~vidforge.sampling.ddim.ddim_step`
with per-frame ᾱ, σ and dynamic-rescale tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from vidforge.core.device import randn
from vidforge.sampling.ddim import ddim_step, sample_ddim
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import DDIMSchedule, Step

FRAME_DIM = 2


@dataclass
class FifoState:
    """Everything needed to continue: the queue ``(B, C, L, h, w)`` (position 0 the least noisy;
    ``L = S`` or ``f/2 + S`` with lookahead; None before the first clip is sampled) and
    ``frame_index``, the output frames dequeued so far (negative during the warm-up)."""

    queue: torch.Tensor | None = None
    frame_index: int = 0

    @property
    def index(self) -> int:
        return self.frame_index

    @classmethod
    def from_tensors(cls, index: int, tensors: dict[str, torch.Tensor]) -> FifoState:
        return cls(tensors.get("queue"), index)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"queue": self.queue.contiguous()} if self.queue is not None else {}

    @property
    def nbytes(self) -> int:
        """Size of the queue: the sampler's whole memory between frames."""
        return self.queue.numel() * self.queue.element_size() if self.queue is not None else 0


def check_geometry(num_steps: int, clip_frames: int, lookahead: bool) -> None:
    """``S`` must be a whole number of ``f``-frame partitions; lookahead needs an even ``f``."""
    if num_steps % clip_frames:
        raise ValueError(f"FIFO-Diffusion needs S = n·f steps; got S = {num_steps}, f = {clip_frames}")
    if lookahead and clip_frames % 2:
        raise ValueError(f"lookahead denoising needs an even number of frames per window (got {clip_frames})")


def queue_levels(num_steps: int, clip_frames: int, lookahead: bool) -> torch.Tensor:
    """``(L,)`` long: the DDIM step index (0 = first step, largest t) each queue position is denoised
    with. Position ``p`` of the ``S`` is at step ``S-1-p``; the lookahead front sits at ``S-1``."""
    front = [num_steps - 1] * (clip_frames // 2 if lookahead else 0)
    return torch.tensor(front + [num_steps - 1 - p for p in range(num_steps)], dtype=torch.long)


def windows(num_steps: int, clip_frames: int, lookahead: bool) -> list[tuple[int, int]]:
    """``(start, write_from)`` of every window of ``f`` frames: it reads ``[start, start + f)`` and
    writes back ``[write_from, start + f)`` (lookahead: its second half; else all of it)."""
    f, n = clip_frames, num_steps // clip_frames
    if lookahead:
        return [(r * (f // 2), r * (f // 2) + f // 2) for r in range(2 * n)]
    return [(r * f, r * f) for r in range(n)]


def initial_queue(
    clip: torch.Tensor, schedule: DDIMSchedule, lookahead: bool, generator: torch.Generator
) -> torch.Tensor:
    """The first queue from a clean clip ``(B, C, f, h, w)``: clip frame ``max(0, p - (S - f))``
    forward-noised to position ``p``'s level, ``√ᾱ·s·x0 + √(1-ᾱ)·ε`` (see the module docstring).
    ``s`` re-applies DynamiCrafter's dynamic x0 rescale at that level (the clip comes out at the
    last step's scale); 1 for every other model."""
    num_steps, f = len(schedule), clip.shape[FRAME_DIM]
    levels = queue_levels(num_steps, f, lookahead)
    front = f // 2 if lookahead else 0
    sources = [0] * front + [max(0, p - (num_steps - f)) for p in range(num_steps)]
    x0 = clip[:, :, sources]
    # x0_rescale[i] = scale(t_i+1) / scale(t_i), 1 at the last step: scale(t_i) / scale(t_last) = 1 / Π_{j>=i}
    scale = 1 / schedule.x0_rescale.double().flip(0).cumprod(0).flip(0)
    alpha = per_frame(schedule.alphas_cumprod, levels, clip.device)
    x0 = x0 * per_frame(scale.float(), levels, clip.device)
    noise = randn(x0.shape, generator, clip.device, clip.dtype)
    return (alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise).to(clip.dtype)


def per_frame(table: torch.Tensor, levels: torch.Tensor, device) -> torch.Tensor:
    """``table[levels]`` shaped ``(1, 1, F, 1, 1)`` to broadcast over ``(B, C, F, h, w)`` latents."""
    return table[levels].to(device).reshape(1, 1, -1, 1, 1)


def diagonal_step(
    denoiser: Denoiser,
    queue: torch.Tensor,
    schedule: DDIMSchedule,
    clip_frames: int,
    lookahead: bool,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    index: int = 0,
) -> torch.Tensor:
    """One FIFO-Diffusion step: every queue position (the lookahead front excepted) moves one DDIM
    level down, window by window, each frame at its own timestep. Returns the new queue (the head is
    then clean); ``index`` is passed on as the denoiser's ``Step.index``."""
    num_steps, f = len(schedule), clip_frames
    levels = queue_levels(num_steps, f, lookahead)
    sigmas = schedule.sigmas(eta)
    first = f // 2 if lookahead else 0  # positions before it are context only
    noise = None
    if eta > 0:  # drawn for the updated positions only; zeros for the context in front
        drawn = randn(queue[:, :, first:].shape, generator, queue.device, queue.dtype)
        noise = torch.cat([torch.zeros_like(queue[:, :, :first]), drawn], dim=FRAME_DIM)
    out = queue.clone()
    for start, write in windows(num_steps, f, lookahead):
        idx = levels[start : start + f]
        alpha = schedule.alphas_cumprod[idx].to(queue.device)
        step = Step(index, schedule.timesteps[idx].to(queue.device).reshape(1, f),
                    alpha.sqrt().reshape(1, 1, f, 1, 1), (1 - alpha).sqrt().reshape(1, 1, f, 1, 1))  # fmt: skip
        eps, x0 = denoiser(queue[:, :, start : start + f], step)
        x0 = x0 * per_frame(schedule.x0_rescale, idx, queue.device)
        z = noise[:, :, start : start + f] if noise is not None else None
        a_prev = per_frame(schedule.alphas_cumprod_prev, idx, queue.device)
        x = ddim_step(eps, x0, a_prev, per_frame(sigmas, idx, queue.device), z)
        out[:, :, write : start + f] = x[:, :, write - start :].to(queue.dtype)
    return out


def sample_fifo(
    denoiser: Denoiser,
    schedule: DDIMSchedule,
    shape: tuple[int, int, int, int, int],
    *,
    num_frames: int,
    lookahead: bool = True,
    eta: float = 1.0,
    generator: torch.Generator,
    state: FifoState | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[Iterable, str], Iterable] | None = None,
) -> Iterator[tuple[int, torch.Tensor, FifoState]]:
    """FIFO-Diffusion: yield ``(i, z0_i (B, C, 1, h, w), state)`` for output frames ``i`` from
    ``state.frame_index`` up to ``num_frames - 1``, one per queue step.

    ``shape = (B, C, f, h, w)`` is one window (the model's clip); ``len(schedule)`` must be ``n·f``.
    Without a queue in ``state`` the first clip is sampled with plain DDIM and forward-noised into
    the first queue. The yielded state (and ``generator``'s state at that moment) resumes exactly
    after frame ``i``. ``progress(iterable, description)`` wraps the first clip's steps and the queue
    steps.
    """
    num_steps, f = len(schedule), shape[FRAME_DIM]
    check_geometry(num_steps, f, lookahead)
    warmup = num_steps - f
    track = progress or (lambda items, description: items)
    state = state or FifoState()
    if state.queue is None:
        noise = randn(shape, generator, device, dtype)
        clip = sample_ddim(denoiser, noise, schedule, eta=eta, generator=generator,
                           progress=lambda steps: track(steps, "fifo: first clip"))  # fmt: skip
        state = FifoState(initial_queue(clip, schedule, lookahead, generator), -warmup)
    head = f // 2 if lookahead else 0
    for i in track(range(state.frame_index, num_frames), "fifo: frames"):
        queue = diagonal_step(denoiser, state.queue, schedule, f, lookahead, eta, generator, i)
        frame = queue[:, :, head : head + 1].clone()
        tail = randn(frame.shape, generator, queue.device, queue.dtype)
        state = FifoState(torch.cat([queue[:, :, 1:], tail], dim=FRAME_DIM), i + 1)
        if i >= 0:
            yield i, frame, state
