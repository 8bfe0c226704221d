"""`stylize --mode keyframes`: keyframes, inter-frame propagation, aggregation, streaming, options."""

import math
import subprocess

import numpy as np
import pytest
from conftest import textured_frames, traced_peak

from vidforge.cli import main
from vidforge.core.flow import compose_flows, video_flows
from vidforge.core.video_io import Video, read_video
from vidforge.core.writers import write_video
from vidforge.errors import OptionError
from vidforge.evaluate.metrics import warp_error
from vidforge.stylize import StylizeOptions, StylizePipeline, run
from vidforge.stylize.keyframes import AUTO_MAX_INTERVAL, Interval, KeyframeStylizer, visible
from vidforge.stylize.options import parse_keyframe_interval

TINY = dict(style="ink wash", model="tiny", steps=2, device="cpu", seed=1)
KEYS = dict(TINY, mode="keyframes")
FAST = ["--model", "tiny", "--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def pipe():
    return StylizePipeline.from_options(StylizeOptions(**TINY))


class NoUNet(StylizePipeline):
    """The real keyframe loop, flows, warps, VAE and writer; the sampling returns the noise."""

    def denoise_chunk(self, chunk, indices, noise, *args, **kwargs):
        return noise.expand(len(indices), -1, -1, -1).clone()


def stylized(pipe, frames, **options):
    """Output frames and the keyframe indices of a keyframes-mode run on ``frames``."""
    method = KeyframeStylizer(pipe, StylizeOptions(**{**KEYS, **options}))
    out = np.concatenate(list(method.stream(iter([frames]))))
    return out, method.keyframes


# ----------------------------------------------------------------------------------- flow chains


def test_compose_flows_chains_translations():
    h, w = 16, 20
    ab = np.broadcast_to(np.float32([1.0, 0.0]), (h, w, 2)).copy()
    bc = np.broadcast_to(np.float32([2.0, -1.0]), (h, w, 2)).copy()
    np.testing.assert_array_equal(compose_flows(ab, bc), np.broadcast_to([3.0, -1.0], (h, w, 2)))
    # a flow that varies: w_bc(x) = x/10 along x, read at x + 1
    ramp = np.zeros((h, w, 2), np.float32)
    ramp[..., 0] = np.arange(w, dtype=np.float32)[None] / 10
    ac = compose_flows(ab, ramp)
    expected = np.broadcast_to(1 + (np.arange(w - 1) + 1) / 10, (h, w - 1))
    np.testing.assert_allclose(ac[:, :-1, 0], expected, rtol=1e-5)


def test_interval_chains_flow_back_to_the_keyframe_and_masks_what_entered():
    frames = textured_frames(6, 48, 64, shift=(2, 0))  # content moves right 2 px per frame
    edited = textured_frames(1, 48, 64, seed=5)[0]
    interval = Interval(0, edited, frames[0], "dis")
    for frame in frames[1:]:
        interval.add(frame)
    # frame 5's pixel x sits at x - 10 in frame 0
    inner = interval.to_start[8:-8, 16:-8]
    assert abs(float(np.median(inner[..., 0])) + 10) < 0.5 and abs(float(np.median(inner[..., 1]))) < 0.5
    # the 10 columns that entered on the left (wrapped content) are not visible in frame 0
    valid = interval.valid[-1]
    assert valid[:, :8].mean() < 0.2 and valid[8:-8, 16:-8].mean() > 0.9
    displacement, occluded = interval.motion()
    assert displacement == pytest.approx(10 / 64, abs=0.02) and 0.1 < occluded < 0.35
    # Ê_5: E_0 carried over where visible, the input frame where not
    carried = interval.carried().astype(int)
    assert np.abs(carried[8:-8, 16:-8] - edited[8:-8, 6:-18]).mean() < 8
    assert np.abs(carried[:, :6] - frames[5][:, :6]).mean() < 1


def test_visible_needs_the_frame_and_the_flow_test_or_matching_input():
    h, w = 12, 16
    right = np.broadcast_to(np.float32([1.0, 0.0]), (h, w, 2)).copy()
    flat = np.full((h, w, 3), 120, np.uint8)
    # consistent flows (there and back): visible except the column that maps outside the frame
    vis = visible(right, -right, flat, flat)
    assert vis[:, :-1].all() and not vis[:, -1].any()
    # inconsistent flows (both +1 px): the forward-backward test fails everywhere, but a flat
    # input agrees after the warp, so it stays visible; a different input does not
    assert visible(right, right, flat, flat)[:, :-1].all()
    other = flat.copy()
    other[:, : w // 2] += 40
    vis = visible(right, right, flat, other)
    assert not vis[:, : w // 2 - 1].any() and vis[:, w // 2 : -1].all()


# ------------------------------------------------------------------------------------ the method


def test_static_video_gives_identical_frames_between_keyframes(pipe):
    frames = np.repeat(textured_frames(1, 32, 32), 7, axis=0)
    # pure carry-over: every frame is keyframe 0's edit, bit for bit (warps, blend, deflicker add nothing)
    out, keys = stylized(pipe, frames, keyframe_interval=3, propagation_strength=0.0)
    assert keys == [0, 3, 6]
    assert all(np.array_equal(frame, out[0]) for frame in out)
    # with diffusion on the keyframes: the frames between are the temporal blend of their two
    # edited keyframes and nothing else (no motion, no occlusion, no new content)
    out, keys = stylized(pipe, frames, keyframe_interval=3, deflicker=0.0)
    assert not np.array_equal(out[0], out[3])  # the keyframes do differ
    for a, b in zip(keys, keys[1:], strict=False):
        for t in range(a + 1, b):
            alpha = (t - a) / (b - a)
            blend = (1 - alpha) * out[a].astype(np.float32) + alpha * out[b].astype(np.float32)
            np.testing.assert_array_equal(out[t], np.clip(np.rint(blend), 0, 255).astype(np.uint8))


def test_strength_one_equals_independent_keyframe_stylization(pipe):
    frames = textured_frames(7, 32, 32, shift=(1, 0))
    out, keys = stylized(pipe, frames, keyframe_interval=3, propagation_strength=1.0, deflicker=0.0)
    assert keys == [0, 3, 6]
    independent = StylizeOptions(**TINY, batch_frames=1, fuse_strength=0.0, deflicker=0.0)
    for k in keys:  # each keyframe alone through --mode frames: the same recipe, the same noise
        np.testing.assert_array_equal(out[k], pipe(frames[k : k + 1], independent)[0])
    # a lower strength does change the keyframes after the first
    carried, _ = stylized(pipe, frames, keyframe_interval=3, propagation_strength=0.5, deflicker=0.0)
    np.testing.assert_array_equal(carried[0], out[0])
    assert not np.array_equal(carried[3], out[3])


def test_unet_work_is_a_keyframes_worth_and_warp_error_is_lower_than_frames_mode(pipe):
    frames = textured_frames(10, 48, 64, shift=(2, 1))
    steps, interval, strength = 2, 4, 0.6
    rows = []  # UNet batch rows per call
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        frames_mode = run(Video(frames, 10.0), StylizeOptions(**{**TINY, "steps": steps}), pipeline=pipe)
        frames_rows, rows[:] = sum(rows), []
        options = StylizeOptions(
            **{**KEYS, "steps": steps}, keyframe_interval=interval, propagation_strength=strength
        )
        keyframes_mode = run(Video(frames, 10.0), options, pipeline=pipe)
    finally:
        hook.remove()
    assert keyframes_mode.num_frames == 10 and keyframes_mode.info["keyframes"] == 4  # 0, 4, 8, 9
    # one call of 4 branches per step of each keyframe: the first from noise, the others part-way
    assert len(rows) == steps + 3 * int(steps * strength) and set(rows) == {4}
    assert len(rows) <= (math.ceil(10 / interval) + 1) * steps
    assert frames_rows == 4 * 10 * steps
    forward, backward = video_flows(frames)  # warp error with the flow of the source
    err_frames = warp_error(frames_mode.frames, zip(forward, backward, strict=True))[0]
    err_keyframes = warp_error(keyframes_mode.frames, zip(forward, backward, strict=True))[0]
    assert err_keyframes < err_frames, (err_keyframes, err_frames)


def test_auto_keyframes_follow_motion(pipe, monkeypatch):
    monkeypatch.setattr(pipe, "denoise_chunk", NoUNet.denoise_chunk.__get__(pipe))  # the choice only
    static = np.repeat(textured_frames(1, 32, 48), 2 * AUTO_MAX_INTERVAL + 3, axis=0)
    _, keys = stylized(pipe, static, keyframe_interval="auto")
    assert keys == [0, AUTO_MAX_INTERVAL, 2 * AUTO_MAX_INTERVAL, 2 * AUTO_MAX_INTERVAL + 2]
    slow = stylized(pipe, textured_frames(12, 32, 48, shift=(1, 0)), keyframe_interval="auto")[1]
    fast = stylized(pipe, textured_frames(12, 32, 48, shift=(3, 0)), keyframe_interval="auto")[1]
    assert slow[-1] == fast[-1] == 11
    assert len(slow) < len(fast)


# ---------------------------------------------------------------------------------------- the CLI


def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


@pytest.mark.parametrize(("num_frames", "interval"), [(7, "3"), (3, "8")])
def test_keeps_frame_count_fps_size_and_audio(tmp_path, capsys, num_frames, interval):
    import json

    import imageio_ffmpeg

    silent = write_video(tmp_path / "silent.mp4", textured_frames(num_frames, 44, 60, (1, 0)), fps=10)
    clip = tmp_path / "with_audio.mp4"
    # audio longer than the video (audio that ends first cuts the video in the writer: issue 15)
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", silent, "-f", "lavfi", "-i",
         "sine=frequency=440:duration=2", "-c:v", "copy", "-c:a", "aac", clip],
        check=True,
    )  # fmt: skip
    out = tmp_path / "out.mp4"
    args = ["stylize", clip, "--style", "ink", "-o", out, "--mode", "keyframes", "--json"]
    code, stdout, err = run_main([*args, "--keyframe-interval", interval, *FAST], capsys)
    assert code == 0, err
    record = json.loads(stdout)
    assert record["output"]["frames"] == num_frames and record["details"]["mode"] == "keyframes"
    # every K-th frame and the last
    assert record["details"]["keyframes"] == len(set(range(0, num_frames, int(interval))) | {num_frames - 1})
    video = read_video(out)
    assert video.num_frames == num_frames and video.size == (60, 44)
    assert video.fps == pytest.approx(10.0) and video.has_audio


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--keyframe-interval", "0", ">= 1 or auto"),
        ("--keyframe-interval", "-3", ">= 1 or auto"),
        ("--keyframe-interval", "every", "whole number"),
        ("--propagation-strength", "-0.1", "[0, 1]"),
        ("--propagation-strength", "1.5", "[0, 1]"),
        ("--propagation-strength", "nan", "finite"),
    ],
)
def test_bad_keyframe_options_give_one_line_and_exit_2(tmp_path, clip_path, capsys, option, value, fragment):
    out = tmp_path / "out.mp4"
    args = ["stylize", clip_path, "--style", "ink", "-o", out, "--mode", "keyframes", option, value]
    code, _, err = run_main([*args, *FAST], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert option in lines[0] and fragment in lines[0], lines[0]
    assert not out.exists()


def test_keyframe_interval_parses_a_number_or_auto():
    assert parse_keyframe_interval("12") == 12 and parse_keyframe_interval(" Auto ") == "auto"
    StylizeOptions(style="x", keyframe_interval="auto").validate()
    with pytest.raises(OptionError, match="keyframe-interval"):
        StylizeOptions(style="x", keyframe_interval=2.5).validate()


# ----------------------------------------------------------------------------------------- memory


def test_memory_is_bounded_in_video_length(pipe, tmp_path, monkeypatch, stream_events):
    events = stream_events  # ("read", frames) when a chunk is pulled, ("write", frames) when written
    batch, interval, size = 3, 4, 96
    frame_bytes = size * size * 3
    options = StylizeOptions(**{**KEYS, "steps": 1}, batch_frames=batch, keyframe_interval=interval)
    monkeypatch.setattr(pipe, "denoise_chunk", NoUNet.denoise_chunk.__get__(pipe))

    def peak_bytes(num_frames):
        clip = write_video(tmp_path / f"in{num_frames}.mp4", textured_frames(num_frames, size, size), fps=10)
        events.clear()
        result, peak = traced_peak(
            lambda: run(clip, options, output=tmp_path / "out.mp4", pipeline=pipe, overwrite=True)
        )
        assert result.num_frames == num_frames
        # frames read but not yet written: at most one interval plus one chunk read ahead
        read = written = 0
        for kind, n in events:
            read, written = (read + n, written) if kind == "read" else (read, written + n)
            assert read - written <= interval + batch
        assert read == written == num_frames
        return peak

    peak_bytes(13)  # warm-up
    short, long = peak_bytes(13), peak_bytes(41)
    # the interval's flows and warps are held whatever the length; 28 more frames would add 28 frames
    assert long - short < 2 * frame_bytes, (short, long)
