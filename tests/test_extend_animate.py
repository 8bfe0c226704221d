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
from vidforge.animate.model import CONFIGS, build_model, replace_config
from vidforge.animate.sampler import sample_ddim, schedule_for_config
from vidforge.cli import app
from vidforge.core.device import make_generator
from vidforge.core.models import resolve_model
from vidforge.core.video_io import read_video
from vidforge.errors import VidforgeError
from vidforge.extend import ExtendOptions, classifier_free_guidance, sample_clip
from vidforge.extend.checkpoint import state_dir_for
from vidforge.extend.dynamicrafter import AnimateDenoiser, AnimateScheduler
from vidforge.extend.models import image_model, load_image_model

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
    return load_image_model(resolve_model("tiny", "animate"), torch.device("cpu"), torch.float32)


def options(image_path, **changes):
    base = ExtendOptions(
        prompt="a boat on the sea", model="tiny", steps=2, guidance_scale=3.0, image=str(image_path)
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
    info = json.loads(result.stdout)
    # tiny DynamiCrafter: N = video_length = 16, so 16 + 12 new frames from 2 clips
    assert info["frames"] == 20 and info["clips"] == 2 and info["clip_frames"] == 16
    assert info["cond_fps"] == 24 and info["fps"] == 24  # 512-style default fps 24, played at 24
    video = read_video(out)
    assert video.num_frames == 20 and video.frames.shape[1:] == (64, 64, 3)


def test_adapter_equals_a_direct_denoise_call_with_the_image_latent_on_every_frame(tiny_model):
    model = tiny_model.denoiser.model
    assert model.config.name == "tiny" and model.config.prediction_type == "v_prediction"
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 5, 8, 8, generator=g)
    image_latents = torch.randn(1, 4, 1, 8, 8, generator=g)
    context = torch.randn(2, 77 + 64, 64, generator=g)
    t = torch.tensor(499)
    adapter = AnimateDenoiser(model).with_image(image_latents, fps=7)
    x = torch.cat([z, torch.cat([image_latents] * 5, dim=2).repeat(2, 1, 1, 1, 1)], dim=1)  # (2, 8, 5, h, w)
    expected = model.denoise(x, torch.tensor([499, 499]), context, torch.tensor([7, 7]))
    assert torch.equal(adapter(z, t, context), expected)
    # the fps conditioning really reaches the UNet
    assert not torch.allclose(adapter.with_image(image_latents, fps=24)(z, t, context), expected)


@pytest.mark.parametrize("name", ["tiny", "256", "512", "1024"])
@pytest.mark.parametrize("steps", [2, 30, 50])
def test_schedule_equals_animates(name, steps):
    config = CONFIGS[name]
    scheduler = AnimateScheduler(config)
    scheduler.set_timesteps(steps)
    ours = schedule_for_config(config, steps)
    assert torch.equal(scheduler.timesteps, ours.timesteps)
    assert torch.equal(scheduler.alphas_cumprod[ours.timesteps], ours.alphas_cumprod)
    assert scheduler.config.prediction_type == config.prediction_type
    if config.zero_snr:
        assert scheduler.alphas_cumprod[-1] == 0  # zero terminal SNR
    # 512/1024 trailing spacing starts at t = 999; 256 leading at 981 (50 steps)
    if steps == 50:
        assert int(scheduler.timesteps[0]) == (981 if name == "256" else 999)


def test_v_prediction_step_by_hand():
    """One step on the 1024 schedule (v, zero SNR, dynamic rescale 0.3), eta 0, in closed form."""
    config = CONFIGS["1024"]
    scheduler = AnimateScheduler(config)
    scheduler.set_timesteps(50)
    t, t_prev = 499, 479
    a, a_prev = scheduler.alphas_cumprod[t].double(), scheduler.alphas_cumprod[t_prev].double()
    x, v = torch.tensor([0.5, -1.0]).double(), torch.tensor([0.2, 0.3]).double()
    x0 = a.sqrt() * x - (1 - a).sqrt() * v
    eps = a.sqrt() * v + (1 - a).sqrt() * x
    x0 = x0 * 0.3 / 0.3  # t and t_prev are both past the 400-step ramp: ratio 1
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    got = scheduler.step(v.float(), torch.tensor(t), x.float()).prev_sample
    assert torch.allclose(got.double(), expected, atol=1e-6)
    # on the ramp (t < 400) x0 is rescaled by scale_arr[t_prev] / scale_arr[t]
    t, t_prev = 219, 199
    ramp = torch.linspace(1.0, 0.3, 400, dtype=torch.float64)
    a, a_prev = scheduler.alphas_cumprod[t].double(), scheduler.alphas_cumprod[t_prev].double()
    x0 = (a.sqrt() * x - (1 - a).sqrt() * v) * ramp[t_prev] / ramp[t]
    eps = a.sqrt() * v + (1 - a).sqrt() * x
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    got = scheduler.step(v.float(), torch.tensor(t), x.float()).prev_sample
    assert torch.allclose(got.double(), expected, atol=1e-6)


@pytest.mark.parametrize("name", ["256", "1024"])
def test_an_extend_clip_is_an_animate_ddim_sample(name):
    """Without reuse, extend's clip sampler over AnimateScheduler = animate's ``sample_ddim`` (eta 1)."""
    scheduler = AnimateScheduler(CONFIGS[name])
    scheduler.set_timesteps(5)

    def model(x, t):
        return 0.3 * x + 0.001 * t.double().reshape(-1, 1, 1, 1, 1).float()

    noise = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    ours, _ = sample_clip(
        lambda z, t, cond: model(z, t.reshape(1)), noise, scheduler.timesteps, scheduler, None,
        eta=1.0, generator=make_generator(3, "cpu"),
    )  # fmt: skip
    theirs = sample_ddim(
        model, noise, schedule_for_config(CONFIGS[name], 5), eta=1.0, generator=make_generator(3, "cpu")
    )
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_guidance_rescale_by_hand():
    pos = torch.tensor([[1.0, 3.0]])
    neg = torch.tensor([[0.0, 0.0]])
    guided = classifier_free_guidance(lambda z, t, c: c, 2.0, guidance_rescale=0.7)
    out = guided(torch.zeros(1, 2), 0, (pos, neg))
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
    full = extend.run(opts, output=tmp_path / "full.png", model=tiny_model)
    out = tmp_path / "out.png"

    def interrupt(k, written):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="8 frames written"):
        extend.run(opts, output=out, callback=interrupt, model=tiny_model)
    extend.run(replace(opts, resume=True), output=out, model=tiny_model)
    assert np.array_equal(read_video(out).frames, read_video(full.output).frames)
    assert not state_dir_for(out).exists()


def test_init_with_a_v_prediction_model_is_a_clear_error(image_path, tiny_model, clip_path):
    with pytest.raises(VidforgeError, match="epsilon-prediction models only") as e:
        extend.run(options(image_path, frames=12, init=str(clip_path)), model=tiny_model)
    assert "\n" not in str(e.value)


def test_init_continues_a_video_with_an_epsilon_image_model(image_path, clip_path):
    """The 256 model's sampling (ε, leading spacing, frame stride 3) on tiny weights: DDIM inversion
    of --init runs over animate's schedule, and the init frames come first, unchanged."""
    config = replace_config(
        CONFIGS["tiny"], prediction_type="epsilon", zero_snr=False, timestep_spacing="leading",
        fps_conditioning="frame_stride", default_fps=3, guidance_rescale=0.0, dynamic_rescale_base=None,
    )  # fmt: skip
    model = image_model(build_model(config), "tiny-eps")
    result = extend.run(options(image_path, frames=12, clip_frames=8, init=str(clip_path)), model=model)
    assert result.num_frames == 12 and result.info["cond_fps"] == 3
    assert result.fps == pytest.approx(12)  # the init video's fps
    assert np.array_equal(result.frames[:8], read_video(clip_path).frames)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--model", "modelscope"], 2, "--image is not supported by --model modelscope"),
        (["--model", "dynamicrafter-512-interp"], 2, "is an interpolation model"),
        (["--model", "dynamicrafter-512"], 1, "hf download Doubiiu/DynamiCrafter_512"),
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
