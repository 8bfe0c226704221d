"""Outputs: streams, containers and codecs, exact sizes, colour tags, numbered PNG frames, GIF
timing, and the safety of the final rename (directories, concurrent runs, killed runs)."""

import os
import subprocess

import av
import numpy as np
import pytest
from conftest import textured_frames

from vidforge.core.options import CODEC_NAMES
from vidforge.core.video_io import ColorInfo, probe_video, read_video
from vidforge.core.writers import (
    CODECS,
    OutputSettings,
    check_output_path,
    ffmpeg_exe,
    get_writer,
    gif_durations,
    part_path,
    write_video,
)
from vidforge.errors import VidforgeError


def ffmpeg(*args):
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """2 s of 64x48 video at 12 fps with 2 s of AAC audio (the single audio stream of a camera clip)."""
    path = tmp_path_factory.mktemp("src") / "source.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", path)  # fmt: skip
    return path


def streams(path):
    with av.open(str(path)) as container:
        return [(s.type, s.codec_context.name) for s in container.streams]


def durations(path):
    with av.open(str(path)) as container:
        return {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration}


@pytest.mark.parametrize(
    "suffix, audio", [(".mp4", "aac"), (".mov", "aac"), (".mkv", "aac"), (".webm", "opus")]
)
def test_one_video_stream_and_the_source_audio_copied_or_converted(tmp_path, source, suffix, audio):
    frames = read_video(source).frames
    out = write_video(tmp_path / f"out{suffix}", frames, 12, audio_from=source)
    found = streams(out)
    assert [t for t, _ in found] == ["video", "audio"], found  # exactly one of each
    assert found[1][1] == audio  # copied as AAC where the container takes it; WebM holds Opus
    assert read_video(out).num_frames == 24


def test_audio_shorter_than_the_video_never_costs_frames(tmp_path, source):
    short = tmp_path / "short_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", short)  # fmt: skip
    frames = read_video(short).frames
    assert len(frames) == 50
    out = write_video(tmp_path / "out.mp4", frames, 25, audio_from=short)
    assert read_video(out).num_frames == 50  # the old writer cut the video at the audio's end (-shortest)
    longer = write_video(tmp_path / "cut.mp4", frames[:12], 25, audio_from=short)
    assert durations(longer)["audio"] <= 12 / 25 + 0.05  # longer audio is cut at the video's end


def test_crf_changes_the_size(tmp_path):
    frames = textured_frames(12, 96, 96)
    small = write_video(tmp_path / "a.mp4", frames, 12, settings=OutputSettings(crf=30))
    large = write_video(tmp_path / "b.mp4", frames, 12, settings=OutputSettings(crf=10))
    assert small.stat().st_size < large.stat().st_size


@pytest.mark.parametrize(
    "codec, suffix",
    [("h264", ".mp4"), ("h265", ".mp4"), ("vp9", ".webm"), ("prores", ".mov"), ("ffv1", ".mkv")],
)
def test_every_codec_keeps_an_odd_size_exactly(tmp_path, codec, suffix):
    frames = textured_frames(3, 143, 175)
    crf = 10 if CODECS[codec].crf else None
    out = write_video(tmp_path / f"o{suffix}", frames, 24, settings=OutputSettings(codec=codec, crf=crf))
    video = read_video(out)
    assert video.size == (175, 143) and video.num_frames == 3
    assert np.abs(video.frames.astype(int) - frames.astype(int)).mean() < 8


def test_codec_names_match_the_options():
    assert tuple(CODECS) == CODEC_NAMES


def test_colour_tags_and_bit_depth_are_kept(tmp_path):
    tagged = tmp_path / "tagged.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=0.5", "-c:v", "libx265", "-pix_fmt",
           "yuv420p10le", "-vf", "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv", tagged)  # fmt: skip
    info = probe_video(tagged)
    assert info.color == ColorInfo("bt709", "bt709", "bt709", "tv", 10)
    out = write_video(
        tmp_path / "out.mkv",
        read_video(tagged).frames,
        12,
        settings=OutputSettings(codec="h265", color=info.color),
    )
    assert probe_video(out).color == info.color  # the old writer gave untagged 8-bit


def test_numbered_png_frames_and_a_plain_png_refused(tmp_path, frames):
    out = write_video(tmp_path / "seq" / "frame_%05d.png", frames, 10)
    names = sorted(p.name for p in (tmp_path / "seq").iterdir())
    assert names == ["fps.txt"] + [f"frame_{i:05d}.png" for i in range(len(frames))]
    assert np.array_equal(read_video(out).frames, frames)
    with pytest.raises(VidforgeError, match=r"numbered pattern, e.g. .*%05d.png"):
        check_output_path(tmp_path / "x.png", overwrite=False)
    with pytest.raises(VidforgeError, match="already holds numbered frames"):
        check_output_path(tmp_path / "seq" / "frame_%05d.png", overwrite=False)


def test_gif_keeps_the_duration_at_29_97_fps(tmp_path, frames):
    steps = gif_durations(30, 30000 / 1001)
    assert set(steps) == {30, 40} and abs(sum(steps) / 1000 - 30 / (30000 / 1001)) < 0.01
    out = write_video(tmp_path / "o.gif", np.concatenate([frames] * 4)[:30], 30000 / 1001)
    assert read_video(out).fps == pytest.approx(29.97, abs=0.4)  # 33.3 with one fixed 3 cs delay


def test_an_existing_folder_is_never_an_output(tmp_path, frames):
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    (folder / "keep.txt").write_text("user data")
    for overwrite in (False, True):
        with pytest.raises(VidforgeError, match="existing folder"):
            check_output_path(folder, overwrite=overwrite)
    assert (folder / "keep.txt").read_text() == "user data"


def test_of_two_writers_of_one_new_output_exactly_one_wins(tmp_path, frames):
    out = tmp_path / "o.mp4"
    first, second = get_writer(out, 8), get_writer(out, 8)
    first.write(frames)
    second.write(frames[:2])
    first.close()
    with pytest.raises(VidforgeError, match="appeared while this run was writing it"):
        second.close()
    assert read_video(out).num_frames == len(frames)  # the winner's video, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]  # no temporary left


def test_parts_of_killed_runs_are_removed_and_a_live_runs_part_is_kept(tmp_path, frames):
    out = tmp_path / "o.mp4"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out.with_name(f".o.mp4.{dead.pid}-0a1b2c.part.mp4")
    stale_video = out.with_name(f".o.mp4.{dead.pid}-0a1b2c.part.video.mp4")
    live = out.with_name(f".o.mp4.{os.getppid()}-3d4e5f.part.mp4")
    for path in (stale, stale_video, live):
        path.write_bytes(b"half written")
    write_video(out, frames, 8)
    assert not stale.exists() and not stale_video.exists() and live.exists()
    assert part_path(out).name.startswith(f".o.mp4.{os.getpid()}-")


def test_a_rotated_phone_clip_is_read_upright(tmp_path):
    plain = tmp_path / "plain.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=12:duration=0.5", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", plain)  # fmt: skip
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", plain, "-c", "copy", rotated)
    info, video = probe_video(rotated), read_video(rotated)
    assert info.rotation == 90 and info.size == (48, 64) and video.size == (48, 64)
    assert np.array_equal(video.frames, np.rot90(read_video(plain).frames, 1, axes=(1, 2)))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing" / "o.mp4", "does not exist"),
        (lambda d: (d / "file").write_text("x") and d / "file" / "o.mp4", "is a file, not a folder"),
        (lambda d: d / ("x" * 300 + ".mp4"), "too long"),
        (lambda d: d / "o.avi", "unknown format"),
    ],
)
def test_impossible_outputs_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(VidforgeError, match=message) as e:
        check_output_path(make(tmp_path), overwrite=False)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    with pytest.raises(VidforgeError, match="not writable"):
        check_output_path(folder / "o.mp4", overwrite=False)


def test_the_output_cannot_be_the_input(tmp_path, clip_path):
    with pytest.raises(VidforgeError, match="is the input"):
        check_output_path(clip_path, overwrite=True, inputs=(clip_path,))
