"""Video I/O: round trips, audio, atomic writes, and one-line errors for bad files."""

import subprocess

import numpy as np
import pytest

from vidforge.core.video_io import read_image, read_video
from vidforge.core.writers import get_writer, write_video
from vidforge.errors import VidforgeError


@pytest.fixture
def clip_with_audio(tmp_path):
    """10 frames, 10 fps, 64x48, with a 1 s sine audio track, made by the bundled ffmpeg."""
    import imageio_ffmpeg

    path = tmp_path / "with_audio.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-f", "lavfi", "-i", "sine=frequency=440"]
    cmd += ["-t", "1", "-pix_fmt", "yuv420p", "-c:v", "libx264", "-c:a", "aac", str(path)]
    subprocess.run(cmd, check=True)
    return path


def test_mp4_round_trip_keeps_count_fps_size(tmp_path, frames):
    out = write_video(tmp_path / "out.mp4", frames, fps=12)
    video = read_video(out)
    assert video.num_frames == len(frames)
    assert video.fps == pytest.approx(12)
    assert video.size == (64, 64)
    assert not video.has_audio
    # H.264 at crf 18 is lossy; a busy random colour texture loses chroma detail, but stays close.
    assert np.abs(video.frames.astype(int) - frames).mean() < 20


def test_mp4_copies_source_audio_and_keeps_odd_sizes(tmp_path, clip_with_audio):
    source = read_video(clip_with_audio)
    assert source.has_audio and source.num_frames == 10 and source.fps == pytest.approx(10)
    out = write_video(
        tmp_path / "out.mp4", source.frames[:, :47, :63], source.fps, audio_from=clip_with_audio
    )
    video = read_video(out)
    assert video.has_audio
    assert video.size == (63, 47)  # the exact size (4:4:4 where 4:2:0 cannot hold an odd size)
    assert video.num_frames == 10


def test_gif_and_png_sequence_round_trip(tmp_path, frames):
    gif = read_video(write_video(tmp_path / "out.gif", frames, fps=10))
    assert gif.num_frames == len(frames) and gif.size == (64, 64)
    seq = read_video(write_video(tmp_path / "out" / "%05d.png", frames, fps=10))
    assert seq.fps == 10 and np.array_equal(seq.frames, frames)  # PNG is lossless


def test_max_frames_and_resize(clip_path):
    video = read_video(clip_path, max_frames=3, resize=(32, 16))
    assert video.frames.shape == (3, 16, 32, 3)


def test_failed_write_leaves_no_file(tmp_path, frames):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), get_writer(target, fps=8) as writer:
        writer.write(frames[:2])
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_replaced_only_on_success(tmp_path, frames):
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), get_writer(target, fps=8) as writer:
        writer.write(frames)
        raise RuntimeError("crash")
    assert target.read_bytes() == b"previous result"
    write_video(target, frames, fps=8)
    assert read_video(target).num_frames == len(frames)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
        (lambda p: (p.write_bytes(np.random.default_rng(0).bytes(5000)), p)[1], "cannot decode video"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
    ],
    ids=["missing", "empty", "corrupt", "directory"],
)
def test_bad_video_files_raise_one_line_errors(tmp_path, make, message):
    path = make(tmp_path / "bad.mp4")
    with pytest.raises(VidforgeError, match=message) as info:
        read_video(path)
    assert "\n" not in str(info.value)


def test_truncated_video_is_refused(tmp_path, clip_path):
    data = clip_path.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(VidforgeError, match="cannot decode video"):
        read_video(truncated)


def test_image_instead_of_video(tmp_path, frames):
    from PIL import Image

    Image.fromarray(frames[0]).save(tmp_path / "still.png")
    with pytest.raises(VidforgeError, match="is an image file"):
        read_video(tmp_path / "still.png")
    assert read_image(tmp_path / "still.png").shape == (64, 64, 3)
    (tmp_path / "fake.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(VidforgeError, match="cannot read image"):
        read_image(tmp_path / "fake.jpg")


def test_failure_while_finishing_leaves_no_temp_file(tmp_path, frames, monkeypatch):
    from PIL import Image

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    writer = get_writer(tmp_path / "out.gif", fps=8)
    writer.write(frames)
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_resize_cover_keeps_aspect_and_centre_crops():
    from vidforge.core.video_io import resize_cover

    # a 40x20 image whose left and right quarters are red: covering 20x20 scales by 1 and crops
    # the middle, so no red is left; stretching would have kept it.
    image = np.zeros((1, 20, 40, 3), np.uint8)
    image[:, :, :10, 0] = image[:, :, 30:, 0] = 255
    out = resize_cover(image, (20, 20))
    assert out.shape == (1, 20, 20, 3) and out[..., 0].max() == 0
    assert resize_cover(image, (80, 40)).shape == (1, 40, 80, 3)  # upscale, same aspect
