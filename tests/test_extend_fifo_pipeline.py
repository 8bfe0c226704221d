"""``vidforge extend --method fifo`` end to end on ``tiny``: exact frame counts, determinism,
constant state, Ctrl-C + --resume bit for bit, --image (DynamiCrafter), option errors.
32x32 frames, N = 8; partitions 1-2 keep the queue short."""

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from vidforge import extend
from vidforge.cli import app
from vidforge.core.video_io import read_video
from vidforge.errors import OptionError, VidforgeError
from vidforge.extend import ExtendOptions
from vidforge.extend.checkpoint import state_dir_for
from vidforge.models import load_model

BASE = ExtendOptions(
    prompt="waves", model="tiny", method="fifo", partitions=1, text_scale=3.0, height=32, width=32
)
runner = CliRunner()


@pytest.fixture(scope="module")
def t2v():
    return load_model("tiny", "extend")


def interrupt_after(chunk):
    def callback(k, written):
        if k == chunk:
            raise KeyboardInterrupt

    return callback


def test_cli_fifo_writes_exactly_40_frames(tmp_path):
    out = tmp_path / "waves.mp4"
    result = runner.invoke(
        app,
        ["extend", "--prompt", "waves", "--frames", "40", "--model", "tiny", "--method", "fifo",
         "--partitions", "1", "--no-lookahead", "--height", "32", "--width", "32", "-o", str(out), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    info = {**record["details"], **record["output"]}
    assert info["frames"] == 40 and info["method"] == "fifo" and info["chunks"] == 5
    assert info["steps"] == 8 and info["queue_frames"] == 8  # S = n·N = 8 (no lookahead frames)
    assert (info["eta"], info["text_scale"]) == (1.0, 12.0)  # the authors' defaults
    assert read_video(out).num_frames == 40


@pytest.mark.parametrize("frames", [1, 13])
def test_frame_count_is_exact(t2v, frames):
    result = extend.run(replace(BASE, frames=frames), model=t2v)
    assert result.num_frames == frames and result.frames.shape == (frames, 32, 32, 3)


def test_same_seed_same_frames_and_the_queue_does_not_grow(t2v):
    options = replace(BASE, frames=5, lookahead=False)
    a = extend.run(options, model=t2v)
    longer = extend.run(replace(options, frames=11), model=t2v)
    other = extend.run(replace(options, frames=1, seed=1), model=t2v)
    assert np.array_equal(longer.frames[:5], a.frames)  # same seed, same frames; more frames only append
    assert not np.array_equal(other.frames, a.frames[:1])
    # queue: n·N = 8 latent frames of 4·4·4 floats, whatever the length
    assert a.info["state_bytes"] == longer.info["state_bytes"] == 8 * 4 * 4 * 4 * 4


def test_resume_after_interrupt_gives_the_uninterrupted_frames(tmp_path, t2v):
    # n = 2: a warm-up before the first frame; eta 1 (fifo default): the RNG state matters
    options = replace(BASE, frames=10, partitions=2, lookahead=False)
    full = extend.run(options, output=tmp_path / "full" / "%05d.png", model=t2v)
    out = tmp_path / "out" / "%05d.png"
    with pytest.raises(KeyboardInterrupt, match="8 frames written .* --resume"):
        extend.run(options, output=out, callback=interrupt_after(0), model=t2v)
    partial = read_video(out)
    assert partial.num_frames == 8
    meta = json.loads((state_dir_for(out) / "meta.json").read_text())
    assert meta["index"] == 8 and meta["options"]["method"] == "fifo"
    resumed = extend.run(replace(options, resume=True), output=out, model=t2v)
    assert resumed.num_frames == 10
    assert np.array_equal(read_video(out).frames, read_video(full.output).frames)
    assert not state_dir_for(out).exists()


def test_interrupt_inside_a_chunk_then_resume_matches(tmp_path, t2v):
    from test_extend_pipeline import RecordingBars

    class StepBars(RecordingBars):
        """Ctrl-C in the middle of the queue steps of the second chunk."""

        def track(self, items, description, total=None):
            return super().track(items, "clip " + description, total)

    options = replace(BASE, frames=10)  # lookahead on (the default)
    full = extend.run(options, model=t2v).frames
    out = tmp_path / "out" / "%05d.png"
    # partitions 1: 8 first-clip steps, then one queue step per frame; step 8 + 9 is frame 9's
    with pytest.raises(KeyboardInterrupt, match="8 frames written"):
        extend.run(options, output=out, bars=StepBars(interrupt_at_step=17), model=t2v)
    assert read_video(out).num_frames == 8
    extend.run(replace(options, resume=True), output=out, model=t2v)
    assert np.array_equal(read_video(out).frames, full)


def test_resume_with_the_other_method_is_refused(tmp_path, t2v):
    out = tmp_path / "out" / "%05d.png"
    with pytest.raises(KeyboardInterrupt):
        extend.run(
            replace(BASE, frames=9, lookahead=False), output=out, callback=interrupt_after(0), model=t2v
        )
    with pytest.raises(VidforgeError, match=r"options differ .*--method \(was 'fifo'\)"):
        extend.run(replace(BASE, frames=9, method="reuse", resume=True), output=out, model=t2v)


def test_fifo_animates_an_image_with_dynamicrafter(tmp_path):
    from PIL import Image

    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
    options = replace(BASE, image=str(image), frames=9, clip_frames=8)
    model = load_model("tiny", "animate")
    full = extend.run(options, output=tmp_path / "full" / "%05d.png", model=model)
    assert full.num_frames == 9 and full.info["cond_fps"] == 24
    out = tmp_path / "out" / "%05d.png"
    with pytest.raises(KeyboardInterrupt, match="8 frames written"):
        extend.run(options, output=out, callback=interrupt_after(0), model=model)
    extend.run(replace(options, resume=True), output=out, model=model)
    assert np.array_equal(read_video(out).frames, read_video(full.output).frames)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(init="clip.mp4"), "--init works with --method reuse only"),
        (dict(partitions=0), "--partitions must be at least 1"),
        (dict(clip_frames=7), "lookahead denoising needs an even clip length"),
        (dict(clip_frames=8, partitions=200), "at most 1000 DDIM levels"),
        (dict(method="loop"), "--method must be one of reuse, fifo"),
    ],
)
def test_option_errors_are_one_line(changes, message):
    with pytest.raises(OptionError, match=message) as e:
        replace(BASE, **changes).validate()
    assert "\n" not in str(e.value)


def test_odd_model_length_with_lookahead_is_refused_once_n_is_known(t2v):
    # no --clip-frames: N comes from the model; tiny's 8 is even, a model of 7 frames is not
    with pytest.raises(OptionError, match="even clip length"):
        extend.run(replace(BASE, frames=4), model=replace(t2v, frames=7))
    result = extend.run(replace(BASE, frames=2, lookahead=False), model=replace(t2v, frames=7))
    assert result.num_frames == 2 and result.info["queue_frames"] == 7
