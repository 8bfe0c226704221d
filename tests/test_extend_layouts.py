"""The clip layouts and FIFO-Diffusion, measured on a toy denoiser whose x0 prediction is smooth in
time (a Gaussian blur over frames, σ = 1.5 frames): any jump in the output comes from how frames
are put together, not from the model.

* default layout (every clip's N frames, the official one): the change across a clip boundary is
  within 1.5x the mean within-clip change (the DSG-tied junction);
* old layout (clip k's first M frames dropped): a jump back at every boundary, which
  ``evaluate --metric seams`` flags;
* FIFO-Diffusion: no spike anywhere, and no repetition (it keeps moving forward).

``pytest -s tests/test_extend_layouts.py`` prints the numbers (BENCHMARKS.md quotes them)."""

import numpy as np
import pytest
import torch

from vidforge.evaluate import metrics
from vidforge.evaluate.options import EvaluateOptions
from vidforge.extend import sample_fifo, sample_reuse_and_diffuse
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.schedules import SD_SCHEDULE, ddim_schedule, diffusers_noise_schedule

N, M, CLIPS = 8, 4, 6
SHAPE = (1, 3, N, 16, 16)
NOISE = diffusers_noise_schedule(SD_SCHEDULE)


def smooth_in_time(x: torch.Tensor, t, sigma: float = 1.5) -> torch.Tensor:
    """x0 prediction: the latents blurred over frames with a normalised Gaussian (any window,
    any per-frame timesteps)."""
    r = torch.arange(x.shape[2], dtype=x.dtype)
    kernel = torch.exp(-0.5 * ((r[:, None] - r[None]) / sigma) ** 2)
    return torch.einsum("gf,bcfhw->bcghw", kernel / kernel.sum(1, keepdim=True), x)


@pytest.fixture(scope="module")
def toy_denoiser():
    return Denoiser(smooth_in_time, "sample")


@pytest.fixture(scope="module")
def videos(toy_denoiser):
    """Latent videos ``(C, F, h, w)`` and their clip boundaries (index of a clip's first frame)."""
    clips = [
        z
        for _, z, _ in sample_reuse_and_diffuse(
            toy_denoiser, ddim_schedule(NOISE, 20), SHAPE, num_clips=CLIPS, prompt_frames=M,
            noise_recycle=4.0, staged_guidance=0.4, generator=torch.Generator().manual_seed(0),
        )
    ]  # fmt: skip
    fifo = sample_fifo(toy_denoiser, ddim_schedule(NOISE, 4 * N), SHAPE, num_frames=CLIPS * N, eta=0.0,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    return {
        "default": (torch.cat(clips, 2)[0], [N * k for k in range(1, CLIPS)]),
        "old": (
            torch.cat([clips[0]] + [c[:, :, M:] for c in clips[1:]], 2)[0],
            [N + (N - M) * k for k in range(CLIPS - 1)],
        ),  # fmt: skip
        "fifo": (torch.cat([z for _, z, _ in fifo], 2)[0], [N * k for k in range(1, CLIPS)]),
    }


def to_frames(latents: torch.Tensor) -> np.ndarray:
    """``(3, F, h, w)`` latents as uint8 RGB frames ``(F, h, w, 3)`` for the evaluate metrics."""
    v = latents.permute(1, 2, 3, 0).numpy()
    return np.round(255 * (v - v.min()) / (v.max() - v.min())).astype(np.uint8)


def measure(latents: torch.Tensor, boundaries: list[int]) -> dict:
    changes = (latents[:, 1:] - latents[:, :-1]).abs().mean(dim=(0, 2, 3)).numpy()  # pair t: (t, t+1)
    across = [changes[b - 1] for b in boundaries]
    within = [c for t, c in enumerate(changes) if t + 1 not in boundaries]
    frames = to_frames(latents)
    worst, _, found = metrics.seams(frames, EvaluateOptions.seam_threshold)
    return {
        "boundary_over_within": float(np.mean(across) / np.mean(within)),
        "worst_seam": worst,
        "seams": found,
        "repetition": metrics.repetition(frames)[0],
    }


def test_layouts_and_fifo_on_a_toy_denoiser_smooth_in_time(videos):
    results = {name: measure(*video) for name, video in videos.items()}
    for name, r in results.items():
        print(f"\n{name:>7}: boundary/within {r['boundary_over_within']:.2f}, worst seam ratio "
              f"{r['worst_seam']:.2f} (seams at pairs {r['seams']}), repetition {r['repetition']:.2f}")  # fmt: skip
    default, old, fifo = results["default"], results["old"], results["fifo"]
    assert default["boundary_over_within"] <= 1.5 and default["seams"] == []
    # the old layout jumps back at every boundary, and evaluate finds each one
    assert old["boundary_over_within"] > 2.5
    assert old["seams"] == [b - 1 for b in videos["old"][1]]
    # FIFO: no clip boundaries, no spike anywhere, no return to earlier frames
    assert fifo["worst_seam"] < 1.5 and fifo["seams"] == []
    assert fifo["repetition"] < 0.1 < default["repetition"]
