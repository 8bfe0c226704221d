"""Reading video and images: the only module (with :mod:`vidforge.core.writers`) that touches media.

Frames are ``uint8`` RGB arrays of shape ``(F, H, W, 3)``. Reading uses decord, with PyAV where
decord is missing or cannot open the file; a folder of PNG frames is a video too.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidforge.errors import VidforgeError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
DEFAULT_FPS = 25.0  # frames given as an array, or a PNG folder without fps.txt, carry no fps


@dataclass(frozen=True)
class ColorInfo:
    """How a video's colours are described, in ffmpeg's names (None: not tagged), and its bit depth."""

    primaries: str | None = None
    transfer: str | None = None
    space: str | None = None
    range: str | None = None
    bits: int = 8


@dataclass
class Video:
    """Decoded frames ``(F, H, W, 3)`` uint8 RGB, upright (a rotation tag is applied), with the
    source's fps, path (for its audio) and colour description."""

    frames: np.ndarray
    fps: float
    path: Path | None = None
    has_audio: bool = False
    color: ColorInfo | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


# ----------------------------------------------------------------------------------------- reading


def check_input_file(path: str | os.PathLike, what: str = "input") -> Path:
    """One-line errors for the usual bad paths: missing, a directory, empty."""
    path = Path(path)
    if not path.exists():
        raise VidforgeError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise VidforgeError(f"{what} {str(path)!r} is a directory, not a file")
    if path.stat().st_size == 0:
        raise VidforgeError(f"{what} {str(path)!r} is empty (0 bytes)")
    return path


def has_audio(path: Path) -> bool:
    return probe_audio_codec(path) is not None


def probe_audio_codec(path: str | os.PathLike | None) -> str | None:
    """The codec name of the first audio stream (``"aac"``...), None without one or on any error."""
    if path is None or Path(path).is_dir():
        return None
    try:
        import av

        with av.open(str(path)) as container:
            return container.streams.audio[0].codec_context.name if container.streams.audio else None
    except Exception:
        return None


# AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace / AVColorRange codes -> ffmpeg names
_PRIMARIES = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "jedec-p22",
}
_TRANSFER = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
_SPACES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c"}
_RANGES = {1: "tv", 2: "pc"}  # fmt: skip


def probe_stream(path: Path) -> tuple[ColorInfo | None, int]:
    """``(colour description, display rotation in degrees counter-clockwise)`` of a video file's
    first video stream, read from its first frame with PyAV; ``(None, 0)`` when it cannot tell."""
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            bits = max((c.bits for c in frame.format.components), default=8)
            color = ColorInfo(
                _PRIMARIES.get(int(frame.color_primaries)), _TRANSFER.get(int(frame.color_trc)),
                _SPACES.get(int(frame.colorspace)), _RANGES.get(int(frame.color_range)), int(bits),
            )  # fmt: skip
            return color, int(getattr(frame, "rotation", 0) or 0) % 360
    except Exception:
        return None, 0


def upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """``(F, H, W, 3)`` frames turned as a player shows them: ``rotation`` degrees counter-clockwise
    (a phone's display matrix), as ffmpeg's autorotation does."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frames, k, axes=(1, 2))) if k else frames


@dataclass
class VideoInfo:
    """What :func:`probe_video` learns without decoding the video: frame count, fps, ``(width,
    height)`` and whether there is an audio track."""

    num_frames: int
    fps: float
    size: tuple[int, int]  # (width, height) as displayed (after the rotation tag)
    path: Path | None = None
    has_audio: bool = False
    color: ColorInfo | None = None
    rotation: int = 0  # degrees counter-clockwise applied to the decoded frames


@contextlib.contextmanager
def _native_stderr_silenced():
    """Silence what C libraries print to file descriptor 2 (decord logs "ERROR opening ..." there
    before raising), so a bad file gives our one-line error and nothing else."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _DecordSource:
    """Random access by frame index (``get_batch`` on an index range), the count from the index."""

    def __init__(self, path: Path):
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # ffmpeg's own messages
        with _native_stderr_silenced():
            self.reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        self.num_frames = len(self.reader)
        self.fps = float(self.reader.get_avg_fps())

    def chunks(self, chunk_size: int | None, max_frames: int | None, start: int = 0) -> Iterator[np.ndarray]:
        stop = self.num_frames if max_frames is None else min(self.num_frames, max_frames)
        step = chunk_size or max(stop - start, 1)
        for first in range(start, stop, step):
            with _native_stderr_silenced():
                batch = self.reader.get_batch(list(range(first, min(first + step, stop))))
            yield batch.asnumpy()


class _PyAVSource:
    """Sequential decoding; the count comes from the stream header, or a decoding pass without it."""

    def __init__(self, path: Path):
        import av

        self.path = path
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError("no video stream")
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or stream.base_rate or 0) or DEFAULT_FPS
            self._header_frames = int(stream.frames or 0)
            if container.format.name == "gif" and stream.frames and stream.duration:
                # GIF delays vary frame by frame (whole 1/100 s): the mean rate is frames / duration
                self.fps = stream.frames / float(stream.duration * stream.time_base)

    @property
    def num_frames(self) -> int:
        if self._header_frames == 0:  # GIF and some containers do not store it: count by decoding
            import av

            with av.open(str(self.path)) as container:
                self._header_frames = sum(1 for _ in container.decode(container.streams.video[0]))
        return self._header_frames

    def chunks(self, chunk_size: int | None, max_frames: int | None, start: int = 0) -> Iterator[np.ndarray]:
        import av

        frames, index = [], 0
        with av.open(str(self.path)) as container:
            for frame in container.decode(container.streams.video[0]):
                if index >= start:  # a fallback after `start` frames came from another decoder
                    frames.append(frame.to_ndarray(format="rgb24"))
                index += 1
                if chunk_size is not None and len(frames) == chunk_size:
                    yield np.stack(frames)
                    frames = []
                if max_frames is not None and index >= max_frames:
                    break
        if frames:
            yield np.stack(frames)


class _PngFolderSource:
    """A folder of PNG frames (sorted by name) with an optional ``fps.txt``, as the PNG-sequence
    writer leaves it. Every frame must have the first frame's size."""

    def __init__(self, path: Path):
        self.path = path
        self.files = sorted(path.glob("*.png"))
        self.num_frames = len(self.files)
        self.fps = _read_fps(path / "fps.txt") if (path / "fps.txt").exists() else DEFAULT_FPS
        self._size: tuple[int, ...] | None = None

    def chunks(self, chunk_size: int | None, max_frames: int | None, start: int = 0) -> Iterator[np.ndarray]:
        files = self.files[:max_frames]
        step = chunk_size or max(len(files), 1)
        for first in range(start, len(files), step):
            yield np.stack([self._frame(p) for p in files[first : first + step]])

    def _frame(self, file: Path) -> np.ndarray:
        frame = read_image(file)
        if self._size is None:
            self._size = frame.shape
        elif frame.shape != self._size:
            size = f"{self._size[1]}x{self._size[0]}"
            raise VidforgeError(
                f"video {str(self.path)!r}: frame {file.name} is {frame.shape[1]}x{frame.shape[0]}, the first is {size}"
            )
        return frame


def _read_fps(file: Path) -> float:
    """A PNG folder's ``fps.txt``: one positive number."""
    text = file.read_text(errors="replace").strip()
    try:
        fps = float(text)
    except ValueError:
        raise VidforgeError(f"{str(file)!r}: expected a frame rate, got {text[:20]!r}") from None
    if not math.isfinite(fps) or fps <= 0:
        raise VidforgeError(f"{str(file)!r}: the frame rate must be a positive number (got {text[:20]!r})")
    return fps


def _is_png_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.png"))


def media_path(path: str | os.PathLike) -> Path:
    """The file or folder a path names: a numbered-frame pattern (``DIR/%05d.png``) is its folder."""
    path = Path(path)
    return path.parent if "%" in path.name and path.suffix.lower() == ".png" else path


def check_video_path(path: str | os.PathLike, what: str = "video") -> Path:
    """The one-line errors every reader gives before decoding: missing, directory, empty, image.
    A numbered-frame pattern (``DIR/%05d.png``) names its folder."""
    path = media_path(path)
    try:
        if not _is_png_folder(path):
            check_input_file(path, "video")
            if path.suffix.lower() in IMAGE_SUFFIXES - {".gif"}:
                raise VidforgeError(f"video {str(path)!r} is an image file, not a video")
    except VidforgeError as e:
        raise (e if what == "video" else VidforgeError(f"{what}: {e}")) from None
    return path


def _first_line(error: Exception) -> str:
    return first_line(error)[:120] or type(error).__name__


def _decode_error(path: Path, errors: list[str]) -> VidforgeError:
    detail = f" ({errors[-1]})" if errors else ""
    return VidforgeError(f"cannot decode video {str(path)!r}: not a readable video file{detail}")


def _decoded_chunks(
    path: Path, chunk_size: int | None, max_frames: int | None
) -> Iterator[tuple[np.ndarray, float]]:
    """Yield ``(chunk (f, H, W, 3) uint8, fps)``: decord first, PyAV where decord is missing or fails.

    A decoder that fails part way hands over to the next one at the first frame not yet yielded.
    ``chunk_size=None`` decodes everything in one chunk. Call :func:`check_video_path` first.
    """
    if _is_png_folder(path):
        source = _PngFolderSource(path)
        for chunk in source.chunks(chunk_size, max_frames):
            yield chunk, source.fps
        return
    errors, done = [], 0
    rotation = probe_stream(path)[1]
    for open_source in (_DecordSource, _PyAVSource):
        try:
            source = open_source(path)
            for chunk in source.chunks(chunk_size, max_frames, start=done):
                yield upright(chunk, rotation), source.fps
                done += len(chunk)
            if done == 0:
                raise ValueError("no frames")
            return
        except ImportError:
            continue
        except Exception as e:  # decord and PyAV raise many types for bad files
            errors.append(_first_line(e))
    raise _decode_error(path, errors)


def _open_source(path: Path):
    """The decoder :func:`probe_video` reads metadata from: the first that opens and decodes frame 0."""
    if _is_png_folder(path):
        return _PngFolderSource(path), None
    errors = []
    for open_source in (_DecordSource, _PyAVSource):
        try:
            source = open_source(path)
            first = next(source.chunks(1, 1), None)
            if first is None:
                raise ValueError("no frames")
            return source, first[0]
        except ImportError:
            continue
        except Exception as e:  # decord and PyAV raise many types for bad files
            errors.append(_first_line(e))
    raise _decode_error(path, errors)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps, size and audio of a video file (or PNG folder) without decoding it whole.

    Decodes frame 0 only (so a file that does not decode at all fails here, before any model
    loads). The count is decord's frame index, or PyAV's stream header; when the header lacks it
    (GIF, some streams) PyAV counts by one decoding pass, chunk by chunk (time, not memory).
    Raises the same one-line :class:`VidforgeError` as :func:`read_video`.
    """
    path = check_video_path(path)
    source, first = _open_source(path)
    if first is None:  # PNG folder
        first = read_image(source.files[0])
    try:
        num_frames = source.num_frames
    except Exception as e:  # the PyAV counting pass hit a damaged packet
        raise _decode_error(path, [_first_line(e)]) from e
    if path.is_dir():
        return VideoInfo(num_frames, source.fps, (int(first.shape[1]), int(first.shape[0])), path)
    color, rotation = probe_stream(path)
    height, width = upright(first[None], rotation).shape[1:3]
    return VideoInfo(
        num_frames, source.fps, (int(width), int(height)), path, has_audio(path), color, rotation
    )


def iter_frames(
    path: str | os.PathLike,
    chunk_size: int,
    max_frames: int | None = None,
    resize: tuple[int, int] | None = None,
) -> Iterator[np.ndarray]:
    """Decode a video file (or a folder of PNG frames) chunk by chunk: ``(f, H, W, 3)`` uint8 arrays
    of ``chunk_size`` frames (the last may be shorter), so memory is bounded by ``chunk_size``.

    Bad paths (missing, directory, empty, an image) raise at the call; undecodable data raises the
    one-line :class:`VidforgeError` of :func:`read_video` when iteration reaches it. The frames are
    exactly those of :func:`read_video` with the same ``max_frames`` and ``resize``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    path = check_video_path(path)
    chunks = (chunk for chunk, _ in _decoded_chunks(path, chunk_size, max_frames))
    return (chunk if resize is None else resize_frames(chunk, resize) for chunk in chunks)


def read_video(
    path: str | os.PathLike,
    max_frames: int | None = None,
    resize: tuple[int, int] | None = None,
) -> Video:
    """Decode a video file (or a folder of PNG frames) into :class:`Video`, all in memory (see
    :func:`iter_frames` for long videos).

    ``resize`` is ``(width, height)``. Raises :class:`VidforgeError` naming the file when it cannot
    be decoded (corrupt, truncated, not a video).
    """
    path = check_video_path(path)
    chunks = list(_decoded_chunks(path, None, max_frames))
    frames = chunks[0][0] if len(chunks) == 1 else np.concatenate([chunk for chunk, _ in chunks])
    fps = chunks[-1][1]
    folder = _is_png_folder(path)
    color = None if folder else probe_stream(path)[0]
    video = Video(frames, fps, path, has_audio=not folder and has_audio(path), color=color)
    if resize is not None:
        video.frames = resize_frames(video.frames, resize)
    return video


VideoInput = str | os.PathLike | np.ndarray | Video  # what every command accepts as a video
ImageInput = str | os.PathLike | np.ndarray  # ... and as an image


def load_video(
    video: VideoInput,
    max_frames: int | None = None,
    resize: tuple[int, int] | None = None,
    what: str = "video",
) -> Video:
    """A path (video file or PNG folder), ``(F, H, W, 3)`` uint8 frames or a :class:`Video`, as a
    :class:`Video` (first ``max_frames``, resized to ``resize = (width, height)``). Errors name ``what``."""
    if isinstance(video, Video | np.ndarray):
        if isinstance(video, np.ndarray):
            video = Video(check_frames(video, what), DEFAULT_FPS)
        frames = video.frames[:max_frames]
        if resize is not None:
            frames = resize_frames(frames, resize)
        return Video(frames, video.fps, video.path, video.has_audio)
    try:
        return read_video(video, max_frames, resize)
    except VidforgeError as e:
        raise (e if what == "video" else VidforgeError(f"{what}: {e}")) from e


def load_image(image: ImageInput, what: str = "image") -> np.ndarray:
    """A path or an ``(H, W, 3)`` uint8 array -> ``(H, W, 3)`` uint8, with one-line errors naming ``what``."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise VidforgeError(f"{what}: expected an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
        return image
    try:
        return read_image(image)
    except VidforgeError as e:
        raise (e if what == "image" else VidforgeError(f"{what}: {e}")) from e


def check_frames(frames: np.ndarray, what: str = "video") -> np.ndarray:
    """``frames`` must be ``(F, H, W, 3)`` uint8 with at least one frame."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VidforgeError(
            f"{what}: expected an (F, H, W, 3) uint8 array, got {frames.dtype} {frames.shape}"
        )
    return frames


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG/WebP image as ``(H, W, 3)`` uint8 RGB."""
    path = check_input_file(path, "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        limit = Image.MAX_IMAGE_PIXELS // 1_000_000
        raise VidforgeError(
            f"image {str(path)!r} is too large (over {limit} megapixels): shrink it first"
        ) from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise VidforgeError(f"cannot read image {str(path)!r}: not a readable image file") from e


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(F, H, W, 3)`` frames to ``size = (width, height)`` (area filter when shrinking)."""
    import cv2

    width, height = size
    if frames.shape[2] == width and frames.shape[1] == height:
        return frames
    shrink = width * height < frames.shape[1] * frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def resize_cover(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(F, H, W, 3)`` frames so they cover ``size = (width, height)`` with the aspect ratio
    kept, then centre-crop to exactly that size: no padding, no distortion."""
    width, height = size
    h0, w0 = frames.shape[1:3]
    scale = max(height / h0, width / w0)
    new_w, new_h = max(width, round(w0 * scale)), max(height, round(h0 * scale))
    resized = resize_frames(frames, (new_w, new_h))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(resized[:, top : top + height, left : left + width])
