"""`vidforge stylize` end to end on the tiny preset, and its one-line errors."""

import subprocess
import time

import numpy as np
import pytest
from conftest import textured_frames

from vidforge.cli import main
from vidforge.core.video_io import read_video
from vidforge.core.writers import write_video

FAST = ["--model", "tiny", "--steps", "2", "--device", "cpu"]


def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def one_line_error(err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_stylize_keeps_frame_count_fps_and_size(tmp_path, clip_path, capsys):
    out = tmp_path / "ink.mp4"
    code, stdout, err = run_main(["stylize", clip_path, "--style", "ink wash", "-o", out, *FAST], capsys)
    assert code == 0, err
    video, source = read_video(out), read_video(clip_path)
    assert video.num_frames == source.num_frames == 8
    assert video.fps == pytest.approx(12.0)
    assert video.size == (64, 64)
    assert "8 frames in" in err and "s/frame" in err  # the final summary line
    assert not np.array_equal(video.frames, source.frames)


def test_odd_size_max_frames_audio_and_json(tmp_path, capsys):
    import json

    import imageio_ffmpeg

    silent = write_video(tmp_path / "silent.mp4", textured_frames(6, 44, 60), fps=10)
    clip = tmp_path / "with_audio.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", silent, "-f", "lavfi", "-i",
         "sine=frequency=440:duration=1", "-c:v", "copy", "-c:a", "aac", "-shortest", clip],
        check=True,
    )  # fmt: skip
    out = tmp_path / "out.mp4"
    args = [
        "stylize",
        clip,
        "--style",
        "ink",
        "-o",
        out,
        "--max-frames",
        "4",
        "--batch-frames",
        "3",
        "--json",
    ]
    code, stdout, err = run_main([*args, *FAST], capsys)
    assert code == 0, err
    record = json.loads(stdout)
    assert record["output"]["frames"] == 4 and record["output"]["size"] == [60, 44]
    assert record["details"]["size"] == "64x48" and record["details"]["model"] == "tiny"
    video = read_video(out)
    assert video.num_frames == 4 and video.size == (60, 44)  # processed at 64x48, written at input size
    assert video.fps == pytest.approx(10.0) and video.has_audio


def test_real_preset_offline_fails_fast_naming_the_model(clip_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    code, _, err = run_main(["stylize", clip_path, "--style", "ink", "-o", tmp_path / "o.mp4"], capsys)
    assert time.perf_counter() - start < 20
    assert code == 1
    one_line_error(err, "timbrooks/instruct-pix2pix", "vidforge models download instruct-pix2pix")
    assert not (tmp_path / "o.mp4").exists()


def _bad_inputs(tmp_path, clip_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    data = clip_path.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "folder").mkdir()
    from PIL import Image

    Image.fromarray(textured_frames(1)[0]).save(tmp_path / "photo.png")
    return {
        "missing": (tmp_path / "nope.mp4", "does not exist"),
        "empty": (tmp_path / "empty.mp4", "empty"),
        "corrupt": (tmp_path / "corrupt.mp4", "cannot decode"),
        "truncated": (tmp_path / "truncated.mp4", "cannot decode"),
        "directory": (tmp_path / "folder", "directory"),
        "image": (tmp_path / "photo.png", "image file"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "truncated", "directory", "image"])
def test_bad_inputs_give_one_line_and_no_output(tmp_path, clip_path, capsys, case):
    path, fragment = _bad_inputs(tmp_path, clip_path)[case]
    out = tmp_path / "out.mp4"
    code, _, err = run_main(["stylize", path, "--style", "ink", "-o", out, *FAST], capsys)
    assert code == 1
    one_line_error(err, fragment)
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))  # no temporary leftovers


def test_existing_output_needs_overwrite(tmp_path, clip_path, capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    code, _, err = run_main(["stylize", clip_path, "--style", "ink", "-o", out, *FAST], capsys)
    assert code == 1
    one_line_error(err, "already exists", "--overwrite")
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--scheduler", "dpm-solver"], "multistep"),
        (["--fuse-window", "0.8:0.2"], "--fuse-window"),
        (["--fuse-window", "half"], "START:END"),
        (["--deflicker", "2"], "--deflicker"),
        (["--style", " "], "--style must not be empty"),
    ],
)
def test_impossible_options_exit_2(tmp_path, clip_path, capsys, extra, fragment):
    code, _, err = run_main(
        ["stylize", clip_path, "--style", "ink", "-o", tmp_path / "o.mp4", *FAST, *extra], capsys
    )
    assert code == 2
    one_line_error(err, fragment)
