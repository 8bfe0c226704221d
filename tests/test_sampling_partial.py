"""Starting a sampler part-way (SDEdit): a schedule from step k, an x0 noised to its level."""

import pytest
import torch

from vidforge.sampling.ddim import sample_ddim
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.euler import sample_euler
from vidforge.sampling.schedules import (
    SD_SCHEDULE,
    ddim_schedule,
    diffusers_noise_schedule,
    lvdm_noise_schedule,
    noised,
    sdedit_start,
    sigma_schedule,
)


def eps_model(x, t):
    return 0.2 * x.roll(1, dims=-1) + torch.as_tensor(t).float() / 2000


def schedules():
    sd = diffusers_noise_schedule(SD_SCHEDULE)
    v512 = lvdm_noise_schedule(
        prediction_type="v_prediction", zero_snr=True, timestep_spacing="trailing", dynamic_rescale_base=0.7
    )
    return {
        "ddim": ddim_schedule(sd, 10),
        "ddim-v-rescale": ddim_schedule(v512, 10),
        "euler": sigma_schedule(sd, 10),
    }


@pytest.mark.parametrize("name", ["ddim", "ddim-v-rescale", "euler"])
def test_from_step_is_the_tail_of_the_full_schedule(name):
    full = schedules()[name]
    for k in (0, 3, 9, 10):
        tail = full.from_step(k)
        assert len(tail) == len(full) - k
        for i in range(len(tail)):
            a, b = tail.step(i, "cpu"), full.step(k + i, "cpu")
            assert a.index == b.index == k + i  # hooks keyed on the step index keep their meaning
            for field in ("t", "a", "b", "input_scale"):
                x, y = getattr(a, field), getattr(b, field)
                assert (x is None and y is None) or torch.equal(x, y)
    assert full.from_step(3).from_step(2).step(0, "cpu").index == 5
    with pytest.raises(ValueError, match="outside"):
        full.from_step(11)


@pytest.mark.parametrize("name", ["ddim", "ddim-v-rescale", "euler"])
def test_sampling_resumed_from_step_k_equals_the_full_run(name):
    """The full run's latent after step k-1, sampled on from_step(k), ends where the full run ends."""
    schedule = schedules()[name]
    denoiser = Denoiser(eps_model, schedule.prediction_type)
    sample = sample_euler if name == "euler" else sample_ddim
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    seen = []
    full = sample(denoiser, x, schedule, callback=seen.append)
    assert [r["i"] for r in seen] == list(range(len(schedule)))
    for k in (1, 4, 9):
        tail_seen = []
        resumed = sample(denoiser, seen[k - 1]["x"], schedule.from_step(k), callback=tail_seen.append)
        assert torch.equal(resumed, full)
        assert [r["i"] for r in tail_seen] == list(range(k, len(schedule)))  # indices of the full schedule
    assert torch.equal(sample(denoiser, x, schedule.from_step(len(schedule))), x)  # no steps: unchanged


def test_sdedit_start_follows_the_img2img_rule():
    assert [sdedit_start(10, s) for s in (1.0, 0.99, 0.75, 0.5, 0.05, 0.0)] == [0, 1, 3, 5, 10, 10]
    assert sdedit_start(30, 0.6) == 12 and sdedit_start(4, 0.5) == 2
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="strength"):
            sdedit_start(10, bad)


def test_noised_puts_x0_at_the_step_level_and_ddim_with_the_true_noise_recovers_it():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 4, 6, 6, generator=g), torch.randn(1, 4, 6, 6, generator=g)
    schedule = ddim_schedule(diffusers_noise_schedule(SD_SCHEDULE), 10).from_step(4)
    step = schedule.step(0, "cpu")
    alpha = schedule.alphas_cumprod[0]
    torch.testing.assert_close(noised(x0, eps, step), alpha.sqrt() * x0 + (1 - alpha).sqrt() * eps)
    # an oracle that knows ε: DDIM η = 0 from the noised x0 lands on √ᾱ_final·x0 + √(1-ᾱ_final)·ε
    out = sample_ddim(Denoiser(lambda x, t: eps, "epsilon"), noised(x0, eps, step), schedule)
    final = schedule.alphas_cumprod_prev[-1]
    torch.testing.assert_close(out, final.sqrt() * x0 + (1 - final).sqrt() * eps, rtol=1e-5, atol=1e-5)
    # σ tables: x0 + σ·ε
    sigmas = sigma_schedule(diffusers_noise_schedule(SD_SCHEDULE), 10).from_step(4)
    sigma = sigmas.sigmas[0]
    torch.testing.assert_close(noised(x0, eps, sigmas.step(0, "cpu")), x0 + sigma * eps)
