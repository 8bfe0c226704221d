"""Many inputs from a few arguments: files, folders, PNG-sequence folders and ``.txt`` lists.

Shared by every command that takes several inputs (``stylize DIR``, ``animate DIR``, ``extend
--init DIR``, ``evaluate DIR``). Folders are not searched recursively; what a folder contributes
depends on what the command reads (``kind``): videos (video files and PNG-sequence folders) or
images. A file is picked by its suffix; whether it really decodes is found out when it is read,
so one unreadable file fails alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidforge.core.video_io import IMAGE_SUFFIXES, media_path
from vidforge.errors import VidforgeError

# Containers PyAV/decord read (ffmpeg demuxers); a folder contributes files with these suffixes.
VIDEO_FILE_SUFFIXES = {
    ".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv",
}  # fmt: skip
KINDS = ("video", "image")


def is_png_sequence(path: Path) -> bool:
    """A folder of PNG frames (as ``VideoWriter`` writes them) and no video files."""
    if not path.is_dir() or not any(p.is_file() for p in path.glob("*.png")):
        return False
    return not any(p.suffix.lower() in VIDEO_FILE_SUFFIXES or p.is_dir() for p in path.iterdir())


def _folder_items(path: Path, kind: str) -> list[Path]:
    """What a folder holds for ``kind``, sorted by name."""
    if kind == "image":
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(
        p
        for p in path.iterdir()
        if (p.is_file() and p.suffix.lower() in VIDEO_FILE_SUFFIXES) or is_png_sequence(p)
    )


def _read_list(path: Path, item: str, what: str) -> list[str]:
    """A ``.txt`` list: one path per line, relative to the list's folder; ``#`` starts a comment."""
    lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
    listed = [str(p if Path(p).is_absolute() else path.parent / p) for p in lines if p]
    if not listed:
        raise VidforgeError(f"{what} list {item!r} names no {what}s")
    return listed


def expand_inputs(items: list, what: str = "video", kind: str = "video") -> list:
    """Turn CLI arguments into a flat list of inputs, in order, each path once.

    ``kind="video"``: a folder of PNG frames is one video; any other folder contributes its video
    files and PNG-sequence folders. ``kind="image"``: a folder contributes its image files. A
    ``.txt`` file lists one path per line (relative to the list; ``#`` comments). Inputs given as
    frames (arrays, :class:`~vidforge.core.video_io.Video`) pass through as they are. A missing
    path, an empty list or a folder without inputs is a one-line error naming ``what``."""
    found: list = []
    for item in items:
        if not isinstance(item, str | os.PathLike):
            found.append(item)
            continue
        path = media_path(item)
        if not path.exists():
            raise VidforgeError(f"{what} {str(item)!r} does not exist")
        if path.suffix.lower() == ".txt" and path.is_file():
            found += expand_inputs(_read_list(path, str(item), what), what, kind)
        elif path.is_dir() and (kind == "image" or not is_png_sequence(path)):
            inside = _folder_items(path, kind)
            if not inside:
                suffixes = IMAGE_SUFFIXES if kind == "image" else VIDEO_FILE_SUFFIXES
                extra = "" if kind == "image" else " or PNG-sequence folders"
                raise VidforgeError(
                    f"{what} {str(item)!r} is a directory without {kind}s ({', '.join(sorted(suffixes))}{extra})"
                )
            found += inside
        else:
            found.append(path)
    seen: set[Path] = set()
    unique = []  # each path once (where it first appears); frames always
    for entry in found:
        if isinstance(entry, Path):
            if entry in seen:
                continue
            seen.add(entry)
        unique.append(entry)
    return unique


def names_several(items: list, kind: str = "video") -> bool:
    """Whether CLI arguments may stand for several inputs: more than one, a ``.txt`` list, or a
    folder (of images; of videos unless it is itself one PNG-sequence video)."""
    if len(items) != 1:
        return len(items) > 1
    path = media_path(items[0])
    if path.suffix.lower() == ".txt" and path.is_file():
        return True
    return path.is_dir() and (kind == "image" or not is_png_sequence(path))
