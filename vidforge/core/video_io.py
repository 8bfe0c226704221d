"""Video and image I/O: the only module (with the writers) that touches media files.

Frames are ``uint8`` RGB arrays of shape ``(F, H, W, 3)``. Reading uses decord, with PyAV where
decord is missing or cannot open the file. Writing goes through imageio-ffmpeg (H.264, yuv420p)
for MP4, Pillow for GIF and PNG sequences, always to a temporary name that is renamed on success.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vidforge.errors import VidforgeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".gif", ".png"}  # ".png" as output means a PNG sequence folder


@dataclass
class Video:
    """Decoded frames ``(F, H, W, 3)`` uint8 RGB, with the source's fps and path (for its audio)."""

    frames: np.ndarray
    fps: float
    path: Path | None = None
    has_audio: bool = False

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


def _has_audio(path: Path) -> bool:
    try:
        import av

        with av.open(str(path)) as container:
            return len(container.streams.audio) > 0
    except Exception:
        return False


def _read_decord(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    n = len(reader)
    if max_frames is not None:
        n = min(n, max_frames)
    if n == 0:
        raise ValueError("no frames")
    frames = reader.get_batch(list(range(n))).asnumpy()
    return frames, float(reader.get_avg_fps())


def _read_pyav(path: Path, max_frames: int | None) -> tuple[np.ndarray, float]:
    import av

    frames = []
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.base_rate or 0) or 25.0
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError("no frames")
    return np.stack(frames), fps


def read_video(
    path: str | os.PathLike,
    max_frames: int | None = None,
    resize: tuple[int, int] | None = None,
) -> Video:
    """Decode a video file (or a folder of PNG frames) into :class:`Video`.

    ``resize`` is ``(width, height)``. Raises :class:`VidforgeError` naming the file when it cannot
    be decoded (corrupt, truncated, not a video).
    """
    path = Path(path)
    if path.is_dir() and any(path.glob("*.png")):
        frames = np.stack([read_image(p) for p in sorted(path.glob("*.png"))[:max_frames]])
        fps_file = path / "fps.txt"
        fps = float(fps_file.read_text()) if fps_file.exists() else 25.0
        video = Video(frames, fps, path, has_audio=False)
    else:
        check_input_file(path, "video")
        if path.suffix.lower() in IMAGE_SUFFIXES - {".gif"}:
            raise VidforgeError(f"video {str(path)!r} is an image file, not a video")
        errors = []
        frames = fps = None
        for reader in (_read_decord, _read_pyav):
            try:
                frames, fps = reader(path, max_frames)
                break
            except ImportError:
                continue
            except Exception as e:  # decord and PyAV raise many types for bad files
                errors.append(str(e).splitlines()[0][:120] if str(e) else type(e).__name__)
        if frames is None:
            detail = f" ({errors[-1]})" if errors else ""
            raise VidforgeError(f"cannot decode video {str(path)!r}: not a readable video file{detail}")
        video = Video(frames, fps, path, has_audio=_has_audio(path))
    if resize is not None:
        video.frames = resize_frames(video.frames, resize)
    return video


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG/WebP image as ``(H, W, 3)`` uint8 RGB."""
    path = check_input_file(path, "image")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
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


# ----------------------------------------------------------------------------------------- writing


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to clobber an existing output, and refuse formats we cannot write."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VidforgeError(
            f"output {str(path)!r}: unknown format {path.suffix or '(none)'!r} (use .mp4, .gif or .png for a PNG sequence)"
        )
    if path.exists() and not overwrite:
        raise VidforgeError(f"output {str(path)!r} already exists (pass --overwrite to replace it)")
    if not path.parent.exists():
        raise VidforgeError(f"output folder {str(path.parent)!r} does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    A crash, an exception or Ctrl-C inside the block removes the temporary file or folder, so a
    half-written output never appears under the final name.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.unlink()
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


class VideoWriter:
    """Stream frames to MP4, GIF or a PNG sequence (chosen by the suffix), atomically.

    ``write()`` takes ``(F, H, W, 3)`` uint8 chunks so long videos never sit in memory whole.
    ``close()`` renames the finished file onto ``path``; ``abort()`` (or an exception inside a
    ``with`` block) deletes it. ``audio_from`` copies that file's audio track into an MP4.
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None):
        self.path = Path(path)
        self.fps = float(fps)
        self.audio_from = (
            Path(audio_from) if audio_from is not None and _has_audio(Path(audio_from)) else None
        )
        self.kind = {".mp4": "mp4", ".gif": "gif", ".png": "png"}[self.path.suffix.lower()]
        self.num_frames = 0
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._ffmpeg = None
        self._gif_frames: list[Image.Image] = []
        self._size: tuple[int, int] | None = None
        if self.kind == "png":
            self._tmp.mkdir()

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (F, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
        if self._size is None:
            self._size = (frames.shape[2], frames.shape[1])
        for frame in frames:
            self._write_frame(frame)
            self.num_frames += 1

    def _write_frame(self, frame: np.ndarray) -> None:
        if self.kind == "png":
            Image.fromarray(frame).save(self._tmp / f"{self.num_frames:05d}.png")
        elif self.kind == "gif":
            self._gif_frames.append(Image.fromarray(frame))
        else:
            if self._ffmpeg is None:
                self._ffmpeg = self._open_ffmpeg(frame.shape[1], frame.shape[0])
            self._ffmpeg.send(_pad_even(frame))

    def _open_ffmpeg(self, width: int, height: int):
        import imageio_ffmpeg

        # H.264 + yuv420p needs even sizes: pad by one pixel (edge) instead of resampling.
        size = (width + width % 2, height + height % 2)
        output_params = ["-movflags", "+faststart"]
        if self.audio_from is not None:
            output_params += ["-map", "0:v:0", "-map", "1:a:0?", "-shortest"]
        writer = imageio_ffmpeg.write_frames(
            str(self._tmp),
            size,
            fps=self.fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,
            output_params=output_params + ["-crf", "18", "-f", "mp4"],
            macro_block_size=1,
            audio_path=str(self.audio_from) if self.audio_from else None,
            audio_codec="aac" if self.audio_from else None,
        )
        writer.send(None)
        return writer

    def close(self) -> Path:
        if self.num_frames == 0:
            self.abort()
            raise VidforgeError(f"no frames to write to {str(self.path)!r}")
        if self.kind == "mp4":
            self._ffmpeg.close()
        elif self.kind == "gif":
            self._gif_frames[0].save(
                self._tmp,
                save_all=True,
                append_images=self._gif_frames[1:],
                duration=max(1, round(1000 / self.fps)),
                loop=0,
            )
        else:
            (self._tmp / "fps.txt").write_text(f"{self.fps}\n")
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        if self._ffmpeg is not None:
            with contextlib.suppress(Exception):
                self._ffmpeg.close()
        with contextlib.suppress(Exception):
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _pad_even(frame: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio_from: str | os.PathLike | None = None,
) -> Path:
    """Write all ``frames`` at once (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps, audio_from=audio_from) as writer:
        writer.write(frames)
    return Path(path)
