"""Style-A-Video maths and pipeline on the tiny preset: known answers, synthetic inputs."""

import numpy as np
import pytest
import torch
from conftest import textured_frames

from vidforge.sampling.denoisers import eps_from_x0, to_prediction
from vidforge.stylize import StylizeOptions, StylizePipeline
from vidforge.stylize.attention_map import (
    AttentionProbsProcessor,
    attention_saliency,
    find_decoder_self_attention,
    saliency_mask,
    token_grid,
)
from vidforge.stylize.clip_guidance import clip_guidance_step, content_loss, decode_to_unit
from vidforge.stylize.guidance import batch_branches, branch_conditions, four_branch_guidance, split_branches
from vidforge.stylize.pipeline import make_schedule, processing_size
from vidforge.stylize.temporal import (
    downsample_flow,
    fuse_latent,
    fuse_pixels,
    fuse_window_steps,
    input_flows,
    warp_tensor,
)

TINY = dict(style="ink wash", model="tiny", steps=2, batch_frames=4, device="cpu")


@pytest.fixture(scope="module")
def pipe():
    return StylizePipeline.from_options(StylizeOptions(**TINY))


def branch_outputs(seed=0, shape=(3, 4, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(4)]


# ------------------------------------------------------------------------------------- guidance


def test_guidance_matches_paper_equation_elementwise():
    e0, ei, et, em = branch_outputs()
    sI, sT, sM = 1.7, 6.0, 0.8
    got = four_branch_guidance(e0, ei, et, em, sI, sT, sM)
    # paper form: (1 - sI - sT - sM)·eps∅ + sI·epsI + sT·epsT + sM·epsM, one element by hand
    idx = (1, 2, 3, 4)
    by_hand = (1 - sI - sT - sM) * e0[idx] + sI * ei[idx] + sT * et[idx] + sM * em[idx]
    assert got[idx].item() == pytest.approx(by_hand.item(), rel=1e-5, abs=1e-5)
    expected = (1 - sI - sT - sM) * e0 + sI * ei + sT * et + sM * em
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_guidance_reduces_to_classifier_free_guidance():
    e0, ei, et, em = branch_outputs(1)
    got = four_branch_guidance(e0, ei, et, em, 0.0, 7.5, 0.0)
    torch.testing.assert_close(got, e0 + 7.5 * (et - e0))
    # all scales zero: the unconditional prediction
    torch.testing.assert_close(four_branch_guidance(e0, ei, et, em, 0, 0, 0), e0)


def test_guidance_reduces_to_instruct_pix2pix_with_image_text_branch():
    # --text-branch image: the text branch is eps(z, c_I, c_T); sI = s'_I - s'_T, sM = 0
    e0, ei, eit, em = branch_outputs(2)
    s_img, s_txt = 1.5, 7.5
    ip2p = e0 + s_img * (ei - e0) + s_txt * (eit - ei)  # Brooks et al. 2023, eq. 3
    got = four_branch_guidance(e0, ei, eit, em, s_img - s_txt, s_txt, 0.0)
    torch.testing.assert_close(got, ip2p, rtol=1e-5, atol=1e-5)


def test_branch_conditions_are_branch_major():
    c_i = torch.randn(3, 4, 2, 2)
    c_m = torch.randn(3, 4, 2, 2)
    null, style = torch.zeros(1, 5, 7), torch.ones(1, 5, 7)
    image, text = branch_conditions(c_i, c_m, null, style, "paper")
    assert image.shape == (12, 4, 2, 2) and text.shape == (12, 5, 7)
    b0, b1, b2, b3 = split_branches(image)
    assert torch.equal(b0, torch.zeros_like(c_i)) and torch.equal(b1, c_i)
    assert torch.equal(b2, torch.zeros_like(c_i)) and torch.equal(b3, c_m)
    assert [t.mean().item() for t in split_branches(text)] == [0, 0, 1, 0]  # only ∅T has the style
    image, _ = branch_conditions(c_i, c_m, null, style, "image")
    assert torch.equal(split_branches(image)[2], c_i)
    assert torch.equal(split_branches(batch_branches(c_i, c_m), 2)[1], c_m)


def test_batched_call_equals_four_separate_calls(pipe):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    c_i, c_m = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    null, style = pipe.encode_prompt("ink wash")
    t = torch.tensor(500)
    batched = pipe.unet_branches(latents, t, c_i, c_m, null, style, "paper", capture=False)
    image, text = branch_conditions(c_i, c_m, null, style, "paper")
    for k, (img, txt) in enumerate(zip(split_branches(image), split_branches(text), strict=True)):
        alone = pipe.unet(torch.cat([latents, img], 1), t, encoder_hidden_states=txt).sample
        torch.testing.assert_close(batched[k], alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(batched[0], batched[2])  # the branches really differ


def test_zero_attn_scale_skips_the_attention_branch(pipe, monkeypatch):
    """sM = 0: the M∅ branch is left out of the batch (3F rows, not 4F) and the guided eps equals
    the four-branch result, in which that branch has weight 0."""
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 8, 8, generator=g)
    c_i, c_m = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    text = pipe.encode_prompt("ink wash")
    t = make_schedule("ddim", pipe.bundle, 4).timesteps[0]
    off = StylizeOptions(style="ink wash", attn_scale=0.0)
    four = pipe.unet_branches(latents, t, c_i, c_m, *text, "paper", capture=False)
    expected = four_branch_guidance(*four, off.image_scale, off.text_scale, 0.0)
    rows = []
    unet_forward = pipe.unet.forward
    monkeypatch.setattr(
        pipe.unet, "forward", lambda x, *a, **k: (rows.append(len(x)), unet_forward(x, *a, **k))[1]
    )
    eps, _ = pipe.guided_eps(latents, t, c_i, c_m, text, off, capture=False)
    assert rows == [3 * 2]
    torch.testing.assert_close(eps, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- attention condition


def test_saliency_is_attention_received_per_token():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 3, 6, 4, generator=g), torch.randn(2, 3, 6, 4, generator=g)
    s = attention_saliency(q, k, 0.5)
    probs = torch.softmax(q @ k.transpose(-1, -2) * 0.5, -1)  # (B, heads, L_query, L_key)
    j = 4
    assert s[1, j].item() == pytest.approx(probs[1, :, :, j].sum(-1).mean().item(), rel=1e-5)
    torch.testing.assert_close(s.mean(1), torch.ones(2))  # rows of A sum to 1 -> mean saliency is 1


def test_mask_thresholds_at_mean_and_upsamples_nearest():
    saliency = torch.tensor([[0.5, 2.0, 1.0, 0.5]])  # 2x2 tokens, mean 1.0
    mask = saliency_mask(saliency, (4, 4))
    expected = torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(mask[0, 0], expected)  # 1.0 is not > mean: strict inequality


def test_token_grid_follows_strided_convs():
    assert token_grid(20, (10, 8)) == (5, 4)
    assert token_grid(6, (9, 5)) == (3, 2)  # ceil(ceil(9/2)/2) = 3, ceil(ceil(5/2)/2) = 2
    with pytest.raises(ValueError):
        token_grid(7, (8, 8))


def test_probs_processor_keeps_layer_output_and_mask_is_binary_latent_shaped(pipe):
    layer = find_decoder_self_attention(pipe.unet)
    assert isinstance(layer.processor, AttentionProbsProcessor)
    # every other layer keeps the fast processor
    others = {type(p).__name__ for name, p in pipe.unet.attn_processors.items()}
    assert "AttnProcessor2_0" in others or "XFormersAttnProcessor" in others
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(3, 4, 6, 10, generator=g)
    c_i = torch.randn(3, 4, 6, 10, generator=g)
    c_m = torch.randn(3, 4, 6, 10, generator=g)  # differs from c_I, so the M∅ rows differ from I∅'s
    null, style = pipe.encode_prompt("ink wash")
    t = torch.tensor(700)
    with_probs = pipe.unet_branches(latents, t, c_i, c_m, null, style, "paper", capture=True)
    saliency = pipe.probs.saliency
    # the tiny decoder attention runs at half latent size: ceil(6/2) x ceil(10/2) tokens
    assert saliency.shape == (3, 3 * 5)
    from diffusers.models.attention_processor import AttnProcessor

    # The reference: diffusers' plain processor (explicit softmax); record its probabilities.
    recorded = []
    get_scores = layer.get_attention_scores

    def recording(query, key, attention_mask=None):
        probs = get_scores(query, key, attention_mask)
        recorded.append(probs)
        return probs

    layer.set_processor(AttnProcessor())
    layer.get_attention_scores = recording
    try:
        reference = pipe.unet_branches(latents, t, c_i, c_m, null, style, "paper", capture=False)
    finally:
        layer.set_processor(pipe.probs)
        del layer.get_attention_scores
    # saliency = attention each token receives (sum over queries), head-averaged, on the I∅ rows
    # only: branch-major batch [∅∅, I∅, ∅T, M∅], 3 frames each, so rows 3..5.
    probs = recorded[0].view(12, layer.heads, 15, 15)
    expected = probs[3:6].sum(dim=-2).mean(dim=1)
    torch.testing.assert_close(saliency, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(saliency, probs[9:12].sum(dim=-2).mean(dim=1), atol=1e-3)  # not M∅'s
    for a, b in zip(with_probs, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    mask = saliency_mask(saliency, (6, 10))
    assert mask.shape == (3, 1, 6, 10)
    assert set(mask.unique().tolist()) == {0.0, 1.0}


# --------------------------------------------------------------------------------- CLIP step


def test_clip_step_decreases_content_loss(pipe):
    from vidforge.models.clip import load_clip

    clip = load_clip("tiny")
    frames = torch.from_numpy(textured_frames(2, 32, 32)).permute(0, 3, 1, 2).float() / 255
    target = clip.encode_images(frames)
    step = make_schedule("ddim", pipe.bundle, 10).step(5, "cpu")
    g = torch.Generator().manual_seed(0)
    latents, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)

    def x0(z, e):
        return to_prediction(z, e, step.a, step.b, "epsilon").x0

    def predict_x0(z, f):
        return x0(z, eps[f : f + 1])

    def loss(z):
        with torch.no_grad():
            return content_loss(clip, target, decode_to_unit(pipe.vae, x0(z, eps)))

    before = loss(latents)
    shifted, reported = clip_guidance_step(latents, predict_x0, pipe.vae, clip, target, scale=0.02)
    torch.testing.assert_close(reported, before, rtol=1e-4, atol=1e-6)
    # normalised step: ‖Δz‖ = λ·‖z‖ per frame
    for f in range(2):
        assert (shifted[f] - latents[f]).norm().item() == pytest.approx(
            0.02 * latents[f].norm().item(), rel=1e-4
        )
    after = loss(shifted)
    assert (after < before).all(), (before, after)


def test_zero_clip_guidance_loads_no_clip_model(monkeypatch):
    import vidforge.models.clip

    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("CLIP must not be loaded when λ = 0")

    monkeypatch.setattr(vidforge.models.clip, "load_clip", forbidden)
    frames = textured_frames(2, 16, 16)
    options = StylizeOptions(**{**TINY, "steps": 1}, clip_guidance=0.0, clip_steps=5)
    pipeline = StylizePipeline.from_options(options)
    pipeline(frames, options)
    assert calls == [] and pipeline.clip is None
    with pytest.raises(AssertionError):  # and λ > 0 does ask for it
        pipeline(frames, StylizeOptions(**{**TINY, "steps": 1}, clip_guidance=0.1))
    assert len(calls) == 1


# ------------------------------------------------------------------------------ temporal fusion


def test_latent_fusion_with_exact_flow_maps_previous_onto_current():
    g = torch.Generator().manual_seed(0)
    prev = torch.randn(4, 10, 12, generator=g)
    current = torch.roll(prev, shifts=(1, 2), dims=(1, 2))  # content moved by dx=2, dy=1
    flow = torch.zeros(10, 12, 2)
    flow[..., 0], flow[..., 1] = -2.0, -1.0  # current(x) = prev(x + flow)
    valid = torch.ones(1, 10, 12)
    fused = fuse_latent(torch.zeros_like(current), prev, flow, valid, strength=1.0)
    torch.testing.assert_close(fused[:, 1:, 2:], current[:, 1:, 2:])  # away from the wrap-around border
    half = fuse_latent(torch.zeros_like(current), prev, flow, valid * 0.5, strength=1.0)
    torch.testing.assert_close(half[:, 1:, 2:], 0.5 * current[:, 1:, 2:])
    occluded = fuse_latent(current, prev, flow, torch.zeros(1, 10, 12), strength=1.0)
    assert torch.equal(occluded, current)


def test_warp_tensor_matches_core_flow_warp():
    from vidforge.core.flow import warp

    rng = np.random.default_rng(0)
    image = rng.random((9, 11, 3)).astype(np.float32)
    flow = rng.uniform(-2, 2, (9, 11, 2)).astype(np.float32)
    ours = warp_tensor(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(flow)).permute(1, 2, 0)
    np.testing.assert_allclose(ours.numpy(), warp(image, flow), atol=2e-3)


def test_downsampled_flow_scales_vectors_by_one_eighth():
    flow = torch.zeros(64, 48, 2)
    flow[..., 0], flow[..., 1] = 16.0, -8.0
    small = downsample_flow(flow, (8, 6))
    assert small.shape == (8, 6, 2)
    assert torch.allclose(small[..., 0], torch.full((8, 6), 2.0))
    assert torch.allclose(small[..., 1], torch.full((8, 6), -1.0))


def test_pixel_fusion_with_input_flow_maps_previous_frame_onto_current():
    frames = textured_frames(3, 64, 64, shift=(2, 0))
    flows = input_flows(frames)
    assert flows.indices == [0, 1, 2]
    assert np.array_equal(input_flows(frames, [1]).flow[0], flows.flow[1])  # per-chunk = whole video
    assert np.median(flows.flow[1][..., 0]) == pytest.approx(-2.0, abs=0.2)  # frame 1 -> 0: 2 px left
    assert flows.valid[0].sum() == 0 and flows.valid[1].mean() > 0.8
    garbage = np.zeros_like(frames[1])
    fused = fuse_pixels(garbage, frames[0], flows.flow[1], np.ones((64, 64), np.float32), 1.0)
    inner = (slice(8, -8), slice(8, -8))
    err = np.abs(fused[inner].astype(float) - frames[1][inner].astype(float)).mean()
    assert err < 3.0, err  # warp(frame 0) reproduces frame 1
    assert np.array_equal(fuse_pixels(frames[1], frames[0], flows.flow[1], flows.valid[1], 0.0), frames[1])


def test_fuse_window_steps():
    assert fuse_window_steps(30, (0.0, 0.5)) == range(0, 15)
    assert len(fuse_window_steps(30, (0.0, 0.0))) == 0
    assert fuse_window_steps(10, (0.2, 1.0)) == range(2, 10)


# --------------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("name", ["ddim", "euler", "euler-a"])
def test_eps_and_x0_round_trip_on_every_schedule(pipe, name):
    step = make_schedule(name, pipe.bundle, 4).step(1, "cpu")
    z, eps = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    x0 = to_prediction(z, eps, step.a, step.b, "epsilon").x0
    torch.testing.assert_close(eps_from_x0(z, x0, step), eps, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(step.a * x0 + step.b * eps, z, rtol=1e-4, atol=1e-4)


def test_processing_size_rounds_each_side_to_nearest_multiple_of_8():
    assert processing_size(64, 64) == (64, 64)
    assert processing_size(60, 44) == (64, 48)  # 7.5 -> 8, 5.5 -> 6 (halves round up)
    assert processing_size(59, 43) == (56, 40)
    assert processing_size(3, 3) == (8, 8)


def test_same_seed_same_frames_and_chunking_invariant(pipe):
    frames = textured_frames(5, 32, 32, shift=(1, 0))
    options = StylizeOptions(**{**TINY, "batch_frames": 2}, seed=3)
    a = pipe(frames, options)
    b = pipe(frames, options)
    assert a.shape == frames.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    c = pipe(frames, StylizeOptions(**{**TINY, "batch_frames": 5}, seed=3))
    assert np.abs(a.astype(int) - c.astype(int)).max() <= 1  # chunks carry the previous frame across
    d = pipe(frames, StylizeOptions(**{**TINY, "batch_frames": 2}, seed=4))
    assert not np.array_equal(a, d)


def test_every_mechanism_switches_off_and_changes_output(pipe):
    frames = textured_frames(3, 32, 32, shift=(1, 0))
    base = dict(**TINY, attn_scale=0.5, fuse_window=(0.0, 1.0), fuse_strength=1.0, deflicker=0.5)
    full = pipe(frames, StylizeOptions(**base)).astype(int)
    for change in [{"attn_scale": 0.0}, {"fuse_strength": 0.0}, {"deflicker": 0.0}, {"text_branch": "image"}]:
        other = pipe(frames, StylizeOptions(**{**base, **change})).astype(int)
        assert np.abs(full - other).max() > 0, change
    # deflicker and latent fusion never touch the first frame
    no_temporal = pipe(frames, StylizeOptions(**{**base, "fuse_strength": 0.0, "deflicker": 0.0}))
    assert np.array_equal(no_temporal[0], full[0].astype(np.uint8))


@pytest.mark.parametrize("scheduler", ["euler", "euler-a"])
def test_other_schedulers_run(pipe, scheduler):
    out = pipe(textured_frames(2, 16, 16), StylizeOptions(**TINY, scheduler=scheduler))
    assert out.shape == (2, 16, 16, 3)


def test_options_refuse_impossible_values():
    from vidforge.errors import OptionError

    for bad in [
        {"style": "  "},
        {"scheduler": "dpm-solver"},
        {"text_branch": "both"},
        {"fuse_window": (0.6, 0.2)},
        {"deflicker": 1.5},
        {"batch_frames": 0},
        {"clip_guidance": -1.0},
    ]:
        with pytest.raises(OptionError):
            StylizeOptions(**{**TINY, **bad}).validate()
