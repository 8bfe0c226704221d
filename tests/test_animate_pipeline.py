"""DynamiCrafter pipeline: preprocessing, the two image streams, options, end to end (API and CLI)."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from vidforge.animate import AnimateOptions, run
from vidforge.animate.pipeline import encode_contexts
from vidforge.errors import OptionError, VidforgeError
from vidforge.models.dynamicrafter.conditioning import (
    fps_conditioning,
    image_latents,
    output_fps,
    preprocess_image,
)

# -------------------------------------------------------------------------------------- stub model


@dataclasses.dataclass(frozen=True)
class StubConfig:
    name: str = "stub"
    resolution: tuple = (64, 64)
    video_length: int = 16
    prediction_type: str = "v_prediction"
    zero_snr: bool = True
    timestep_spacing: str = "trailing"
    fps_conditioning: str = "fps"
    default_fps: int = 24
    guidance_rescale: float = 0.7
    dynamic_rescale_base: float | None = 0.7
    interp: bool = False
    linear_start: float = 0.00085
    linear_end: float = 0.012
    num_train_timesteps: int = 1000


class StubDynamiCrafter(torch.nn.Module):
    """The DynamiCrafter interface with a real (tiny) diffusers VAE and a linear 'UNet'."""

    def __init__(self, config=StubConfig()):
        super().__init__()
        from diffusers import AutoencoderKL

        self.config = config
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.vae = AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2,
                block_out_channels=(8, 16),
                layers_per_block=1,
                latent_channels=4,
                norm_num_groups=4,
            )
            self.mix = torch.nn.Conv3d(8, 4, 1)
        self.unet = self.mix  # what a bundle reads the device and dtype from
        self.text_encoder = None
        self.calls = []
        self.token_images = []

    def encode_text(self, prompts):
        return torch.stack([torch.full((77, 8), float(len(p)) / 10) for p in prompts])

    def encode_image_tokens(self, images):
        self.token_images.append(images.clone())
        return images.flatten(1).std(1).view(-1, 1, 1).expand(-1, 4, 8).clone()  # zero image -> 0

    def denoise(self, x, t, context, fps):
        self.calls.append((tuple(x.shape), t.tolist(), fps.tolist()))
        # the context scales a spatially varying field (a constant offset would vanish in the VAE norms)
        return self.mix(x) * 0.1 + context.mean((1, 2)).view(-1, 1, 1, 1, 1) * x[:, 4:]


@pytest.fixture
def image_path(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(img).save(path)
    return path


def fast(**kw):
    return AnimateOptions(**{"model": "tiny", "steps": 2, "frames": 4, "device": "cpu", **kw})


# ----------------------------------------------------------------------------------------- helpers


def test_preprocess_cover_resize_then_center_crop():
    # A 2:1 image with a left/right split: cropping to a square keeps the centre, no padding.
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, 50:] = 255
    img[:, :25] = 100  # the outer quarters are cropped away
    img[:, 75:] = 100
    out = preprocess_image(img, 64, 64)
    assert out.shape == (1, 3, 64, 64)
    assert out.min() >= -1 and out.max() <= 1
    row = out[0, 0, 32]
    assert row[4:28].max().item() == pytest.approx(-1.0, abs=0.02)  # black centre-left half
    assert row[36:60].min().item() == pytest.approx(1.0, abs=0.02)  # white centre-right half
    # Portrait to landscape: still covers (no black bars).
    tall = np.full((200, 60, 3), 255, np.uint8)
    assert preprocess_image(tall, 64, 128).min().item() == pytest.approx(1.0, abs=0.01)


def test_image_latents_repeat_on_all_frames_and_interp_ends_only():
    model = StubDynamiCrafter()
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(2, 3, 64, 64) * 2 - 1
    z = image_latents(model.vae, imgs[:1], 5, interp=False, generator=g)
    assert z.shape == (1, 4, 5, 32, 32)
    assert all(torch.equal(z[:, :, 0], z[:, :, f]) for f in range(5))
    # 0.18215 · E(img).sample(): a posterior sample with the same seeded generator, not the mode.
    dist = model.vae.encode(imgs[:1]).latent_dist
    expected = 0.18215 * dist.sample(torch.Generator().manual_seed(0))
    torch.testing.assert_close(z[:, :, 0], expected)
    assert not torch.allclose(z[:, :, 0], 0.18215 * dist.mode())
    zi = image_latents(model.vae, imgs, 5, interp=True, generator=torch.Generator().manual_seed(0))
    assert torch.count_nonzero(zi[:, :, 1:-1]) == 0
    assert not torch.equal(zi[:, :, 0], zi[:, :, -1])


def test_contexts_unconditional_uses_zero_image_and_empty_text():
    model = StubDynamiCrafter()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    ctx = encode_contexts(model, AnimateOptions(prompt="waves", image_scale=2.0), image, None)
    assert set(ctx) == {"u", "img", "c"}
    # The zero image (mid-gray in [-1, 1]) gives the unconditional image tokens.
    assert torch.equal(model.token_images[-1][1], torch.zeros(3, 64, 64))
    text_len = 77
    assert torch.equal(ctx["img"][:, text_len:], ctx["c"][:, text_len:])  # same (real) image
    assert torch.equal(ctx["img"][:, :text_len], ctx["u"][:, :text_len])  # same (empty) text
    assert not torch.equal(ctx["u"][:, text_len:], ctx["c"][:, text_len:])
    assert set(encode_contexts(model, AnimateOptions(prompt="x", text_scale=1.0), image, None)) == {"c"}


def test_fps_defaults_and_output_fps():
    c512, c256 = StubConfig(), StubConfig(fps_conditioning="frame_stride", default_fps=3)
    assert fps_conditioning(c512) == 24
    assert fps_conditioning(c512, fps=12) == 12
    assert fps_conditioning(c512, frame_stride=5) == 24  # the 512 model takes fps, not a stride
    assert fps_conditioning(c256) == 3
    assert fps_conditioning(c256, frame_stride=5) == 5
    assert output_fps(c512, 12) == 12 and output_fps(c256, 3) == 8


# -------------------------------------------------------------------------------------- end to end


def test_run_with_stub_model_writes_frames_and_reports(tmp_path, image_path):
    model = StubDynamiCrafter()
    out = tmp_path / "out.mp4"
    result = run(image_path, fast(prompt="waves", image_scale=2.0), output=out, model=model)
    assert out.exists() and result.output == out
    assert (
        result.num_frames == 4 and result.fps == 8
    )  # written at 8 fps as the authors save; conditioned on 24
    from vidforge.core.video_io import read_video

    video = read_video(out)
    assert video.frames.shape == (4, 64, 64, 3)
    assert result.info["attention"] == "sdpa" and result.info["size"] == [64, 64]
    assert result.info["guidance_rescale"] == 0.7 and result.info["cond_fps"] == 24
    # One batched UNet call per step, 3 branches, concat stream included (8 channels).
    assert [c[0] for c in model.calls] == [(3, 8, 4, 32, 32)] * 2
    assert [c[1] for c in model.calls] == [[999] * 3, [499] * 3]  # trailing, 2 steps


def test_run_same_seed_same_frames(image_path):
    model = StubDynamiCrafter()
    a = run(image_path, fast(seed=3), model=model).frames
    b = run(image_path, fast(seed=3), model=model).frames
    c = run(image_path, fast(seed=4), model=model).frames
    assert a.shape == (4, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_run_other_lengths_sizes_and_256_settings(image_path):
    cfg256 = StubConfig(
        name="256",
        prediction_type="epsilon",
        zero_snr=False,
        timestep_spacing="leading",
        fps_conditioning="frame_stride",
        default_fps=3,
        guidance_rescale=0.0,
        dynamic_rescale_base=None,
    )
    model = StubDynamiCrafter(cfg256)
    result = run(image_path, fast(frames=3, width=128, frame_stride=5, vae_slicing=True), model=model)
    assert result.frames.shape == (3, 64, 128, 3)
    assert result.fps == 8 and result.info["cond_frame_stride"] == 5
    assert [c[1] for c in model.calls] == [[501, 501], [1, 1]]  # leading, plain CFG: 2 branches
    assert model.calls[0][2] == [5, 5]
    with pytest.raises(OptionError, match="--fps applies"):
        run(image_path, fast(fps=10), model=model)


def test_interp_and_loop(image_path, tmp_path):
    plain = StubDynamiCrafter()
    with pytest.raises(OptionError, match="interpolation model"):
        run(image_path, fast(loop=True), model=plain)
    with pytest.raises(OptionError, match="interpolation model"):
        run(image_path, fast(end_image=str(image_path)), model=plain)
    model = StubDynamiCrafter(StubConfig(interp=True))
    looped = run(image_path, fast(loop=True), model=model)
    assert looped.num_frames == 3  # sampled at --frames 4; the repeated last frame is dropped
    end = tmp_path / "end.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(end)
    assert run(image_path, fast(end_image=str(end)), model=model).num_frames == 4
    with pytest.raises(VidforgeError, match="--end-image"):
        run(image_path, fast(end_image=str(tmp_path / "missing.png")), model=model)


def test_bad_inputs_are_one_line_errors(tmp_path, image_path):
    model = StubDynamiCrafter()
    out = tmp_path / "out.mp4"
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"not a png at all")
    for image, match in [(tmp_path / "nope.png", "does not exist"), (corrupt, "cannot read image")]:
        with pytest.raises(VidforgeError, match=match) as e:
            run(image, fast(), output=out, model=model)
        assert "\n" not in str(e.value)
    with pytest.raises(OptionError, match="--frames"):
        run(image_path, fast(frames=0), output=out, model=model)
    assert not out.exists() and list(tmp_path.glob(".out*")) == []
    assert model.calls == []  # nothing ran


def test_failed_run_leaves_no_output(tmp_path, image_path):
    class Exploding(StubDynamiCrafter):
        def denoise(self, *a):
            raise VidforgeError("boom")

    class OutOfMemory(StubDynamiCrafter):
        def denoise(self, *a):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    out = tmp_path / "out.mp4"
    with pytest.raises(VidforgeError, match="boom"):
        run(image_path, fast(), output=out, model=Exploding())
    with pytest.raises(VidforgeError, match="out of GPU memory denoising 4 frames at 64x64"):
        run(image_path, fast(), output=out, model=OutOfMemory())
    assert not out.exists()


def test_multi_condition_with_equal_scales_equals_plain_cfg_end_to_end(image_path):
    model = StubDynamiCrafter()
    plain = run(image_path, fast(prompt="waves", text_scale=5.0), model=model).frames
    multi = run(image_path, fast(prompt="waves", text_scale=5.0, image_scale=5.0), model=model).frames
    other = run(image_path, fast(prompt="waves", text_scale=5.0, image_scale=1.0), model=model).frames
    assert np.abs(plain.astype(int) - multi.astype(int)).max() <= 1
    assert np.abs(plain.astype(int) - other.astype(int)).max() > 1


def test_vae_slicing_matches_chunked_decode(image_path):
    model = StubDynamiCrafter()
    chunked = run(image_path, fast(), model=model).frames
    per_frame = run(image_path, fast(vae_slicing=True), model=model).frames
    assert np.abs(chunked.astype(int) - per_frame.astype(int)).max() <= 1


def test_nan_decode_is_an_error_and_leaves_no_file(tmp_path, image_path):
    model = StubDynamiCrafter()
    model.vae.decoder.conv_out.register_forward_hook(lambda module, inputs, out: out * float("nan"))
    out = tmp_path / "out.mp4"
    with pytest.raises(VidforgeError, match="NaN"):
        run(image_path, fast(), output=out, model=model)
    assert not out.exists() and list(tmp_path.glob(".out*")) == []


def test_checkpoint_schedule_must_match_config(image_path):
    from vidforge.sampling.schedules import lvdm_noise_schedule

    model = StubDynamiCrafter()  # a zero-SNR (512-style) config...
    model.schedule = {"alphas_cumprod": lvdm_noise_schedule(zero_snr=False).alphas_cumprod}
    with pytest.raises(VidforgeError, match="alphas_cumprod do not match"):
        run(image_path, fast(), model=model)
    assert model.calls == []


def test_tiny_model_multi_condition_other_length_and_loop(image_path):
    from vidforge.models.dynamicrafter.config import TINY, replace_config
    from vidforge.models.dynamicrafter.network import build_model

    model = build_model("tiny")
    result = run(image_path, fast(frames=5, image_scale=2.0, prompt="waves"), model=model)
    assert result.frames.shape == (5, 64, 64, 3)
    assert result.info["model"] == "tiny" and result.info["image_scale"] == 2.0
    interp = build_model(replace_config(TINY, interp=True))
    assert run(image_path, fast(loop=True, frames=4, steps=1), model=interp).frames.shape == (3, 64, 64, 3)


# --------------------------------------------------------------------------------------------- CLI


def _cli(argv, monkeypatch=None):
    from typer.testing import CliRunner

    from vidforge.cli import app

    return CliRunner().invoke(app, argv)


def test_cli_tiny_end_to_end_and_seed(tmp_path, image_path):
    outs = []
    for name in ("a.mp4", "b.mp4"):
        out = tmp_path / name
        r = _cli(["animate", str(image_path), "--prompt", "waves", "--model", "tiny", "-o", str(out),
                  "--steps", "2", "--frames", "4", "--seed", "5", "--device", "cpu", "--json"])  # fmt: skip
        assert r.exit_code == 0, r.output
        outs.append(out)
    from vidforge.core.video_io import read_video

    a, b = (read_video(p).frames for p in outs)
    assert a.shape[0] == 4
    assert np.array_equal(a, b)


def test_cli_bad_inputs_exit_codes(tmp_path, image_path):
    out = tmp_path / "o.mp4"
    r = _cli(["animate", str(tmp_path / "missing.png"), "--model", "tiny", "-o", str(out)])
    assert r.exit_code == 1 and "does not exist" in r.output
    r = _cli(["animate", str(image_path), "--model", "tiny", "--frames", "0", "-o", str(out)])
    assert r.exit_code == 2 and "--frames" in r.output
    # Options a release cannot take are refused before its weights are looked up (exit 2, not 1).
    for argv, match in [
        (["--model", "dynamicrafter-512", "--loop"], "interpolation model"),
        (["--model", "dynamicrafter-256", "--fps", "8"], "--frame-stride"),
        (["--model", "dynamicrafter-1024", "--frame-stride", "3"], "--fps"),
        (["--model", "tiny", "--steps", "5000"], "--steps"),
    ]:
        r = _cli(["animate", str(image_path), "-o", str(out), "--device", "cpu", *argv])
        assert r.exit_code == 2 and match in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_real_preset_offline_fails_fast(tmp_path, image_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    out = tmp_path / "o.mp4"
    start = time.perf_counter()
    r = _cli(["animate", str(image_path), "--model", "dynamicrafter-512", "-o", str(out), "--device", "cpu"])
    assert time.perf_counter() - start < 30
    assert r.exit_code == 1
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Doubiiu/DynamiCrafter_512" in lines[0], r.output
    assert not out.exists()
