"""Writing frames: one writer registry (whisper's ``get_writer``) and the sink every command streams to.

:data:`WRITERS` maps an output suffix to a :class:`Writer` class. The base class owns what every
format shares: a temporary name beside the output (``.NAME.PID.partSUFFIX``), renamed only when
the file is complete, exclusively unless ``overwrite`` (of two runs writing the same new output,
one wins and the other says so), clean-up on any failure, and removal of parts left by a killed
run. Subclasses only encode. A :class:`Sink` is where a command's frames go: a writer, or memory.

Video goes through the bundled ffmpeg (imageio-ffmpeg's binary) in two passes: frames are
encoded to exactly one video stream, then the source's audio is copied in (re-encoded only where
the container cannot hold its codec) and cut at the video's end; frames are never dropped for audio.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidforge.core.video_io import ColorInfo, probe_audio_codec
from vidforge.errors import VidforgeError

IMAGE_PATTERN = re.compile(r"%0?\d*d")  # printf frame number, e.g. %05d
MAX_NAME_BYTES = 200  # file names longer than this cannot get their temporary name (255 bytes max)


@dataclass(frozen=True)
class Codec:
    """An ffmpeg video encoder as vidforge offers it. ``pix_fmts`` are the 8-bit and 10-bit pixel
    formats; ``odd_pix_fmts`` those for odd frame sizes, which 4:2:0 and 4:2:2 cannot hold (their
    chroma planes, and the bitstream's crop units, go by pairs of pixels), so the exact size is
    kept at full chroma resolution (H.264 then needs the High 4:4:4 profile, which some hardware
    players lack)."""

    encoder: str
    pix_fmts: tuple[str, str]
    odd_pix_fmts: tuple[str, str]
    crf: tuple[int, int, int] | None  # (min, default, max) of --crf; None: no CRF (lossless or fixed)
    extra: tuple[str, ...] = ()
    odd_extra: tuple[str, ...] | None = None  # replaces ``extra`` for odd sizes


CODECS: dict[str, Codec] = {
    "h264": Codec("libx264", ("yuv420p", "yuv420p10le"), ("yuv444p", "yuv444p10le"), (0, 18, 51),
                  ("-preset", "medium")),
    "h265": Codec("libx265", ("yuv420p", "yuv420p10le"), ("yuv444p", "yuv444p10le"), (0, 22, 51),
                  ("-preset", "medium", "-x265-params", "log-level=error")),
    "vp9": Codec("libvpx-vp9", ("yuv420p", "yuv420p10le"), ("yuv444p", "yuv444p10le"), (0, 31, 63),
                 ("-b:v", "0", "-row-mt", "1")),
    "prores": Codec("prores_ks", ("yuv422p10le", "yuv422p10le"), ("yuv444p10le", "yuv444p10le"), None,
                    ("-profile:v", "3"), ("-profile:v", "4")),
    "ffv1": Codec("ffv1", ("yuv420p", "yuv420p10le"), ("yuv444p", "yuv444p10le"), None, ("-level", "3")),
}  # fmt: skip


@dataclass(frozen=True)
class Container:
    """What a container holds: its video codecs (the first is the default) and the audio codecs it
    can take as they are (others are re-encoded to ``audio_encoder``)."""

    format: str
    codecs: tuple[str, ...]
    audio_copy: tuple[str, ...]
    audio_encoder: str = "aac"


CONTAINERS: dict[str, Container] = {
    ".mp4": Container("mp4", ("h264", "h265", "vp9"), ("aac", "mp3", "alac", "opus", "ac3")),
    ".mov": Container("mov", ("h264", "h265", "prores"), ("aac", "mp3", "alac", "pcm_s16le", "pcm_s24le")),
    ".mkv": Container("matroska", ("h264", "h265", "vp9", "ffv1", "prores"), ("*",)),
    ".webm": Container("webm", ("vp9",), ("opus", "vorbis"), "libopus"),
}


@dataclass(frozen=True)
class OutputSettings:
    """How to encode: codec (None: the container's default), CRF (None: the codec's default),
    the source's colour tags to keep, a comment tag, and whether an existing output may be replaced."""

    codec: str | None = None
    crf: int | None = None
    color: ColorInfo | None = None
    comment: str | None = None
    overwrite: bool = False


def output_settings(
    options, overwrite: bool = False, color: ColorInfo | None = None, comment=None
) -> OutputSettings:
    """The encoding settings of a run: ``options.codec`` / ``options.crf`` (a command's options),
    the source's colour description to keep, and the comment tag."""
    return OutputSettings(
        getattr(options, "codec", None), getattr(options, "crf", None), color, comment, overwrite
    )


def check_output(output, options, overwrite: bool, inputs: tuple = ()) -> Path | None:
    """:func:`check_output_path` with a run's codec and CRF (None output: nothing to check)."""
    if output is None:
        return None
    path = check_output_path(output, overwrite, getattr(options, "codec", None), inputs)
    check_crf(getattr(options, "codec", None), getattr(options, "crf", None), path.suffix.lower())
    return path


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------------------- checks


def is_image_pattern(path: str | os.PathLike) -> bool:
    return bool(IMAGE_PATTERN.search(Path(path).name))


def output_kind(path: Path) -> str:
    """``".mp4"``... for a video container, ``".gif"``, or ``"pattern"`` for ``DIR/%05d.png``."""
    suffix = path.suffix.lower()
    if is_image_pattern(path) and suffix == ".png":
        return "pattern"
    if suffix == ".png":
        raise VidforgeError(
            f"output {str(path)!r}: a PNG sequence is written as a numbered pattern, e.g. "
            f"{str(path.with_suffix('') / '%05d.png')!r}"
        )
    if suffix in CONTAINERS or suffix == ".gif":
        return suffix
    raise VidforgeError(f"output {str(path)!r}: unknown format {suffix or '(none)'!r} ({formats_help()})")


def formats_help() -> str:
    return "use .mp4, .mov, .mkv, .webm, .gif, or DIR/%05d.png for numbered PNG frames"


def check_output_path(
    path: str | os.PathLike, overwrite: bool, codec: str | None = None, inputs: tuple = ()
) -> Path:
    """Every reason an output cannot be written, as one-line errors, before any work starts:
    format and codec, an existing output (``overwrite``: a regular file only, never a directory),
    the output being one of the ``inputs``, and a folder that is missing, a file or read-only."""
    path = Path(path)
    # os.path.isdir, not Path.is_dir: on Python 3.11 the latter raises for a name over NAME_MAX
    if os.path.isdir(path) and not path.is_symlink():
        raise VidforgeError(f"output {str(path)!r} is an existing folder; give a file name")
    kind = output_kind(path)
    if codec is not None:
        check_codec(path, kind, codec)
    target = path.parent if kind == "pattern" else path
    folder = target.parent
    if len(target.name.encode()) > MAX_NAME_BYTES:
        raise VidforgeError(
            f"output {str(path)!r}: the file name is too long (at most {MAX_NAME_BYTES} bytes)"
        )
    for item in inputs:
        if item is not None and isinstance(item, str | os.PathLike) and _same_file(Path(item), target):
            raise VidforgeError(f"output {str(path)!r} is the input: choose another output name")
    if kind == "pattern":
        _check_pattern_target(path, overwrite)
    elif target.is_dir():
        raise VidforgeError(f"output {str(path)!r} is an existing folder; give a file name")
    elif target.exists() and not overwrite:
        raise VidforgeError(f"output {str(path)!r} already exists (pass --overwrite to replace it)")
    _check_folder(folder, path)
    return path


def check_codec(path: Path, kind: str, codec: str) -> None:
    if codec not in CODECS:
        raise VidforgeError(f"--codec {codec!r}: unknown codec (choose from {', '.join(CODECS)})")
    if kind not in CONTAINERS:
        raise VidforgeError(f"--codec applies to video files (.mp4, .mov, .mkv, .webm), not {str(path)!r}")
    allowed = CONTAINERS[kind].codecs
    if codec not in allowed:
        raise VidforgeError(
            f"--codec {codec}: a {kind} file holds {', '.join(allowed)}; use another container"
        )


def check_crf(codec: str | None, crf: int | None, suffix: str) -> None:
    """``--crf`` within the codec's range (and only for codecs with a CRF)."""
    if crf is None or suffix not in CONTAINERS:
        return
    name = codec or CONTAINERS[suffix].codecs[0]
    bounds = CODECS[name].crf
    if bounds is None:
        raise VidforgeError(f"--crf does not apply to --codec {name} (lossless or fixed quality)")
    if not bounds[0] <= crf <= bounds[2]:
        raise VidforgeError(f"--crf for {name} must be in [{bounds[0]}, {bounds[2]}] (got {crf})")


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        return a.exists() and b.exists() and os.path.samefile(a, b)
    return False


def _check_folder(folder: Path, path: Path) -> None:
    folder = folder if str(folder) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise VidforgeError(f"output {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if not folder.exists():
        if is_image_pattern(path) and folder.parent.is_dir():
            folder = folder.parent  # the pattern's own folder is created
        else:
            raise VidforgeError(f"output folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VidforgeError(f"output folder {str(folder)!r} is not writable")


def _check_pattern_target(path: Path, overwrite: bool) -> None:
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise VidforgeError(f"output {str(path)!r}: {str(folder)!r} is a file, not a folder")
    if folder.is_dir() and not overwrite and _pattern_files(path):
        raise VidforgeError(
            f"output {str(path)!r}: {str(folder)!r} already holds numbered frames (pass --overwrite to replace them)"
        )


def _pattern_files(path: Path) -> list[Path]:
    """Files of ``path``'s folder that its pattern names (``frame_%05d.png``: ``frame_`` digits ``.png``)."""
    if not path.parent.is_dir():
        return []
    prefix, suffix = IMAGE_PATTERN.split(path.name, maxsplit=1)
    regex = re.compile(re.escape(prefix) + r"\d+" + re.escape(suffix))
    return sorted(p for p in path.parent.iterdir() if regex.fullmatch(p.name))


# ------------------------------------------------------------------------------------ temp names


def part_path(path: Path, extra: str = "") -> Path:
    """A new temporary sibling of ``path``: ``.NAME.PID-TOKEN.part[EXTRA]SUFFIX`` (the process id
    tells a killed run's leftovers from a live run's)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(3)}.part{extra}{path.suffix}")


def remove_stale_parts(path: Path) -> list[Path]:
    """Delete the temporary parts of ``path`` left by runs that no longer exist (killed with
    SIGKILL, a power cut); a live run's part (another process writing the same output) is kept."""
    removed = []
    if not path.parent.is_dir():
        return removed
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)-[0-9a-f]+\.part")
    for candidate in path.parent.iterdir():
        match = pattern.match(candidate.name)
        if match and not _alive(int(match[1])):
            _remove(candidate)
            removed.append(candidate)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another writer of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` onto ``path``. Without ``overwrite`` the name is taken
    exclusively (a hard link fails if the name exists), so of two runs only one writes it."""
    if overwrite:
        if path.is_dir() and not path.is_symlink():
            raise VidforgeError(f"output {str(path)!r} is an existing folder; not replaced")
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise VidforgeError(
            f"output {str(path)!r} appeared while this run was writing it (another run?); "
            "nothing was replaced (pass --overwrite to replace it)"
        ) from None
    except OSError as e:  # no hard links on this filesystem: reserve the name, then replace
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise VidforgeError(f"output {str(path)!r} appeared while this run was writing it") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


# --------------------------------------------------------------------------------------- writers


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

    ``close()`` finishes the file and publishes it under ``path``; ``abort()`` (or an exception
    inside a ``with`` block) deletes it. Subclasses implement :meth:`_write_frame` and :meth:`_finish`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        audio_from: str | os.PathLike | None = None,
        settings: OutputSettings | None = None,
    ):
        self.path = Path(path)
        self.fps = float(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.settings = settings or OutputSettings()
        self.num_frames = 0
        self.size: tuple[int, int] | None = None  # (width, height)
        remove_stale_parts(self.target)
        self._tmp = part_path(self.target)
        self._done = False

    @property
    def target(self) -> Path:
        """What is published: the file (or, for frame patterns, the folder)."""
        return self.path

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (F, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
        for frame in frames:
            size = (frame.shape[1], frame.shape[0])
            if self.size is None:
                self.size = size
            elif size != self.size:
                raise ValueError(f"frame {self.num_frames} is {size}, the video is {self.size}")
            self._write_frame(frame)
            self.num_frames += 1

    def _write_frame(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Complete the temporary file (flush the encoder, write the container)."""

    def _release(self) -> None:
        """Let go of encoder resources after a failure."""

    def close(self) -> Path:
        """Finish the file and publish it under ``path``; if that fails, nothing is left behind."""
        if self.num_frames == 0:
            self.abort()
            raise VidforgeError(f"no frames to write to {str(self.path)!r}")
        try:
            self._finish()
            self._publish()
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.path

    def _publish(self) -> None:
        """Move the finished temporary file onto the output name (:func:`publish`)."""
        publish(self._tmp, self.target, self.settings.overwrite)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._release()
        if not self._done:
            _remove(self._tmp)


class FFmpegWriter(Writer):
    """Video containers (.mp4 .mov .mkv .webm): raw RGB frames piped to the bundled ffmpeg, at the
    frames' exact size (see :class:`Codec` for odd sizes). The source's colour tags and bit depth
    are kept; the audio is added in a second pass."""

    def __init__(self, path, fps, audio_from=None, settings=None):
        super().__init__(path, fps, audio_from, settings)
        self.container = CONTAINERS[self.path.suffix.lower()]
        self.codec_name = self.settings.codec or self.container.codecs[0]
        self.codec = CODECS[self.codec_name]
        self._video = self._tmp.with_name(self._tmp.name.replace(".part", ".part.video", 1))
        self._process: subprocess.Popen | None = None

    def _write_frame(self, frame: np.ndarray) -> None:
        if self._process is None:
            self._process = subprocess.Popen(
                self._encode_command(frame.shape[1], frame.shape[0]),
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            raise VidforgeError(
                f"ffmpeg stopped while writing {str(self.path)!r}: {self._ffmpeg_error()}"
            ) from None

    def _encode_command(self, width: int, height: int) -> list[str]:
        codec, color = self.codec, self.settings.color
        odd = width % 2 == 1 or height % 2 == 1
        ten_bit = color is not None and color.bits > 8
        pix_fmt = (codec.odd_pix_fmts if odd else codec.pix_fmts)[ten_bit]
        extra = codec.odd_extra if odd and codec.odd_extra is not None else codec.extra
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{self.fps:.10g}",
               "-i", "-", "-an", "-c:v", codec.encoder, "-pix_fmt", pix_fmt, *extra]  # fmt: skip
        if codec.crf is not None:
            cmd += ["-crf", str(self.settings.crf if self.settings.crf is not None else codec.crf[1])]
        cmd += color_arguments(color)
        if self.codec_name == "h265" and self.container.format in ("mp4", "mov"):
            cmd += ["-tag:v", "hvc1"]  # plays in QuickTime and browsers
        return cmd + ["-f", self.container.format, str(self._video)]

    def _ffmpeg_error(self) -> str:
        text = self._process.stderr.read().decode(errors="replace").strip() if self._process else ""
        return (text.splitlines() or ["unknown error"])[-1][:200]

    def _finish(self) -> None:
        self._process.stdin.close()
        if self._process.wait() != 0:
            raise VidforgeError(f"ffmpeg could not encode {str(self.path)!r}: {self._ffmpeg_error()}")
        self._process = None
        self._mux()

    def _mux(self) -> None:
        """One video stream, the source's first audio stream (copied if the container takes its
        codec) cut at the video's duration, the comment tag, and the index at the front."""
        audio = probe_audio_codec(self.audio_from) if self.audio_from is not None else None
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(self._video)]
        if audio is not None:
            copy = "*" in self.container.audio_copy or audio in self.container.audio_copy
            cmd += ["-i", str(self.audio_from), "-map", "0:v:0", "-map", "1:a:0", "-c:a",
                    "copy" if copy else self.container.audio_encoder]  # fmt: skip
        else:
            cmd += ["-map", "0:v:0"]
        cmd += ["-c:v", "copy", "-t", f"{self.num_frames / self.fps:.6f}"]
        if self.settings.comment:
            cmd += ["-metadata", f"comment={self.settings.comment}"]
        if self.container.format in ("mp4", "mov"):
            cmd += ["-movflags", "+faststart"]
        cmd += ["-f", self.container.format, str(self._tmp)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        _remove(self._video)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["unknown error"])[-1][:200]
            raise VidforgeError(f"ffmpeg could not write {str(self.path)!r}: {last}")

    def _release(self) -> None:
        if self._process is not None:
            with contextlib.suppress(Exception):
                self._process.stdin.close()
            self._process.kill()
            self._process.wait()
        _remove(self._video)


class GifWriter(Writer):
    """An animated GIF (Pillow), looping. GIF delays are whole hundredths of a second: frame i is
    shown at ``round(i·100/fps)`` cs, so the duration stays right (29.97 fps alternates 3 and 4 cs
    instead of playing at 33.3 fps). Frames are held until ``close()`` (GIFs are short)."""

    def __init__(self, path, fps, audio_from=None, settings=None):
        super().__init__(path, fps, None, settings)
        self._frames: list[Image.Image] = []

    def _write_frame(self, frame: np.ndarray) -> None:
        self._frames.append(Image.fromarray(frame))

    def _finish(self) -> None:
        self._frames[0].save(
            self._tmp, format="GIF", save_all=True, append_images=self._frames[1:],
            duration=gif_durations(len(self._frames), self.fps), loop=0,
            comment=(self.settings.comment or "").encode()[:255] or None,
        )  # fmt: skip


def gif_durations(num_frames: int, fps: float) -> list[int]:
    """Per-frame GIF delays in ms, multiples of 10: frame i starts at ``round(i·100/fps)`` cs,
    each delay at least 1 cs."""
    starts = [round(i * 100 / fps) for i in range(num_frames + 1)]
    return [max(1, b - a) * 10 for a, b in zip(starts, starts[1:], strict=False)]


class PngSequenceWriter(Writer):
    """Numbered PNG frames ``DIR/%05d.png`` (any printf pattern) with the fps in ``DIR/fps.txt``.
    Frames are written to a temporary folder and moved into ``DIR`` when complete."""

    def __init__(self, path, fps, audio_from=None, settings=None):
        super().__init__(path, fps, None, settings)
        self._tmp.mkdir()

    @property
    def target(self) -> Path:
        return self.path.parent

    def _write_frame(self, frame: np.ndarray) -> None:
        Image.fromarray(frame).save(self._tmp / (self.path.name % self.num_frames))

    def _finish(self) -> None:
        (self._tmp / "fps.txt").write_text(f"{self.fps}\n")

    def _publish(self) -> None:
        """A new folder by one rename; into an existing folder frame by frame (each frame
        complete), replacing an earlier sequence only with ``overwrite``."""
        if not self.target.exists():
            os.rename(self._tmp, self.target)
            return
        earlier = _pattern_files(self.path)
        if earlier and not self.settings.overwrite:
            raise VidforgeError(
                f"output {str(self.path)!r}: numbered frames appeared in {str(self.target)!r}"
            )
        for old in earlier:
            old.unlink()
        for item in sorted(self._tmp.iterdir()):
            os.replace(item, self.target / item.name)
        _remove(self._tmp)


WRITERS: dict[str, type[Writer]] = {
    **dict.fromkeys(CONTAINERS, FFmpegWriter),
    ".gif": GifWriter,
    "pattern": PngSequenceWriter,
}


def get_writer(
    path: str | os.PathLike,
    fps: float,
    audio_from: str | os.PathLike | None = None,
    settings: OutputSettings | None = None,
) -> Writer:
    """The writer for ``path`` (see :data:`WRITERS`)."""
    path = Path(path)
    if not math.isfinite(fps) or fps <= 0:
        raise VidforgeError(f"output {str(path)!r}: the frame rate must be a positive number (got {fps})")
    return WRITERS[output_kind(path)](path, fps, audio_from, settings)


def color_arguments(color: ColorInfo | None) -> list[str]:
    """An ffmpeg filter that converts RGB with the source's matrix and range and tags the frames
    like the source (ffmpeg takes the tags from the frames, so they are set in the filter graph)."""
    if color is None:
        return []
    scale, tags = [], []
    if color.space in ("bt709", "bt470bg", "smpte170m", "bt2020nc"):
        scale.append(f"out_color_matrix={'bt2020' if color.space == 'bt2020nc' else color.space}")
    if color.range:
        scale.append(f"out_range={'full' if color.range == 'pc' else 'limited'}")
    for key, value in (("colorspace", color.space), ("range", color.range),
                       ("color_primaries", color.primaries), ("color_trc", color.transfer)):  # fmt: skip
        if value:
            tags.append(f"{key}={value}")
    filters = (["scale=" + ":".join(scale)] if scale else []) + (
        ["setparams=" + ":".join(tags)] if tags else []
    )
    return ["-vf", ",".join(filters)] if filters else []


class Sink(AbortOnError):
    """Where a command's frames go: streamed to a :class:`Writer` when there is an output path,
    kept in memory otherwise (then :attr:`frames` holds them all).

    As a context manager it closes the file on success and aborts it (nothing left under the
    output name) on any exception.
    """

    def __init__(
        self,
        output: str | os.PathLike | None,
        fps: float,
        audio_from: str | os.PathLike | None = None,
        settings: OutputSettings | None = None,
    ):
        self.output = Path(output) if output is not None else None
        self.fps = float(fps)
        self.settings = settings
        self.writer = get_writer(self.output, fps, audio_from, settings) if self.output is not None else None
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


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    audio_from: str | os.PathLike | None = None,
    settings: OutputSettings | None = None,
) -> Path:
    """Write all ``frames`` at once (see :class:`Writer`); an existing file is replaced. Returns
    what was written: the file, or the folder of numbered frames."""
    settings = settings or OutputSettings(overwrite=True)
    with get_writer(path, fps, audio_from=audio_from, settings=settings) as writer:
        writer.write(frames)
    return writer.target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling path for a small file (reports, plots); it replaces ``path`` only
    if the block succeeds, and is removed otherwise."""
    path = Path(path)
    tmp = part_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        _remove(tmp)
