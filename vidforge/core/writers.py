"""Writing frames: one writer registry (whisper's ``get_writer``) and the sink every command streams to.

:data:`WRITERS` maps an output suffix to a :class:`Writer` class. The base class owns what every
format shares: the temporary name beside the output, renamed only when the file is complete, and
the clean-up when anything fails; subclasses only encode frames. A :class:`Sink` is where a
command's frames go: a writer, or memory when there is no output path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vidforge.core.video_io import has_audio
from vidforge.errors import VidforgeError


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


class AbortOnError:
    """As a context manager: ``close()`` on success, ``abort()`` on any exception (Ctrl-C included)."""

    def close(self):
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class Writer(AbortOnError):
    """Stream ``(F, H, W, 3)`` uint8 chunks to ``path`` under a temporary name.

    ``close()`` finishes the file and renames it onto ``path``; ``abort()`` (or an exception inside
    a ``with`` block) deletes it. Subclasses implement :meth:`_write_frame` and :meth:`_finish`.
    """

    def __init__(self, path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None):
        self.path = Path(path)
        self.fps = float(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.num_frames = 0
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (F, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
        for frame in frames:
            self._write_frame(frame)
            self.num_frames += 1

    def _write_frame(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Complete the temporary file (flush the encoder, write the container)."""

    def _release(self) -> None:
        """Let go of encoder resources after a failure."""

    def close(self) -> Path:
        """Finish the file and rename it onto ``path``; if finishing fails, nothing is left behind."""
        if self.num_frames == 0:
            self.abort()
            raise VidforgeError(f"no frames to write to {str(self.path)!r}")
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._release()
        with contextlib.suppress(Exception):
            self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


class Mp4Writer(Writer):
    """H.264, yuv420p, CRF 18 through the bundled ffmpeg (imageio-ffmpeg); the source's audio copied
    in when ``audio_from`` has a track. Odd sizes are padded by one edge pixel (yuv420p needs even)."""

    def __init__(self, path, fps, audio_from=None):
        super().__init__(path, fps, audio_from)
        if self.audio_from is not None and not has_audio(self.audio_from):
            self.audio_from = None
        self._ffmpeg = None

    def _write_frame(self, frame: np.ndarray) -> None:
        if self._ffmpeg is None:
            self._ffmpeg = self._open(frame.shape[1], frame.shape[0])
        self._ffmpeg.send(pad_even(frame))

    def _open(self, width: int, height: int):
        import imageio_ffmpeg

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

    def _finish(self) -> None:
        self._ffmpeg.close()

    def _release(self) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.close()


class GifWriter(Writer):
    """An animated GIF (Pillow), looping; frames are held until ``close()`` (GIFs are short)."""

    def __init__(self, path, fps, audio_from=None):
        super().__init__(path, fps, None)
        self._frames: list[Image.Image] = []

    def _write_frame(self, frame: np.ndarray) -> None:
        self._frames.append(Image.fromarray(frame))

    def _finish(self) -> None:
        duration = max(1, round(1000 / self.fps))
        self._frames[0].save(
            self._tmp, save_all=True, append_images=self._frames[1:], duration=duration, loop=0
        )


class PngSequenceWriter(Writer):
    """A folder of numbered PNG frames (``00000.png`` ...) with the fps in ``fps.txt``."""

    def __init__(self, path, fps, audio_from=None):
        super().__init__(path, fps, None)
        self._tmp.mkdir()

    def _write_frame(self, frame: np.ndarray) -> None:
        Image.fromarray(frame).save(self._tmp / f"{self.num_frames:05d}.png")

    def _finish(self) -> None:
        (self._tmp / "fps.txt").write_text(f"{self.fps}\n")


WRITERS: dict[str, type[Writer]] = {".mp4": Mp4Writer, ".gif": GifWriter, ".png": PngSequenceWriter}


def get_writer(path: str | os.PathLike, fps: float, audio_from: str | os.PathLike | None = None) -> Writer:
    """The writer for ``path``'s suffix (see :data:`WRITERS`)."""
    path = Path(path)
    cls = WRITERS.get(path.suffix.lower())
    if cls is None:
        raise VidforgeError(
            f"output {str(path)!r}: unknown format {path.suffix or '(none)'!r} ({formats_help()})"
        )
    return cls(path, fps, audio_from)


def formats_help() -> str:
    return "use .mp4, .gif or .png for a PNG sequence"


def check_output_path(path: str | os.PathLike, overwrite: bool) -> Path:
    """Refuse to clobber an existing output, formats we cannot write, and missing folders."""
    path = Path(path)
    if path.suffix.lower() not in WRITERS:
        raise VidforgeError(
            f"output {str(path)!r}: unknown format {path.suffix or '(none)'!r} ({formats_help()})"
        )
    if path.exists() and not overwrite:
        raise VidforgeError(f"output {str(path)!r} already exists (pass --overwrite to replace it)")
    if not path.parent.exists():
        raise VidforgeError(f"output folder {str(path.parent)!r} does not exist")
    return path


class Sink(AbortOnError):
    """Where a command's frames go: streamed to a :class:`Writer` when there is an output path,
    kept in memory otherwise (then :attr:`frames` holds them all).

    As a context manager it closes the file on success and aborts it (nothing left under the
    output name) on any exception.
    """

    def __init__(
        self, output: str | os.PathLike | None, fps: float, audio_from: str | os.PathLike | None = None
    ):
        self.output = Path(output) if output is not None else None
        self.fps = float(fps)
        self.writer = get_writer(self.output, fps, audio_from) if self.output is not None else None
        self._kept: list[np.ndarray] = []
        self.num_frames = 0

    def write(self, frames: np.ndarray) -> int:
        """Add ``(F, H, W, 3)`` uint8 frames; returns how many."""
        if self.writer is not None:
            self.writer.write(frames)
        else:
            self._kept.append(frames)
        self.num_frames += len(frames)
        return len(frames)

    @property
    def frames(self) -> np.ndarray | None:
        """All frames, when they were kept in memory (no output path)."""
        return np.concatenate(self._kept) if self._kept else None

    def close(self) -> Path | None:
        return self.writer.close() if self.writer is not None else None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def pad_even(frame: np.ndarray) -> np.ndarray:
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def write_video(
    path: str | os.PathLike, frames: np.ndarray, fps: float, audio_from: str | os.PathLike | None = None
) -> Path:
    """Write all ``frames`` at once (see :class:`Writer`)."""
    with get_writer(path, fps, audio_from=audio_from) as writer:
        writer.write(frames)
    return Path(path)
