"""``vidforge extend --image``: Reuse-and-Diffuse over DynamiCrafter's video UNet (the ``animate``
model). Tiny DynamiCrafter, 64x64 frames, 2 steps."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vidforge import extend
from vidforge.cli import app
from vidforge.core.device import make_generator
from vidforge.core.video_io import read_video
from vidforge.extend import ExtendOptions, sample_clip
from vidforge.extend.checkpoint import state_dir_for
from vidforge.models import load_model
from vidforge.models.dynamicrafter.conditioning import conditioned_unet
from vidforge.models.dynamicrafter.config import CONFIGS, noise_schedule, replace_config
from vidforge.models.dynamicrafter.load import bundle
from vidforge.models.dynamicrafter.network import build_model
from vidforge.sampling.ddim import sample_ddim
from vidforge.sampling.denoisers import Denoiser
from vidforge.sampling.guidance import BatchedGuidance, cfg_combine
from vidforge.sampling.schedules import DDIMSchedule, ddim_schedule

runner = CliRunner()


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    """An 80x100 (not square: preprocess crops) random RGB PNG."""
    path = tmp_path_factory.mktemp("img") / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_model():
    return load_model("tiny", "animate")


def options(image_path, **changes):
    base = ExtendOptions(
        prompt="a boat on the sea", model="tiny", steps=2, text_scale=3.0, image=str(image_path)
    )
    return replace(base, **changes)


def test_cli_writes_exactly_20_frames_at_the_fps_conditioning(tmp_path, image_path):
    out = tmp_path / "out.mp4"
    result = runner.invoke(
        app,
        ["extend", "--prompt", "a boat on the sea", "--image", str(image_path), "--model", "tiny",
         "--frames", "20", "--steps", "2", "-o", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    info = {**record["details"], **record["output"]}
    # tiny DynamiCrafter: N = video_length = 16, so 16 + 12 new frames from 2 clips
    assert info["frames"] == 20 and info["clips"] == 2 and info["clip_frames"] == 16
    assert info["cond_fps"] == 24 and info["fps"] == 24  # 512-style default fps 24, played at 24
    video = read_video(out)
    assert video.num_frames == 20 and video.frames.shape[1:] == (64, 64, 3)


def test_conditioned_unet_equals_a_direct_denoise_call_with_the_image_latent_on_every_frame(tiny_model):
    model = tiny_model.network
    assert model.config.name == "tiny" and model.config.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 5, 8, 8, generator=g)
    image_latents = torch.randn(1, 4, 1, 8, 8, generator=g)
    context = torch.randn(2, 77 + 64, 64, generator=g)
    t = torch.tensor(499)
    unet = conditioned_unet(model, image_latents, fps=7)
    x = torch.cat([z, torch.cat([image_latents] * 5, dim=2).repeat(2, 1, 1, 1, 1)], dim=1)  # (2, 8, 5, h, w)
    expected = model.denoise(x, torch.tensor([499, 499]), context, torch.tensor([7, 7]))
    assert torch.equal(unet(z, t, context), expected)
    # the fps conditioning really reaches the UNet
    assert not torch.allclose(conditioned_unet(model, image_latents, fps=24)(z, t, context), expected)


def one_step(schedule: DDIMSchedule, i: int) -> DDIMSchedule:
    """Step ``i`` of ``schedule`` alone."""
    row = slice(i, i + 1)
    return DDIMSchedule(
        schedule.timesteps[row], schedule.alphas_cumprod[row], schedule.alphas_cumprod_prev[row],
        schedule.variances[row], schedule.x0_rescale[row], schedule.prediction_type,
    )  # fmt: skip


def test_v_prediction_step_by_hand():
    """One step on the 1024 schedule (v, zero SNR, dynamic rescale 0.3), eta 0, in closed form."""
    noise = noise_schedule(CONFIGS["1024"])
    schedule = ddim_schedule(noise, 50)
    alphas = noise.alphas_cumprod.double()
    x, v = torch.tensor([0.5, -1.0]).double(), torch.tensor([0.2, 0.3]).double()
    denoiser = Denoiser(lambda x_in, t: v.float().expand_as(x_in), "v_prediction")
    ramp = torch.linspace(1.0, 0.3, 400, dtype=torch.float64)
    # t and t_prev past the 400-step ramp: ratio 1; on the ramp x0 is rescaled by scale_arr[t_prev] / scale_arr[t]
    for t, t_prev, ratio in [(499, 479, 1.0), (219, 199, ramp[199] / ramp[219])]:
        a, a_prev = alphas[t], alphas[t_prev]
        x0 = (a.sqrt() * x - (1 - a).sqrt() * v) * ratio
        eps = a.sqrt() * v + (1 - a).sqrt() * x
        expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        i = schedule.timesteps.tolist().index(t)
        got = sample_ddim(denoiser, x.float(), one_step(schedule, i))
        assert torch.allclose(got.double(), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["256", "1024"])
def test_an_extend_clip_without_reuse_is_an_animate_ddim_sample(name):
    """Without reuse, extend's clip sampler is the shared DDIM that animate samples with (eta 1)."""
    schedule = ddim_schedule(noise_schedule(CONFIGS[name]), 5)
    denoiser = Denoiser(
        lambda x, t: 0.3 * x + 0.001 * t.double().reshape(-1, 1, 1, 1, 1).float(), schedule.prediction_type
    )
    noise = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    ours, _ = sample_clip(denoiser, noise, schedule, eta=1.0, generator=make_generator(3, "cpu"))
    theirs = sample_ddim(denoiser, noise, schedule, eta=1.0, generator=make_generator(3, "cpu"))
    assert torch.equal(ours, theirs)


def test_guidance_rescale_by_hand():
    pos = torch.tensor([[1.0, 3.0]])
    neg = torch.tensor([[0.0, 0.0]])
    guided = BatchedGuidance(
        lambda z, t, c: c, {"negative": neg, "positive": pos}, cfg_combine(2.0, 0.7, "negative", "positive")
    )
    out = guided(torch.zeros(1, 2), 0)
    cfg = torch.tensor([[2.0, 6.0]])  # 0 + 2·(pos - 0)
    std = lambda x: x.std(unbiased=True)  # noqa: E731
    expected = 0.7 * cfg * std(pos) / std(cfg) + 0.3 * cfg
    assert torch.allclose(out, expected)
    assert math.isclose(float(std(pos) / std(cfg)), 0.5)


def test_same_seed_same_frames_other_seed_other_frames(image_path, tiny_model):
    opts = options(image_path, frames=12, clip_frames=8, eta=0.5)
    a = extend.run(opts, model=tiny_model).frames
    b = extend.run(opts, model=tiny_model).frames
    c = extend.run(replace(opts, seed=1), model=tiny_model).frames
    assert a.shape == (12, 64, 64, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resume_with_an_image_model_gives_the_uninterrupted_frames(tmp_path, image_path, tiny_model):
    opts = options(image_path, frames=12, clip_frames=8, eta=0.5)
    full = extend.run(opts, output=tmp_path / "full" / "%05d.png", model=tiny_model)
    out = tmp_path / "out" / "%05d.png"

    def interrupt(k, written):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="8 frames written"):
        extend.run(opts, output=out, callback=interrupt, model=tiny_model)
    extend.run(replace(opts, resume=True), output=out, model=tiny_model)
    assert np.array_equal(read_video(out).frames, read_video(full.output).frames)
    assert not state_dir_for(out).exists()


def test_init_continues_a_video_with_a_v_prediction_image_model(image_path, tiny_model, clip_path):
    """The tiny model samples like the 512 release (v-prediction, zero SNR, dynamic rescale): DDIM
    inversion of --init runs through the shared prediction adapter."""
    result = extend.run(options(image_path, frames=12, clip_frames=8, init=str(clip_path)), model=tiny_model)
    assert result.num_frames == 12
    assert np.array_equal(result.frames[:8], read_video(clip_path).frames)
    assert np.isfinite(result.frames.astype(float)).all() and result.frames[8:].std() > 0


def test_init_continues_a_video_with_an_epsilon_image_model(image_path, clip_path):
    """The 256 model's sampling (ε, leading spacing, frame stride 3) on tiny weights: DDIM inversion
    of --init runs over animate's schedule, and the init frames come first, unchanged."""
    config = replace_config(
        CONFIGS["tiny"], prediction_type="epsilon", zero_snr=False, timestep_spacing="leading",
        fps_conditioning="frame_stride", default_fps=3, guidance_rescale=0.0, dynamic_rescale_base=None,
    )  # fmt: skip
    model = bundle(build_model(config), "tiny-eps")
    result = extend.run(options(image_path, frames=12, clip_frames=8, init=str(clip_path)), model=model)
    assert result.num_frames == 12 and result.info["cond_fps"] == 3
    assert result.fps == pytest.approx(12)  # the init video's fps
    assert np.array_equal(result.frames[:8], read_video(clip_path).frames)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--model", "modelscope"], 2, "--image is not supported by --model modelscope"),
        (["--model", "dynamicrafter-512-interp"], 2, "is an interpolation model"),
        (["--model", "dynamicrafter-512"], 1, "vidforge models download dynamicrafter-512"),
    ],
)
def test_cli_image_model_errors_are_one_line(tmp_path, image_path, args, code, message):
    out = tmp_path / "o.mp4"
    result = runner.invoke(
        app, ["extend", "--prompt", "x", "--image", str(image_path), "-o", str(out), *args]
    )
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "content, message", [(None, "does not exist"), (b"no png" * 9, "not a readable image")]
)
def test_cli_missing_or_corrupt_image(tmp_path, content, message):
    image = tmp_path / "in.png"
    if content is not None:
        image.write_bytes(content)
    out = tmp_path / "o.mp4"
    result = runner.invoke(
        app, ["extend", "--prompt", "x", "--model", "tiny", "--image", str(image), "-o", str(out)]
    )
    assert result.exit_code == 1
    assert "--image" in result.stderr and message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_cli_image_and_init_with_the_tiny_v_prediction_model_writes_24_frames(
    tmp_path, image_path, clip_path
):
    out = tmp_path / "out.mp4"
    result = runner.invoke(
        app,
        ["extend", "--prompt", "a boat", "--image", str(image_path), "--init", str(clip_path), "--model", "tiny",
         "--frames", "24", "--steps", "2", "-o", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"]["frames"] == 24 and read_video(out).num_frames == 24
