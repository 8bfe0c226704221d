"""Streaming video reads: probe_video and iter_frames give read_video's frames chunk by chunk,
with its one-line errors, and never decode ahead of what is asked."""

import subprocess

import numpy as np
import pytest
from conftest import textured_frames

import vidforge.core.video_io as video_io
from vidforge.core.video_io import iter_frames, probe_video, read_video
from vidforge.core.writers import write_video
from vidforge.errors import VidforgeError


@pytest.fixture
def clip20(tmp_path):
    """20 frames, 64x48, 12 fps (one H.264 GOP, so chunks past frame 0 are not keyframes)."""
    return write_video(tmp_path / "clip20.mp4", textured_frames(20, 48, 64), fps=12)


def chunk_sizes(chunks):
    return [len(chunk) for chunk in chunks]


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 20, 50])
def test_chunks_concatenate_to_read_video(clip20, chunk_size):
    chunks = list(iter_frames(clip20, chunk_size))
    expected = [chunk_size] * (20 // chunk_size) + ([20 % chunk_size] if 20 % chunk_size else [])
    assert chunk_sizes(chunks) == expected
    assert all(chunk.dtype == np.uint8 and chunk.shape[1:] == (48, 64, 3) for chunk in chunks)
    assert np.array_equal(np.concatenate(chunks), read_video(clip20).frames)  # bit-exact


def test_max_frames_and_resize_match_read_video(clip20):
    chunks = list(iter_frames(clip20, 3, max_frames=7, resize=(40, 24)))
    assert chunk_sizes(chunks) == [3, 3, 1]
    assert np.array_equal(np.concatenate(chunks), read_video(clip20, 7, (40, 24)).frames)


def test_gif_and_png_folder_stream(tmp_path):
    frames = textured_frames(5, 32, 32)
    gif = write_video(tmp_path / "a.gif", frames, fps=10)  # decord cannot open GIF: PyAV decodes it
    assert chunk_sizes(iter_frames(gif, 2)) == [2, 2, 1]
    assert np.array_equal(np.concatenate(list(iter_frames(gif, 2))), read_video(gif).frames)
    folder = write_video(tmp_path / "seq" / "%05d.png", frames, fps=7)
    chunks = list(iter_frames(folder, 2, max_frames=3))
    assert chunk_sizes(chunks) == [2, 1] and np.array_equal(np.concatenate(chunks), frames[:3])  # lossless
    info = probe_video(folder)
    assert (info.num_frames, info.fps, info.size, info.has_audio) == (5, 7.0, (32, 32), False)


def test_probe_reads_count_fps_size_and_audio(tmp_path, clip20):
    info = probe_video(clip20)
    assert (info.num_frames, info.size, info.has_audio) == (20, (64, 48), False)
    assert info.fps == pytest.approx(12)
    import imageio_ffmpeg

    with_audio = tmp_path / "audio.mp4"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(clip20), "-f", "lavfi"]
    cmd += [
        "-i",
        "sine=frequency=440:duration=1",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        str(with_audio),
    ]
    subprocess.run(cmd, check=True)
    assert probe_video(with_audio).has_audio


def test_pyav_counts_frames_by_decoding_when_the_header_lacks_them(tmp_path):
    gif = write_video(tmp_path / "a.gif", textured_frames(6, 16, 16), fps=10)
    source = video_io._PyAVSource(gif)
    source._header_frames = 0  # as for containers that store no frame count
    assert source.num_frames == 6


def test_pyav_alone_gives_the_same_frames(monkeypatch, clip20):
    expected = read_video(clip20).frames

    def no_decord(self, path):
        raise ImportError("decord missing")

    monkeypatch.setattr(video_io._DecordSource, "__init__", no_decord)
    assert probe_video(clip20).num_frames == 20
    chunks = list(iter_frames(clip20, 6))
    assert chunk_sizes(chunks) == [6, 6, 6, 2]
    assert np.array_equal(np.concatenate(chunks), expected)


def test_decoder_failing_part_way_hands_over_at_the_next_frame(monkeypatch, clip20):
    expected = read_video(clip20).frames
    real_chunks = video_io._DecordSource.chunks

    def failing_chunks(self, chunk_size, max_frames, start=0):
        for i, chunk in enumerate(real_chunks(self, chunk_size, max_frames, start)):
            if i == 2:
                raise RuntimeError("decord lost its place")
            yield chunk

    monkeypatch.setattr(video_io._DecordSource, "chunks", failing_chunks)
    chunks = list(iter_frames(clip20, 4))
    assert chunk_sizes(chunks) == [4, 4, 4, 4, 4]  # 2 from decord, 3 from PyAV from frame 8 on
    assert np.array_equal(np.concatenate(chunks), expected)


def test_reads_lazily_one_chunk_at_a_time(monkeypatch, clip20):
    batches = []
    real_init = video_io._DecordSource.__init__

    def recording_init(self, path):
        real_init(self, path)
        get_batch = self.reader.get_batch

        class Reader:  # decord's reader, recording each get_batch's indices
            def get_batch(self, indices):
                batches.append(list(indices))
                return get_batch(indices)

        self.reader = Reader()

    monkeypatch.setattr(video_io._DecordSource, "__init__", recording_init)
    chunks = iter_frames(clip20, 6)
    assert batches == []  # nothing decoded before it is asked for
    next(chunks)
    assert batches == [list(range(6))]
    next(chunks)
    assert batches[-1] == list(range(6, 12))
    list(chunks)
    assert batches[2:] == [list(range(12, 18)), [18, 19]]


def _bad_inputs(tmp_path, clip20):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    data = clip20.read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (tmp_path / "folder").mkdir()
    from PIL import Image

    Image.fromarray(textured_frames(1)[0]).save(tmp_path / "still.png")
    return {
        "missing": (tmp_path / "nope.mp4", "does not exist"),
        "empty": (tmp_path / "empty.mp4", "is empty"),
        "corrupt": (tmp_path / "corrupt.mp4", "cannot decode video"),
        "truncated": (tmp_path / "truncated.mp4", "cannot decode video"),
        "directory": (tmp_path / "folder", "is a directory"),
        "image": (tmp_path / "still.png", "is an image file"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "truncated", "directory", "image"])
def test_bad_inputs_give_read_videos_one_line_errors(tmp_path, clip20, case):
    path, message = _bad_inputs(tmp_path, clip20)[case]
    with pytest.raises(VidforgeError, match=message) as from_read:
        read_video(path)
    with pytest.raises(VidforgeError, match=message) as from_probe:
        probe_video(path)
    with pytest.raises(VidforgeError, match=message) as from_iter:
        list(iter_frames(path, 4))
    assert str(from_probe.value) == str(from_iter.value) == str(from_read.value)
    for info in (from_read, from_probe, from_iter):
        assert "\n" not in str(info.value)


def test_path_errors_raise_at_the_call_not_at_the_first_chunk(tmp_path):
    with pytest.raises(VidforgeError, match="does not exist"):
        iter_frames(tmp_path / "nope.mp4", 4)
    with pytest.raises(ValueError, match="chunk_size"):
        iter_frames(tmp_path / "nope.mp4", 0)
