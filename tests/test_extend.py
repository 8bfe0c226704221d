"""Reuse-and-Diffuse math (SPEC section 3): FNR, PNS, DSG and the clip-by-clip sampler, checked
against hand-computed answers with stub denoisers (no model)."""

import math

import pytest
import torch

from vidforge.errors import OptionError
from vidforge.extend import (
    ClipPlan,
    ExtendOptions,
    frame_noise_reversion,
    invert_clip,
    past_dependent_noise_sampling,
    sample_clip,
    sample_reuse_and_diffuse,
    staged_guidance_schedule,
    staged_guidance_steps,
)
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.guidance import BatchedGuidance, cfg_combine
from vidforge.sampling.schedules import SD_SCHEDULE, ddim_schedule, diffusers_noise_schedule

NOISE = diffusers_noise_schedule(SD_SCHEDULE)  # ModelScope's training schedule


def scheduler(steps):
    return ddim_schedule(NOISE, steps)


def eps_denoiser(model):
    """An ε-prediction denoiser from ``model(z, t) -> ε``."""
    return Denoiser(model, "epsilon")


zero_denoiser = eps_denoiser(lambda z, t: torch.zeros_like(z))


# ------------------------------------------------------------------------------------------- FNR


def test_fnr_reverses_the_frame_order_of_the_whole_previous_noise():
    prev = torch.arange(2 * 3 * 5 * 2 * 2, dtype=torch.float32).reshape(2, 3, 5, 2, 2)
    out = frame_noise_reversion(prev)
    assert out.shape == prev.shape
    for j in range(5):
        assert torch.equal(out[:, :, j], prev[:, :, 4 - j])


def test_pns_keeps_the_first_m_frames_as_the_exact_reversed_previous_noise():
    prev = torch.randn(1, 4, 8, 4, 4, generator=torch.Generator().manual_seed(1))
    out = past_dependent_noise_sampling(prev, 3, 4.0, torch.Generator().manual_seed(2))
    for j in range(3):
        assert torch.equal(out[:, :, j], prev[:, :, 7 - j])
    assert not torch.equal(out[:, :, 3], prev[:, :, 4])  # j >= M: fresh noise mixed in


# ------------------------------------------------------------------------------------------- PNS


@pytest.mark.parametrize("alpha", [4.0, 1.0, 0.5, 0.0])
def test_pns_has_unit_variance_and_correlation_alpha_over_sqrt_1_plus_alpha2(alpha):
    m = 2
    prev = torch.randn(1, 4, 6, 96, 96, generator=torch.Generator().manual_seed(0))
    out = past_dependent_noise_sampling(prev, m, alpha, torch.Generator().manual_seed(7))
    new = out[:, :, m:].flatten()  # 147k samples
    reference = prev.flip(2)[:, :, m:].flatten()
    expected_corr = alpha / math.sqrt(1 + alpha**2)  # 4 -> 0.9701, 1 -> 0.7071, 0.5 -> 0.4472
    assert new.var().item() == pytest.approx(1.0, abs=0.015)
    assert new.mean().item() == pytest.approx(0.0, abs=0.01)
    corr = torch.corrcoef(torch.stack([new, reference]))[0, 1].item()
    assert corr == pytest.approx(expected_corr, abs=0.006)
    # the fresh part alone has variance 1/(1+α²)
    epsilon = new - expected_corr * reference
    assert epsilon.var().item() == pytest.approx(1 / (1 + alpha**2), rel=0.02)


def test_pns_is_deterministic_for_a_seed():
    prev = torch.randn(1, 4, 8, 4, 4)
    a = past_dependent_noise_sampling(prev, 4, 2.0, torch.Generator().manual_seed(3))
    b = past_dependent_noise_sampling(prev, 4, 2.0, torch.Generator().manual_seed(3))
    c = past_dependent_noise_sampling(prev, 4, 2.0, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ------------------------------------------------------------------------------------------- DSG


def test_dsg_schedule_table_s50_m4_beta04():
    assert staged_guidance_steps(50, 4, 0.4) == [20, 15, 10, 5]
    mask = staged_guidance_schedule(50, 4, 0.4)
    assert mask.shape == (20, 4)  # only ceil(S·β) = 20 steps ever reuse anything
    assert mask.sum(0).tolist() == [20, 15, 10, 5]
    # frame j reuses exactly the FIRST steps: i < (M-j)·(S/M)·β
    for j, count in enumerate([20, 15, 10, 5]):
        assert mask[:count, j].all() and not mask[count:, j].any()


@pytest.mark.parametrize(
    "steps, m, beta, expected",
    [
        (10, 2, 1.0, [10, 5]),  # (2-j)·5·1
        (3, 4, 0.4, [2, 1, 1, 1]),  # bounds 1.2, 0.9, 0.6, 0.3: i < bound
        (50, 4, 0.0, [0, 0, 0, 0]),
        (30, 3, 0.5, [15, 10, 5]),
        (25, 4, 0.4, [10, 8, 5, 3]),  # bounds 10, 7.5, 5, 2.5
    ],
)
def test_dsg_steps_by_hand(steps, m, beta, expected):
    assert staged_guidance_steps(steps, m, beta) == expected
    assert staged_guidance_schedule(steps, m, beta).sum(0).tolist() == expected


def recording_denoiser(log):
    """Records what it is fed; its eps mixes neighbouring frames, so frames evolve differently."""

    def denoise(z, t):
        log.append(z.clone())
        return 0.1 * z.roll(1, dims=2)

    return eps_denoiser(denoise)


def test_dsg_overwrites_exactly_the_scheduled_frames_and_steps():
    steps, n, m = 50, 8, 4
    sched = scheduler(steps)
    mask = staged_guidance_schedule(steps, m, 0.4)
    # prompt latents: a value no DDIM step can produce, distinct per step and frame
    prompt = torch.stack(
        [torch.full((1, 2, m, 3, 3), 1000.0 + i) + torch.arange(m).reshape(1, 1, m, 1, 1) for i in range(20)]
    )
    log = []
    noise = torch.randn(1, 2, n, 3, 3, generator=torch.Generator().manual_seed(0))
    sample_clip(recording_denoiser(log), noise, sched, dsg_mask=mask, prompt_latents=prompt, prompt_frames=m)
    assert len(log) == steps
    overwritten = torch.zeros(steps, n, dtype=torch.bool)
    for i, z in enumerate(log):
        for j in range(n):
            if i < 20 and j < m and torch.equal(z[:, :, j], prompt[i][:, :, j]):
                overwritten[i, j] = True
    assert overwritten.sum(0).tolist() == [20, 15, 10, 5, 0, 0, 0, 0]
    assert torch.equal(overwritten[:20, :m], mask)


def test_dsg_cache_holds_the_mirrored_last_m_frames_fed_to_the_denoiser():
    steps, n, m = 10, 6, 2
    sched = scheduler(steps)
    log = []
    noise = torch.randn(1, 2, n, 3, 3, generator=torch.Generator().manual_seed(0))
    _, cache = sample_clip(recording_denoiser(log), noise, sched, num_cached=4, prompt_frames=m)
    assert cache.shape == (4, 1, 2, m, 3, 3)
    for i in range(4):
        assert torch.equal(cache[i][:, :, 0], log[i][:, :, n - 1])
        assert torch.equal(cache[i][:, :, 1], log[i][:, :, n - 2])


def test_clip_k_reuses_clip_k_minus_1_at_the_same_step():
    """End to end through the sampler: clip 1 sees, at step i, clip 0's frame N-1-j at step i."""
    steps, n, m = 10, 6, 2
    sched = scheduler(steps)
    log = []
    clips = list(
        sample_reuse_and_diffuse(
            recording_denoiser(log), sched, (1, 2, n, 3, 3), num_clips=2, prompt_frames=m, noise_recycle=4.0, staged_guidance=1.0, generator=torch.Generator().manual_seed(0),
        )
    )  # fmt: skip
    assert [k for k, _, _ in clips] == [0, 1]
    clip0, clip1 = log[:steps], log[steps:]
    for i, count in enumerate(staged_guidance_steps(steps, m, 1.0)):
        assert count == [10, 5][i]
    for i in range(steps):
        assert torch.equal(clip1[i][:, :, 0], clip0[i][:, :, n - 1])  # j=0 reused on all 10 steps
        assert torch.equal(clip1[i][:, :, 1], clip0[i][:, :, n - 2]) == (i < 5)


def test_prompt_frames_zero_degrades_to_pure_pns():
    steps, n = 6, 5
    sched = scheduler(steps)
    log = []
    gen = torch.Generator().manual_seed(0)
    states = [
        s
        for _, _, s in sample_reuse_and_diffuse(
            recording_denoiser(log), sched, (1, 2, n, 8, 8), num_clips=2, prompt_frames=0, noise_recycle=1.0, generator=gen,
        )
    ]  # fmt: skip
    assert all(s.prompt_latents is None for s in states)  # nothing cached for DSG
    # clip 1's initial noise = PNS(clip 0's noise) on every frame, drawn from the same generator
    replay = torch.Generator().manual_seed(0)
    noise0 = torch.randn((1, 2, n, 8, 8), generator=replay)
    expected = noise0.flip(2) / math.sqrt(2) + torch.randn((1, 2, n, 8, 8), generator=replay) / math.sqrt(2)
    assert torch.allclose(states[0].noise, noise0)
    assert torch.allclose(states[1].noise, expected, atol=1e-6)
    assert torch.equal(log[steps], states[1].noise)  # no DSG overwrite on the first step


def test_prompt_frames_not_smaller_than_clip_length_is_rejected():
    with pytest.raises(OptionError, match="--prompt-frames 8 must be smaller than the clip length N = 8"):
        ExtendOptions(prompt="x", clip_frames=8, prompt_frames=8).validate()
    with pytest.raises(OptionError, match="smaller than the clip length"):
        ExtendOptions(prompt="x", clip_frames=4, prompt_frames=9).validate()
    ExtendOptions(prompt="x", clip_frames=8, prompt_frames=7).validate()


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(prompt=" "), "--prompt"),
        (dict(frames=0), "--frames"),
        (dict(noise_recycle=-1), "--noise-recycle"),
        (dict(staged_guidance=1.5), "--staged-guidance"),
        (dict(eta=2), "--eta"),
        (dict(height=60), "--height"),
        (dict(prompt_frames=-1), "--prompt-frames"),
    ],
)
def test_bad_options_are_one_line_errors(bad, message):
    options = ExtendOptions(**{"prompt": "a river", **bad})
    with pytest.raises(OptionError, match=message) as e:
        options.validate()
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------- sampler


def test_cached_state_size_is_independent_of_the_number_of_clips():
    steps, shape = 5, (1, 2, 6, 4, 4)
    sched = scheduler(steps)
    sizes = {}
    for clips in (2, 7):
        states = sample_reuse_and_diffuse(
            zero_denoiser, sched, shape, num_clips=clips, prompt_frames=2,
            staged_guidance=0.4, generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        sizes[clips] = {s.nbytes for _, _, s in states}
    # noise (2·6·16 floats) + ceil(5·0.4)=2 steps × 2 frames × 2·16 floats, for any video length
    expected = (2 * 6 * 16 + 2 * 2 * 2 * 16) * 4
    assert sizes == {2: {expected}, 7: {expected}}


def test_classifier_free_guidance_formula():
    calls = []

    def model(z, t, cond):  # eps = z · c (per batch item)
        calls.append(z.shape[0])
        return z * cond.reshape(-1, 1, 1, 1, 1)

    z = torch.ones(1, 1, 2, 1, 1)
    conds = {"negative": torch.tensor([1.0]), "positive": torch.tensor([3.0])}
    guided = BatchedGuidance(model, conds, cfg_combine(10.0, 0.0, "negative", "positive"))
    assert torch.allclose(guided(z, 0), torch.full_like(z, 1 + 10 * (3 - 1)))
    assert calls == [2]  # both branches in one batched call
    alone = BatchedGuidance(
        model, {"positive": torch.tensor([3.0])}, cfg_combine(1.0, 0.0, "negative", "positive")
    )
    assert torch.equal(alone(z, 0), 3 * z)


def test_ddim_inversion_then_sampling_reconstructs_the_clip():
    """With a denoiser whose eps is a fixed ``e``, every DDIM state is ``√a·x0 + √(1-a)·e``: the
    inversion must land on exactly that at ``t_0`` and sampling must return the input latents."""
    steps = 20
    sched = scheduler(steps)
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 2, 6, 4, 4, generator=gen, dtype=torch.float64)
    e = torch.randn(1, 2, 6, 4, 4, generator=gen, dtype=torch.float64)

    denoiser = eps_denoiser(lambda z, t: e)
    state = invert_clip(denoiser, latents, sched, prompt_frames=2, staged_guidance=0.5)
    assert state.prompt_latents.shape == (10, 1, 2, 2, 4, 4)  # ceil(20·0.5) steps, M = 2
    final = sched.alphas_cumprod_prev[-1].double()  # the input's noise level: ᾱ_0
    assert final == NOISE.alphas_cumprod[0]
    x0 = (latents - (1 - final).sqrt() * e) / final.sqrt()
    a = sched.alphas_cumprod[0].double()
    assert torch.allclose(state.noise, a.sqrt() * x0 + (1 - a).sqrt() * e, atol=1e-9)
    a3 = sched.alphas_cumprod[3].double()
    z3 = a3.sqrt() * x0 + (1 - a3).sqrt() * e
    assert torch.allclose(state.prompt_latents[3], z3.flip(2)[:, :, :2], atol=1e-9)  # mirrored frames 5, 4
    z0, _ = sample_clip(denoiser, state.noise, sched)
    assert torch.allclose(z0, latents, atol=1e-6)


# ---------------------------------------------------------------------------------- clip layout


@pytest.mark.parametrize("n", [1, 8, 16])
def test_clip_plan_gives_at_least_the_frames_with_the_fewest_clips(n):
    for target in range(1, 70):
        plan = ClipPlan(n, target)
        assert plan.num_clips * n >= target > (plan.num_clips - 1) * n


def test_clip_plan_layout_by_hand():
    assert ClipPlan(8, 40).num_clips == 5  # every clip gives all N = 8 frames (the official layout)
    assert ClipPlan(8, 41).num_clips == 6  # the last clip is trimmed to 1 frame
    assert ClipPlan(8, 0).num_clips == 0
