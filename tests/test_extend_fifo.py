"""FIFO-Diffusion's queue sampler (``vidforge.extend.fifo``) with stub denoisers (no model): the
queue geometry, one DDIM level per position and step, a frame's trip through the queue is a plain
DDIM trajectory, resuming from a yielded state, constant memory."""

import pytest
import torch

from vidforge.extend.fifo import (
    FifoState,
    diagonal_step,
    initial_queue,
    queue_levels,
    sample_fifo,
    windows,
)
from vidforge.sampling.ddim import sample_ddim
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import SD_SCHEDULE, ddim_schedule, diffusers_noise_schedule

NOISE = diffusers_noise_schedule(SD_SCHEDULE)


def elementwise_denoiser():
    """ε = tanh(x)·0.3: every frame is denoised on its own, whatever window it sits in."""
    return Denoiser(lambda x, t: 0.3 * torch.tanh(x), "epsilon")


def mixing_denoiser():
    """ε mixes neighbouring frames and depends on each frame's timestep: windows matter."""

    def model(x, t):
        t = torch.as_tensor(t, dtype=x.dtype).reshape(1, 1, -1, 1, 1) if torch.as_tensor(t).ndim else t
        return 0.2 * x.roll(1, dims=2) + 0.1 * x + 1e-4 * t

    return Denoiser(model, "epsilon")


def test_queue_geometry_by_hand():
    # S = 8 steps, f = 4 frames per window: n = 2 partitions
    assert queue_levels(8, 4, False).tolist() == [7, 6, 5, 4, 3, 2, 1, 0]
    assert queue_levels(8, 4, True).tolist() == [7, 7, 7, 6, 5, 4, 3, 2, 1, 0]  # f/2 = 2 in front
    assert windows(8, 4, False) == [(0, 0), (4, 4)]
    assert windows(8, 4, True) == [(0, 2), (2, 4), (4, 6), (6, 8)]  # 2n windows, second halves written


@pytest.mark.parametrize("lookahead", [False, True])
def test_one_step_moves_every_position_one_level_at_its_own_timestep(lookahead):
    """With an x0 model (prediction 'sample') returning a fixed c, DDIM (eta 0) has a closed form
    per position: √ᾱ_prev·c + √(1-ᾱ_prev)·(x - √ᾱ·c)/√(1-ᾱ), with ᾱ at that position's level."""
    schedule = ddim_schedule(NOISE, 8)
    seen_t = []
    c = torch.randn(1, 2, 1, 3, 3, generator=torch.Generator().manual_seed(1))

    def model(x, t):
        seen_t.append(t.clone())
        return c.expand_as(x)

    queue = torch.randn(1, 2, 10 if lookahead else 8, 3, 3, generator=torch.Generator().manual_seed(0))
    out = diagonal_step(Denoiser(model, "sample"), queue, schedule, 4, lookahead)
    levels = queue_levels(8, 4, lookahead)
    front = 2 if lookahead else 0
    assert torch.equal(out[:, :, :front], queue[:, :, :front])  # context only, never updated
    for p in range(front, queue.shape[2]):
        a, a_prev = schedule.alphas_cumprod[levels[p]], schedule.alphas_cumprod_prev[levels[p]]
        eps = (queue[:, :, p] - a.sqrt() * c[:, :, 0]) / (1 - a).sqrt()
        expected = a_prev.sqrt() * c[:, :, 0] + (1 - a_prev).sqrt() * eps
        assert torch.allclose(out[:, :, p], expected, atol=1e-5), p
    for (start, _), t in zip(windows(8, 4, lookahead), seen_t, strict=True):
        assert torch.equal(t, schedule.timesteps[levels[start : start + 4]].reshape(1, 4))


@pytest.mark.parametrize("lookahead", [False, True])
def test_a_frame_through_the_queue_is_a_ddim_trajectory_from_its_tail_noise(lookahead):
    """Output frame i >= f entered the tail as the noise drawn f + (S - f) steps earlier and was
    denoised once per step, one level each: with a frame-wise denoiser it equals plain DDIM on
    that noise (any level skipped or repeated would break this)."""
    f, n = 4, 3
    schedule = ddim_schedule(NOISE, n * f)
    shape = (1, 2, f, 3, 3)
    denoiser = elementwise_denoiser()
    frames = [z for _, z, _ in sample_fifo(denoiser, schedule, shape, num_frames=9, lookahead=lookahead, eta=0.0,
                                           generator=torch.Generator().manual_seed(5))]  # fmt: skip
    assert len(frames) == 9 and frames[0].shape == (1, 2, 1, 3, 3)
    replay = torch.Generator().manual_seed(5)
    torch.randn(shape, generator=replay)  # the first clip's noise
    torch.randn((1, 2, n * f + (f // 2 if lookahead else 0), 3, 3), generator=replay)  # the first queue's
    tails = [torch.randn((1, 2, 1, 3, 3), generator=replay) for _ in range(9)]
    for i in range(f, 9):
        expected = sample_ddim(denoiser, tails[i - f], schedule)
        assert torch.allclose(frames[i], expected, atol=1e-6), i


def test_first_queue_is_the_first_clip_forward_noised_per_position():
    f, n = 4, 2
    schedule = ddim_schedule(NOISE, n * f)
    clip = torch.arange(f, dtype=torch.float32).reshape(1, 1, f, 1, 1).expand(1, 2, f, 3, 3)
    queue = initial_queue(clip, schedule, True, torch.Generator().manual_seed(0))
    noise = torch.randn((1, 2, 10, 3, 3), generator=torch.Generator().manual_seed(0))
    levels = queue_levels(n * f, f, True)
    sources = [0, 0] + [0, 0, 0, 0, 0, 1, 2, 3]  # front: frame 0; then max(0, p - (S - f))
    for p in range(10):
        a = schedule.alphas_cumprod[levels[p]]
        assert torch.allclose(queue[:, :, p], a.sqrt() * sources[p] + (1 - a).sqrt() * noise[:, :, p])


@pytest.mark.parametrize("lookahead", [False, True])
def test_resume_from_a_yielded_state_gives_the_same_frames(lookahead):
    schedule = ddim_schedule(NOISE, 8)
    shape = (1, 2, 4, 3, 3)
    kwargs = dict(lookahead=lookahead, eta=1.0)  # eta > 0: the RNG state matters too
    full = [z for _, z, _ in sample_fifo(mixing_denoiser(), schedule, shape, num_frames=7,
                                         generator=torch.Generator().manual_seed(3), **kwargs)]  # fmt: skip
    generator = torch.Generator().manual_seed(3)
    it = sample_fifo(mixing_denoiser(), schedule, shape, num_frames=7, generator=generator, **kwargs)
    first = [next(it) for _ in range(3)]
    index, _, state = first[-1]
    saved = FifoState.from_tensors(state.index, {k: v.clone() for k, v in state.tensors().items()})
    rng = generator.get_state()
    del it
    resumed_gen = torch.Generator()
    resumed_gen.set_state(rng)
    rest = list(sample_fifo(mixing_denoiser(), schedule, shape, num_frames=7, generator=resumed_gen,
                            state=saved, **kwargs))  # fmt: skip
    assert index == 2 and [i for i, _, _ in rest] == [3, 4, 5, 6]
    frames = [z for _, z, _ in first] + [z for _, z, _ in rest]
    assert all(torch.equal(a, b) for a, b in zip(frames, full, strict=True))
    other = next(sample_fifo(mixing_denoiser(), schedule, shape, num_frames=1,
                             generator=torch.Generator().manual_seed(4), **kwargs))[1]  # fmt: skip
    assert not torch.equal(other, full[0])


def test_queue_size_does_not_grow_with_the_number_of_frames():
    schedule = ddim_schedule(NOISE, 8)
    sizes = {
        frames: {
            s.nbytes
            for _, _, s in sample_fifo(
                elementwise_denoiser(), schedule, (1, 2, 4, 3, 3), num_frames=frames, eta=0.0,
                generator=torch.Generator().manual_seed(0),
            )
        }
        for frames in (3, 12)
    }  # fmt: skip
    assert sizes == {3: {(2 + 8) * 2 * 9 * 4}, 12: {(2 + 8) * 2 * 9 * 4}}  # f/2 + S frames of 2·3·3 floats


def test_geometry_errors():
    schedule = ddim_schedule(NOISE, 10)
    with pytest.raises(ValueError, match="S = n·f"):
        next(sample_fifo(elementwise_denoiser(), schedule, (1, 1, 4, 2, 2), num_frames=1,
                         generator=torch.Generator()))  # fmt: skip
    with pytest.raises(ValueError, match="even number of frames"):
        next(sample_fifo(elementwise_denoiser(), schedule, (1, 1, 5, 2, 2), num_frames=1,
                         generator=torch.Generator()))  # fmt: skip


def test_first_queue_reapplies_the_dynamic_rescale_per_level():
    """DynamiCrafter 512/1024 predict scale(t)·x0 (SPEC section 2): a clean clip (at the last step's
    scale) noised to level i is scaled by scale(t_i) / scale(t_last) first."""
    from vidforge.models.dynamicrafter.config import CONFIGS, noise_schedule
    from vidforge.sampling.schedules import dynamic_rescale_arr

    noise = noise_schedule(CONFIGS["1024"])  # base 0.3
    schedule = ddim_schedule(noise, 8)
    clip = torch.ones(1, 1, 4, 1, 1)
    queue = initial_queue(clip, schedule, False, torch.Generator().manual_seed(0))
    eps = torch.randn((1, 1, 8, 1, 1), generator=torch.Generator().manual_seed(0))
    arr = dynamic_rescale_arr(0.3)
    levels = queue_levels(8, 4, False)
    for p in range(8):
        t = schedule.timesteps[levels[p]]
        a = schedule.alphas_cumprod[levels[p]]
        s = arr[t] / arr[schedule.timesteps[-1]]
        assert torch.allclose(queue[0, 0, p], a.sqrt() * s + (1 - a).sqrt() * eps[0, 0, p], atol=1e-5)
    scales = [float(arr[t] / arr[schedule.timesteps[-1]]) for t in schedule.timesteps]
    assert min(scales) < 0.5 and scales[-1] == 1.0  # the tail is scaled, the head is not
