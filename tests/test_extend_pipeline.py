"""``vidforge extend`` end to end on the ``tiny`` preset: frame counts, determinism, constant
state, --init, Ctrl-C + --resume, CLI errors. 64x64 frames, N = 8, 2 steps."""

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from vidforge import extend
from vidforge.cli import app
from vidforge.core.video_io import read_video
from vidforge.core.writers import write_video
from vidforge.errors import OptionError, VidforgeError
from vidforge.extend import ExtendOptions
from vidforge.extend.checkpoint import state_dir_for

BASE = ExtendOptions(prompt="a river through a forest", model="tiny", steps=2, text_scale=3.0)


@pytest.mark.parametrize("frames, clips", [(1, 1), (8, 1), (13, 2), (21, 3)])
def test_frame_count_is_exact(frames, clips):
    result = extend.run(replace(BASE, frames=frames))
    assert result.num_frames == frames
    assert result.frames.shape == (frames, 64, 64, 3) and result.frames.dtype == np.uint8
    assert result.info["clips"] == clips  # ceil(frames / 8): every clip gives all N = 8 frames


def test_output_is_every_clip_in_generation_order(monkeypatch):
    """The official layout: clip k's frames j = 0..N-1 are output frames k·N + j (trimmed at the end);
    decoded clip by clip, so recording each decoded clip shows the layout."""
    from vidforge.extend import pipeline

    decoded = []
    real = pipeline.decode_clip

    def recording(bundle, z0, limit, chunk):
        decoded.append(real(bundle, z0, z0.shape[2], chunk))  # the whole clip
        return real(bundle, z0, limit, chunk)

    monkeypatch.setattr(pipeline, "decode_clip", recording)
    result = extend.run(replace(BASE, frames=19))
    assert [len(c) for c in decoded] == [8, 8, 8]
    assert np.array_equal(result.frames, np.concatenate(decoded)[:19])


def test_same_seed_same_frames_other_seed_other_frames():
    options = replace(BASE, frames=12, eta=0.5)
    a = extend.run(options).frames
    b = extend.run(options).frames
    c = extend.run(replace(options, seed=1)).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cached_state_does_not_grow_with_frames():
    small = extend.run(replace(BASE, frames=12)).info["state_bytes"]
    large = extend.run(replace(BASE, frames=28)).info["state_bytes"]
    # noise 4·8·8·8 floats + ceil(2·0.4) = 1 step × M=4 frames × 4·8·8 floats
    assert small == large == (4 * 8 * 8 * 8 + 1 * 4 * 4 * 8 * 8) * 4


def test_prompt_frames_must_be_below_the_model_clip_length():
    # N is only known from the model (tiny: 8)
    with pytest.raises(OptionError, match="smaller than the clip length N = 8"):
        extend.run(replace(BASE, frames=12, prompt_frames=8))


def test_image_is_refused_for_text_to_video_models():
    with pytest.raises(OptionError, match="--image is not supported by --model modelscope"):
        extend.run(replace(BASE, model="modelscope", frames=8, image="photo.png"))


def test_real_model_missing_offline_is_one_line_error():
    with pytest.raises(VidforgeError, match="vidforge models download modelscope") as e:
        extend.run(replace(BASE, model="modelscope", frames=8))
    assert "\n" not in str(e.value)


def test_init_video_is_continued(tmp_path, clip_path):
    out = tmp_path / "out" / "%05d.png"
    result = extend.run(replace(BASE, frames=14, init=str(clip_path)), output=out)
    video = read_video(out)
    source = read_video(clip_path)
    assert result.num_frames == video.num_frames == 14
    assert np.array_equal(video.frames[:8], source.frames)  # the init video first, unchanged
    assert video.fps == pytest.approx(source.fps)  # 12 fps from the init video
    assert not state_dir_for(out).exists()  # checkpoint removed after success


def test_init_must_be_shorter_than_frames(clip_path):
    with pytest.raises(OptionError, match="larger than the --init video's 8 frames"):
        extend.run(replace(BASE, frames=8, init=str(clip_path)))


def test_init_missing_file(tmp_path):
    with pytest.raises(VidforgeError, match="does not exist"):
        extend.run(replace(BASE, frames=12, init=str(tmp_path / "nope.mp4")))


def interrupt_after(clip):
    def callback(k, written):
        if k == clip:
            raise KeyboardInterrupt

    return callback


def test_resume_after_interrupt_gives_the_uninterrupted_frames(tmp_path):
    options = replace(BASE, frames=24, eta=0.5)  # eta > 0: the RNG state must be restored too
    full = extend.run(options, output=tmp_path / "full" / "%05d.png")
    out = tmp_path / "out" / "%05d.png"
    with pytest.raises(KeyboardInterrupt, match="16 frames written .* --resume"):
        extend.run(options, output=out, callback=interrupt_after(1))
    partial = read_video(out)  # a valid video of the finished clips
    assert partial.num_frames == 16
    meta = json.loads((state_dir_for(out) / "meta.json").read_text())
    assert meta["index"] == 2  # the next clip
    resumed = extend.run(replace(options, resume=True), output=out)
    assert resumed.num_frames == 24
    assert np.array_equal(read_video(out).frames, read_video(full.output).frames)
    assert np.array_equal(read_video(out).frames[:16], partial.frames)
    assert not state_dir_for(out).exists()


def test_a_random_seed_run_resumes_with_its_own_seed_and_memory_options_may_change(tmp_path):
    out = tmp_path / "out" / "%05d.png"
    options = replace(BASE, frames=16, eta=0.5, seed=-1)
    with pytest.raises(KeyboardInterrupt):
        extend.run(options, output=out, callback=interrupt_after(0))
    seed = json.loads((state_dir_for(out) / "meta.json").read_text())["options"]["seed"]
    assert seed >= 0  # the seed drawn for the run, kept for --resume
    resumed = extend.run(replace(options, resume=True, vae_slicing=True), output=out)
    assert resumed.settings["options"]["seed"] == seed
    full = extend.run(replace(options, seed=seed), output=tmp_path / "full" / "%05d.png")
    assert np.abs(read_video(out).frames.astype(int) - read_video(full.output).frames.astype(int)).max() <= 1


def test_resume_with_other_options_or_no_checkpoint_is_refused(tmp_path):
    out = tmp_path / "out" / "%05d.png"
    with pytest.raises(VidforgeError, match="no checkpoint"):
        extend.run(replace(BASE, frames=12, resume=True), output=out)
    with pytest.raises(KeyboardInterrupt):
        extend.run(replace(BASE, frames=16), output=out, callback=interrupt_after(0))
    with pytest.raises(VidforgeError, match=r"options differ .*--seed \(was 0\)") as e:
        extend.run(replace(BASE, frames=16, seed=5, resume=True), output=out)
    assert "\n" not in str(e.value)


def test_interrupt_inside_the_first_clip_leaves_no_video(tmp_path):
    out = tmp_path / "out.mp4"

    def interrupted_sampler(*args, **kwargs):
        raise KeyboardInterrupt
        yield

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("vidforge.extend.pipeline.sample_reuse_and_diffuse", interrupted_sampler)
        with pytest.raises(KeyboardInterrupt, match="nothing written"):
            extend.run(replace(BASE, frames=12), output=out)
    assert not out.exists()
    assert list(tmp_path.glob("*.part*")) == []


runner = CliRunner()


def test_cli_writes_exactly_40_frames(tmp_path):
    out = tmp_path / "river.mp4"
    result = runner.invoke(
        app,
        ["extend", "--prompt", "a river through a forest", "--frames", "40", "--model", "tiny",
         "--steps", "2", "-o", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    info = {**record["details"], **record["output"]}
    assert info["frames"] == 40 and info["clips"] == 5
    assert read_video(out).num_frames == 40


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--prompt-frames", "8", "--clip-frames", "8"], 2, "smaller than the clip length"),
        (["--staged-guidance", "2"], 2, "--staged-guidance"),
        (["--model", "nope/none/x"], 1, "unknown model"),
        (["--init", "missing.mp4"], 1, "does not exist"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, args, code, message):
    result = runner.invoke(
        app, ["extend", "--prompt", "x", "--model", "tiny", "-o", str(tmp_path / "o.mp4"), *args]
    )
    assert result.exit_code == code
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_cli_corrupt_init_video(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    result = runner.invoke(
        app, ["extend", "--prompt", "x", "--model", "tiny", "--init", str(bad), "-o", str(tmp_path / "o.mp4")]
    )
    assert result.exit_code == 1 and "cannot decode video" in result.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_write_video_helper_roundtrip_used_by_init(tmp_path, frames):
    # guard: PNG sequences are lossless, which the resume/init comparisons rely on
    path = write_video(tmp_path / "f" / "%05d.png", frames, fps=12)
    assert np.array_equal(read_video(path).frames, frames)


def test_local_model_folder_that_is_not_a_t2v_layout(tmp_path):
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    with pytest.raises(
        VidforgeError, match=r"not a diffusers text-to-video folder \(missing vae/, text_encoder/"
    ):
        extend.run(replace(BASE, model=str(folder), frames=8))
    single = tmp_path / "model.ckpt"
    single.write_bytes(b"\0" * 16)
    with pytest.raises(VidforgeError, match="expected a diffusers text-to-video folder .*got a single file"):
        extend.run(replace(BASE, model=str(single), frames=8))


def test_local_folder_with_broken_weights_is_one_line_error(tmp_path):
    folder = tmp_path / "model"
    for sub in ("unet", "vae", "text_encoder", "tokenizer"):
        (folder / sub).mkdir(parents=True)
    (folder / "unet" / "config.json").write_text("{not json")
    with pytest.raises(VidforgeError, match="cannot load the diffusers folder") as e:
        extend.run(replace(BASE, model=str(folder), frames=8))
    assert "\n" not in str(e.value)


def test_cli_interrupted_output_suggests_resume(tmp_path):
    out = tmp_path / "o" / "%05d.png"
    with pytest.raises(KeyboardInterrupt):
        extend.run(replace(BASE, frames=16), output=out, callback=interrupt_after(0))
    args = ["extend", "--prompt", BASE.prompt, "--model", "tiny", "--steps", "2", "--guidance-scale", "3",
            "--frames", "16", "-o", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "continue it with --resume" in result.stderr
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert read_video(out).num_frames == 16 and not state_dir_for(out).exists()


class RecordingBars:
    """Stands in for ``core.progress.Bars``: records (depth, description, total) and can raise
    KeyboardInterrupt at the n-th denoising step, like Ctrl-C in the middle of a clip."""

    def __init__(self, interrupt_at_step=None):
        self.rows, self.depth, self.steps, self.interrupt_at_step = [], 0, 0, interrupt_at_step

    def track(self, items, description, total=None):
        self.rows.append((self.depth, description, total))
        self.depth += 1
        try:
            for item in items:
                if description.startswith("clip ") and self.steps == self.interrupt_at_step:
                    raise KeyboardInterrupt
                self.steps += description.startswith("clip ")
                yield item
        finally:
            self.depth -= 1


def test_progress_is_a_clip_bar_with_step_bars_inside():
    bars = RecordingBars()
    extend.run(replace(BASE, frames=24), bars=bars)
    assert bars.rows[0] == (0, "clips", 3)
    assert bars.rows[1:] == [(1, f"clip {k}/3", 2) for k in (1, 2, 3)]
    assert bars.steps == 6


def test_interrupt_inside_a_clip_then_resume_matches(tmp_path):
    options = replace(BASE, frames=20, eta=0.5)
    full = extend.run(options).frames
    out = tmp_path / "out" / "%05d.png"
    with pytest.raises(KeyboardInterrupt, match="16 frames written"):
        extend.run(options, output=out, bars=RecordingBars(interrupt_at_step=5))  # 2nd step of clip 3
    assert read_video(out).num_frames == 16
    extend.run(replace(options, resume=True), output=out)
    assert np.array_equal(read_video(out).frames, full)


def test_guidance_scale_at_most_1_turns_cfg_off():
    """As the official loop: any scale <= 1 runs the prompt branch alone (one batch row per call),
    so 0.5 and 0 give the scale-1 frames; above 1 both branches run in one batched call."""
    from vidforge.models import load_model

    model = load_model("tiny", "extend")
    batches = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        small = replace(BASE, frames=8, height=32, width=32)
        outputs = {
            s: extend.run(replace(small, text_scale=s), model=model).frames for s in (1.0, 0.5, 0.0, 1.5)
        }
    finally:
        hook.remove()
    assert batches == [1] * 6 + [2] * 2  # 2 steps each: scales 1, 0.5, 0 unguided; 1.5 guided
    assert np.array_equal(outputs[0.5], outputs[1.0]) and np.array_equal(outputs[0.0], outputs[1.0])
    assert not np.array_equal(outputs[1.5], outputs[1.0])
