"""Stylize streams its input: the same frames as the in-memory path, memory bounded in video length."""

import numpy as np
import pytest
from conftest import textured_frames, traced_peak

import vidforge.core.video_io as video_io
from vidforge.core.video_io import read_video, resize_frames
from vidforge.core.writers import write_video
from vidforge.stylize import StylizeOptions, StylizePipeline, run
from vidforge.stylize.pipeline import processing_size, rechunk
from vidforge.stylize.temporal import chunk_flows, input_flows

TINY = dict(style="ink wash", model="tiny", steps=2, device="cpu", seed=1)


@pytest.fixture(scope="module")
def pipe():
    return StylizePipeline.from_options(StylizeOptions(**TINY))


@pytest.fixture(scope="module")
def odd_clip(tmp_path_factory):
    """7 frames of 60x44 (processed at 64x48) at 10 fps, moving 1 px per frame."""
    return write_video(
        tmp_path_factory.mktemp("clip") / "odd.mp4", textured_frames(7, 44, 60, (1, 0)), fps=10
    )


def in_memory(pipe, path, options):
    """The path before streaming: decode the whole clip, resize it whole, stylize it in one call."""
    frames = read_video(path, options.max_frames, options.resize).frames
    height, width = frames.shape[1:3]
    out = pipe(resize_frames(frames, processing_size(width, height)), options)
    return resize_frames(out, (width, height))


# ------------------------------------------------------------------------------- same frames


def test_chunk_flows_with_the_carried_frame_equal_whole_video_flows():
    frames = textured_frames(5, 32, 32, shift=(2, 1))
    whole = input_flows(frames)
    for start in range(0, 5, 2):
        previous = frames[start - 1] if start else None
        chunk = chunk_flows(frames[start : start + 2], start, previous)
        assert chunk.indices == list(range(start, min(start + 2, 5)))
        assert np.array_equal(chunk.flow, whole.flow[start : start + 2])
        assert np.array_equal(chunk.valid, whole.valid[start : start + 2])
    assert whole.valid[3].mean() > 0.5  # real flow across the chunk boundary, not zeros
    with pytest.raises(ValueError, match="previous input frame"):
        chunk_flows(frames[2:4], 2, None)


def test_rechunk_gives_exact_sizes_in_order():
    frames = textured_frames(7, 8, 8)
    pieces = [frames[:1], frames[1:4], frames[4:5], frames[5:]]
    chunks = list(rechunk(iter(pieces), 3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    assert np.array_equal(np.concatenate(chunks), frames)
    same = [frames[:3], frames[3:6], frames[6:]]
    assert all(a is b for a, b in zip(rechunk(iter(same), 3), same, strict=True))  # no copies
    assert [len(c) for c in rechunk(frames, 4)] == [4, 3]


def test_stream_of_irregular_chunks_equals_the_array_call(pipe):
    frames = textured_frames(5, 32, 32, shift=(1, 0))
    options = StylizeOptions(**TINY, batch_frames=2)
    pieces = iter([frames[:1], frames[1:4], frames[4:]])
    streamed = np.concatenate(list(pipe.stream(pieces, options)))
    assert np.array_equal(streamed, pipe(frames, options))


@pytest.mark.parametrize(
    "extra",
    [
        dict(batch_frames=3),  # 3 does not divide 7
        dict(batch_frames=2, max_frames=5),
        dict(batch_frames=4, resize=(40, 24)),
        dict(batch_frames=1, max_frames=3, fuse_window=(0.0, 1.0), fuse_strength=1.0),
    ],
    ids=["b3", "b2-max5", "b4-resize", "b1-fuse-all"],
)
def test_streamed_run_equals_in_memory_path(pipe, odd_clip, extra):
    options = StylizeOptions(**TINY, **extra)
    expected = in_memory(pipe, odd_clip, options)
    result = run(odd_clip, options, pipeline=pipe)
    assert result.frames.shape == expected.shape and result.num_frames == len(expected)
    assert np.array_equal(result.frames, expected)  # bit-exact
    if "max_frames" in extra or "resize" in extra:
        # a decoded Video object goes through the same chunks, --max-frames and --resize applied
        from_video = run(read_video(odd_clip), options, pipeline=pipe)
        assert np.array_equal(from_video.frames, expected)


# ------------------------------------------------------------------------------------- memory


class NoUNet(StylizePipeline):
    """The real chunk loop, flow, fusion, VAE decode and writer; only the sampling is replaced by
    the initial noise (the UNet costs the time, and sees one chunk at a time anyway)."""

    def denoise_chunk(self, chunk, indices, noise, *args):
        return noise.expand(len(indices), -1, -1, -1).clone()


def test_memory_is_bounded_in_video_length(tmp_path, stream_events):
    events = (
        stream_events  # ("read", frames) when stylize pulls a chunk, ("write", frames) when it writes one
    )
    batch, size = 3, 128
    frame_bytes = size * size * 3
    options = StylizeOptions(**{**TINY, "steps": 1}, batch_frames=batch)
    pipe = NoUNet.from_options(options)

    def peak_bytes(num_frames):
        clip = write_video(tmp_path / f"in{num_frames}.mp4", textured_frames(num_frames, size, size), fps=10)
        events.clear()
        output = tmp_path / f"out{num_frames}.mp4"
        result, peak = traced_peak(lambda: run(clip, options, output=output, pipeline=pipe, overwrite=True))
        assert result.num_frames == num_frames
        # each chunk is read only after the previous one is written: never more than one chunk of
        # input frames (plus the carried previous frame) is held
        read = written = 0
        for kind, n in events:
            if kind == "read":
                assert n <= batch
                read += n
                assert read - written <= batch
            else:
                written += n
        assert read == written == num_frames
        return peak

    # 10 frames already reach the steady state (a full chunk with a carried previous frame)
    peak_bytes(10)  # warm-up: first-call allocations (lazy imports, caches)
    short, long = peak_bytes(10), peak_bytes(40)
    assert long - short < 2 * frame_bytes, (short, long)  # the whole video would add 30 frames

    # the measurement sees whole-video arrays: decoding the long clip at once adds all 40 frames
    every, whole = traced_peak(lambda: np.concatenate(list(video_io.iter_frames(tmp_path / "in40.mp4", 40))))
    assert len(every) == 40 and whole >= 40 * frame_bytes
