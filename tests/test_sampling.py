"""The shared sampling layer: schedules, prediction adapters, guidance formulas and DDIM against
hand-computed answers (lvdm / DynamiCrafter facts, where the schedules come from)."""

import math

import pytest
import torch

from vidforge.animate import AnimateOptions
from vidforge.animate.pipeline import guidance
from vidforge.models.dynamicrafter.conditioning import conditioned_unet
from vidforge.models.dynamicrafter.config import CONFIGS, schedule_mismatches
from vidforge.sampling.ddim import sample_ddim
from vidforge.sampling.denoisers import Denoiser, to_prediction
from vidforge.sampling.guidance import BatchedGuidance, cfg, multi_cond_cfg, rescale_guidance
from vidforge.sampling.schedules import (
    alphas_cumprod_float64,
    ddim_schedule,
    ddim_timesteps,
    dynamic_rescale_arr,
    lvdm_noise_schedule,
)
from vidforge.sampling.schedules import scaled_linear_betas as make_betas


def alphas_cumprod_from_betas(betas):
    return alphas_cumprod_float64(betas)


def make_schedule(steps, **settings):
    return ddim_schedule(lvdm_noise_schedule(**settings), steps)


SETTINGS_256 = dict(prediction_type="epsilon", zero_snr=False, timestep_spacing="leading")
SETTINGS_512 = dict(
    prediction_type="v_prediction", zero_snr=True, timestep_spacing="trailing", dynamic_rescale_base=0.7
)

# ---------------------------------------------------------------------------------------- schedules


def test_leading_timesteps_match_lvdm_uniform():
    # lvdm "uniform": range(0, 1000, 1000 // S) + 1, sampled from the largest.
    t = ddim_timesteps(50, "leading")
    assert t.tolist() == [981 - 20 * k for k in range(50)]
    assert ddim_timesteps(4, "leading").tolist() == [751, 501, 251, 1]


def test_trailing_timesteps_match_lvdm_uniform_trailing():
    t = ddim_timesteps(50, "trailing")
    assert t.tolist() == [999 - 20 * k for k in range(50)]
    # Non-divisible step count: round(1000 - k·1000/S) - 1.
    t30 = ddim_timesteps(30, "trailing").tolist()
    assert len(t30) == 30 and t30[0] == 999
    assert t30 == [round(1000 - k * 1000 / 30) - 1 for k in range(30)]
    with pytest.raises(ValueError):
        ddim_timesteps(10, "linspace-ish")
    assert ddim_timesteps(4, "trailing", steps_offset=1).tolist() == [999, 749, 499, 249]  # no offset


def test_scaled_linear_betas():
    betas = make_betas(0.00085, 0.012, 1000).double()
    lo, hi = math.sqrt(0.00085), math.sqrt(0.012)
    for k in (0, 1, 500, 999):
        assert betas[k].item() == pytest.approx((lo + k / 999 * (hi - lo)) ** 2, rel=1e-5)


def test_zero_terminal_snr():
    plain = alphas_cumprod_from_betas(make_betas(zero_snr=False)).double()
    zsnr = alphas_cumprod_from_betas(make_betas(zero_snr=True)).double()
    assert zsnr[-1].item() == 0.0  # ᾱ_T = 0 exactly: pure noise at t = 999
    assert plain[-1].item() > 1e-3  # the original schedule leaks signal (ᾱ_T ≈ 0.0047)
    assert zsnr[0].item() == pytest.approx(plain[0].item(), rel=1e-6)  # ᾱ_0 kept
    # Lin et al. Algorithm 1: √ᾱ is shifted and scaled: √ᾱ' = (√ᾱ - √ᾱ_T)·√ᾱ_0 / (√ᾱ_0 - √ᾱ_T).
    s, s0, sT = plain.sqrt(), plain[0].sqrt(), plain[-1].sqrt()
    expected = ((s - sT) * s0 / (s0 - sT)) ** 2
    torch.testing.assert_close(zsnr, expected, rtol=1e-4, atol=1e-7)


def test_schedule_alphas_prev_and_sigmas():
    sched = make_schedule(4, **SETTINGS_256)
    abar = alphas_cumprod_from_betas(make_betas())
    assert sched.timesteps.tolist() == [751, 501, 251, 1]
    torch.testing.assert_close(sched.alphas_cumprod, abar[[751, 501, 251, 1]])
    # Next timestep's ᾱ; after the last step ᾱ_0 (not 1), as lvdm's DDIM does.
    torch.testing.assert_close(sched.alphas_cumprod_prev, abar[[501, 251, 1, 0]])
    a, ap = abar[751].item(), abar[501].item()
    sigma = math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
    assert sched.sigmas(1.0)[0].item() == pytest.approx(sigma, rel=1e-5)
    assert sched.sigmas(0.5)[0].item() == pytest.approx(0.5 * sigma, rel=1e-5)
    assert torch.all(sched.sigmas(0.0) == 0)
    assert torch.all(sched.x0_rescale == 1)  # no dynamic rescale for the 256 model


def test_dynamic_rescale_arr():
    arr = dynamic_rescale_arr(0.7).double()
    assert arr.shape == (1400,)  # cat(linspace(1, base, 400), full(1000, base))
    assert arr[0].item() == 1.0 and arr[399].item() == pytest.approx(0.7)
    assert arr[100].item() == pytest.approx(1 - 0.3 * 100 / 399, rel=1e-6)
    assert torch.allclose(arr[400:], torch.full((1000,), 0.7, dtype=torch.float64))


def test_dynamic_rescale_ratio():
    sched = make_schedule(50, **SETTINGS_512)
    ts = sched.timesteps.tolist()

    def scale(t):  # hand formula of scale_arr[t] for t < 1000, base 0.7
        return 1 - 0.3 * t / 399 if t < 400 else 0.7

    i = ts.index(399)  # 399 -> 379: ratio scale(379) / scale(399)
    assert sched.x0_rescale[i].item() == pytest.approx(scale(379) / 0.7, rel=1e-5)
    assert sched.x0_rescale[ts.index(39)].item() == pytest.approx(scale(19) / scale(39), rel=1e-5)
    assert sched.x0_rescale[0].item() == 1.0  # 999 -> 979: flat part of the array
    assert sched.x0_rescale[-1].item() == 1.0  # the last step keeps its own scale
    assert sched.x0_rescale.max().item() > 1.0  # x0 grows back toward scale 1 during the ramp
    assert sched.alphas_cumprod[0].item() == 0.0  # trailing + zero SNR start at pure noise


# ----------------------------------------------------------------------------------------- guidance


def test_cfg_formulas_by_hand():
    e_u, e_img, e_c = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([4.0])
    assert cfg(e_u, e_c, 7.5).item() == pytest.approx(1 + 7.5 * 3)
    # e_u + s_img(e_img - e_u) + s_txt(e_c - e_img) = 1 + 2·2 + 5·1
    assert multi_cond_cfg(e_u, e_img, e_c, text_scale=5.0, image_scale=2.0).item() == pytest.approx(10.0)


def test_multi_cond_cfg_reduces_to_cfg_when_scales_equal():
    g = torch.Generator().manual_seed(0)
    e_u, e_img, e_c = (torch.randn(2, 4, 3, 5, 5, generator=g) for _ in range(3))
    for s in (1.0, 3.0, 7.5):
        torch.testing.assert_close(multi_cond_cfg(e_u, e_img, e_c, s, s), cfg(e_u, e_c, s))
    # ...and not otherwise.
    assert not torch.allclose(multi_cond_cfg(e_u, e_img, e_c, 7.5, 1.0), cfg(e_u, e_c, 7.5))


def test_guidance_rescale_by_hand():
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 4, 3, 4, 4, generator=g)
    guided = torch.stack([3 * cond[0] + 1, 0.5 * cond[1]])  # std ratio 3 and 0.5 per sample
    out = rescale_guidance(guided, cond, 0.7)
    expected = torch.stack([0.7 * guided[0] / 3 + 0.3 * guided[0], 0.7 * guided[1] / 0.5 + 0.3 * guided[1]])
    torch.testing.assert_close(out, expected)
    assert rescale_guidance(guided, cond, 0.0) is guided
    full = rescale_guidance(guided, cond, 1.0)
    torch.testing.assert_close(full.flatten(1).std(1), cond.flatten(1).std(1))


# ------------------------------------------------------------------------------------------ sampler


def test_v_prediction_conversion_round_trip():
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    a = torch.tensor(0.3)
    x = a.sqrt() * x0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    eps_v, x0_v = to_prediction(x, v, a.sqrt(), (1 - a).sqrt(), "v_prediction")
    eps_e, x0_e = to_prediction(x, eps, a.sqrt(), (1 - a).sqrt(), "epsilon")
    for got in (eps_v, eps_e):
        torch.testing.assert_close(got, eps)
    for got in (x0_v, x0_e):
        torch.testing.assert_close(got, x0)


def _trajectory(x0, eps, abar, scale=None):
    """Oracle denoisers that know x0 and ε: x_t = √ᾱ_t·s_t·x0 + √(1-ᾱ_t)·ε."""

    def s(t):
        return 1.0 if scale is None else scale[t].item()

    def eps_oracle(x, t):
        return eps.expand_as(x)

    def v_oracle(x, t):
        a = abar[t]
        return a.sqrt() * eps - (1 - a).sqrt() * s(t) * x0

    return Denoiser(eps_oracle, "epsilon"), Denoiser(v_oracle, "v_prediction")


def test_ddim_eta0_with_exact_noise_recovers_x0():
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(1, 4, 3, 4, 4, generator=g), torch.randn(1, 4, 3, 4, 4, generator=g)
    abar = alphas_cumprod_from_betas(make_betas())
    sched = make_schedule(5, **SETTINGS_256)
    eps_oracle, _ = _trajectory(x0, eps, abar)
    a_T = sched.alphas_cumprod[0]
    x_T = a_T.sqrt() * x0 + (1 - a_T).sqrt() * eps
    seen = []
    out = sample_ddim(eps_oracle, x_T, sched, eta=0.0, callback=seen.append)
    # Every step lands on the deterministic trajectory; the last lands at ᾱ_0.
    for record, a_prev in zip(seen, sched.alphas_cumprod_prev, strict=True):
        torch.testing.assert_close(record["denoised"], x0, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(record["x"], a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps)
    assert [r["t"] for r in seen] == sched.timesteps.tolist()
    a0 = abar[0]
    torch.testing.assert_close(out, a0.sqrt() * x0 + (1 - a0).sqrt() * eps)


def test_ddim_v_prediction_zero_snr_with_dynamic_rescale_follows_scaled_trajectory():
    # The net is trained on x0·scale_arr[t]; an oracle for that target must stay on
    # x_t = √ᾱ_t·s_t·x0 + √(1-ᾱ_t)·ε only if DDIM rescales x0 by s_prev/s_t each step.
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 4, 2, 4, 4, generator=g)
    abar = alphas_cumprod_from_betas(make_betas(zero_snr=True))
    scale = dynamic_rescale_arr(0.7)
    sched = make_schedule(25, **SETTINGS_512)
    _, v_oracle = _trajectory(x0, eps, abar, scale)
    seen = []
    out = sample_ddim(v_oracle, eps.clone(), sched, eta=0.0, callback=seen.append)  # ᾱ_999 = 0: x_T = ε
    ts = sched.timesteps.tolist()
    for i, record in enumerate(seen):
        s_next = scale[ts[i + 1]] if i + 1 < len(ts) else scale[ts[-1]]
        torch.testing.assert_close(record["denoised"], s_next * x0, rtol=1e-4, atol=1e-4)
    a0, s_last = abar[0], scale[ts[-1]]
    torch.testing.assert_close(out, a0.sqrt() * s_last * x0 + (1 - a0).sqrt() * eps, rtol=1e-4, atol=1e-4)
    # Without the rescale the same oracle drifts off the trajectory.
    plain = make_schedule(25, **{**SETTINGS_512, "dynamic_rescale_base": None})
    drifted = sample_ddim(v_oracle, eps.clone(), plain, eta=0.0)
    assert (drifted - out).abs().max() > 1e-2


def test_ddim_eta1_noise_is_seeded():
    denoiser = Denoiser(lambda x, t: 0.1 * x, "epsilon")

    sched = make_schedule(3, **SETTINGS_256)
    x = torch.ones(1, 4, 2, 4, 4)
    runs = [
        sample_ddim(denoiser, x, sched, eta=1.0, generator=torch.Generator().manual_seed(s))
        for s in (7, 7, 8)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
    with pytest.raises(ValueError):
        sample_ddim(denoiser, x, sched, eta=1.0)
    # eta = 0 needs no generator and draws no noise.
    torch.testing.assert_close(
        sample_ddim(denoiser, x, sched, eta=0.0), sample_ddim(denoiser, x, sched, eta=0.0)
    )


# ---------------------------------------------------------------------------------------- denoisers


class CountingModel:
    """A denoiser whose output depends on the noisy latent, the concat stream, t, context and fps."""

    def __init__(self):
        self.batches = []

    def denoise(self, x, t, context, fps):
        self.batches.append((x.shape[0], x.shape[1], fps.tolist()))
        c = context.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)
        return x[:, :4] * c + 0.5 * x[:, 4:] + t.view(-1, 1, 1, 1, 1) / 1000 + fps.view(-1, 1, 1, 1, 1) / 100


@pytest.mark.parametrize(
    ("text_scale", "image_scale", "rescale", "branches"),
    [(7.5, None, 0.0, ("u", "c")), (7.5, 2.0, 0.7, ("u", "img", "c")), (1.0, None, 0.0, ("c",))],
)
def test_animate_guidance_is_one_batched_call_matching_the_formula(
    text_scale, image_scale, rescale, branches
):
    g = torch.Generator().manual_seed(4)
    contexts = {k: torch.randn(1, 6, 8, generator=g) + i for i, k in enumerate(("u", "img", "c"))}
    image_latents = torch.randn(1, 4, 3, 4, 4, generator=g)
    model = CountingModel()
    options = AnimateOptions(text_scale=text_scale, image_scale=image_scale)
    den = BatchedGuidance(
        conditioned_unet(model, image_latents, 24),
        {b: contexts[b] for b in branches},
        guidance(options, rescale),
    )
    x, t = torch.randn(1, 4, 3, 4, 4, generator=g), torch.tensor(500)
    out = den(x, t)
    n = len(branches)
    assert model.batches == [(n, 8, [24] * n)]  # ONE call, all branches batched

    def single(name):  # each branch alone, concat stream never dropped
        return model.denoise(
            torch.cat([x, image_latents], 1), t.reshape(1), contexts[name], torch.tensor([24])
        )

    if n == 1:
        expected = single("c")
    elif image_scale is None:
        expected = single("u") + text_scale * (single("c") - single("u"))
    else:
        e_u, e_img, e_c = single("u"), single("img"), single("c")
        guided = e_u + image_scale * (e_img - e_u) + text_scale * (e_c - e_img)
        std_c, std_g = e_c.std(), guided.std()
        expected = rescale * guided * std_c / std_g + (1 - rescale) * guided
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_schedule_mismatches_flags_wrong_release():
    cfg512 = CONFIGS["512"]
    right = {
        "alphas_cumprod": alphas_cumprod_from_betas(make_betas(zero_snr=True)).double(),
        "scale_arr": dynamic_rescale_arr(0.7),
        "betas": torch.zeros(3),  # other buffers are ignored
    }
    assert schedule_mismatches(cfg512, right) == []
    assert schedule_mismatches(cfg512, {}) == []
    wrong = {
        "alphas_cumprod": alphas_cumprod_from_betas(make_betas(zero_snr=False)),
        "scale_arr": dynamic_rescale_arr(0.3),
    }
    assert schedule_mismatches(cfg512, wrong) == ["alphas_cumprod", "scale_arr"]
    assert schedule_mismatches(CONFIGS["256"], {"scale_arr": dynamic_rescale_arr(0.7)}) == ["scale_arr"]


# ----------------------------------------------------------------------- against diffusers' schedulers


def diffusers_loop(scheduler, model, x, steps, generator=None, **step_kwargs):
    """The reference loop: a diffusers scheduler stepping ``model``'s ε."""
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x, generator=generator, **step_kwargs).prev_sample
    return x


def eps_model(x, t):
    return 0.2 * x.roll(1, dims=-1) + torch.as_tensor(t).float() / 2000


@pytest.mark.parametrize("eta", [0.0, 0.5])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_equals_diffusers_ddim_scheduler_bit_for_bit(eta, spacing):
    """The SD family's DDIM (extend's text-to-video models, stylize) is diffusers' ``DDIMScheduler``
    step for step, η-noise included, so the official Reuse-and-Diffuse loop is reproduced exactly."""
    from diffusers import DDIMScheduler

    from vidforge.core.device import randn
    from vidforge.sampling.schedules import SD_SCHEDULE, diffusers_noise_schedule

    config = dict(SD_SCHEDULE, timestep_spacing=spacing)
    x = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(10)
    g, reference = torch.Generator().manual_seed(1), x
    for t in scheduler.timesteps:
        noise = randn(x.shape, g, x.device, x.dtype) if eta > 0 else None
        reference = scheduler.step(
            eps_model(reference, t), t, reference, eta=eta, variance_noise=noise
        ).prev_sample
    schedule = ddim_schedule(diffusers_noise_schedule(config), 10)
    ours = sample_ddim(
        Denoiser(eps_model, "epsilon"), x, schedule, eta=eta, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(ours, reference)


@pytest.mark.parametrize("ancestral", [False, True])
def test_euler_samplers_equal_diffusers_euler_schedulers(ancestral):
    from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    from vidforge.sampling.euler import sample_euler
    from vidforge.sampling.schedules import SD_SCHEDULE, diffusers_noise_schedule, sigma_schedule

    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    cls = EulerAncestralDiscreteScheduler if ancestral else EulerDiscreteScheduler
    reference = diffusers_loop(
        cls.from_config(SD_SCHEDULE), eps_model, x, 6, torch.Generator().manual_seed(2)
    )
    schedule = sigma_schedule(diffusers_noise_schedule(SD_SCHEDULE), 6, ancestral=ancestral)
    ours = sample_euler(
        Denoiser(eps_model, "epsilon"), x * schedule.init_noise_sigma, schedule,
        generator=torch.Generator().manual_seed(2), ancestral=ancestral,
    )  # fmt: skip
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_inversion_then_sampling_returns_to_the_start(prediction_type):
    """Every DDIM state of a fixed (x0, ε) is ``√ᾱ·s·x0 + √(1-ᾱ)·ε``. Given the network's exact
    output at the sample's own level, inversion from t = 0 climbs that path to the first timestep
    and sampling comes back down: for ε, and for v with zero SNR and the dynamic rescale (512)."""
    from vidforge.sampling.ddim import invert_ddim

    settings = SETTINGS_512 if prediction_type == "v_prediction" else SETTINGS_256
    noise = lvdm_noise_schedule(**settings)
    schedule = ddim_schedule(noise, 12)
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(1, 4, 2, 4, 4, generator=g), torch.randn(1, 4, 2, 4, 4, generator=g)
    ts = schedule.timesteps.tolist()
    scale = dynamic_rescale_arr(0.7) if prediction_type == "v_prediction" else torch.ones(1400)

    def oracle(levels):
        """ε, or v at ᾱ with content s·x0, for the level ``levels[t]`` the sample is at when the
        network is called with ``t``."""

        def model(x, t):
            if prediction_type == "epsilon":
                return eps.expand_as(x)
            a, s = levels[int(t)]
            return a.sqrt() * eps - (1 - a).sqrt() * s * x0

        return Denoiser(model, prediction_type)

    sampling_levels = {t: (schedule.alphas_cumprod[i], scale[t]) for i, t in enumerate(ts)}
    # inversion calls the network with t_i on the sample at t_{i+1} (after the last step: ᾱ_0 and
    # the last step's own scale)
    nxt = ts[1:] + [ts[-1]]
    inversion_levels = {t: (schedule.alphas_cumprod_prev[i], scale[nxt[i]]) for i, t in enumerate(ts)}
    a0, s_last = noise.alphas_cumprod[0], scale[ts[-1]]
    start = a0.sqrt() * s_last * x0 + (1 - a0).sqrt() * eps  # where sampling ends
    z_T = invert_ddim(oracle(inversion_levels), start, schedule)
    a_T, s_T = schedule.alphas_cumprod[0], scale[ts[0]]
    torch.testing.assert_close(z_T, a_T.sqrt() * s_T * x0 + (1 - a_T).sqrt() * eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        sample_ddim(oracle(sampling_levels), z_T, schedule), start, rtol=1e-4, atol=1e-4
    )
