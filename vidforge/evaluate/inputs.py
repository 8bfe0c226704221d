"""Which files to score: video files, folders of videos, PNG-sequence folders and ``.txt`` lists."""

from __future__ import annotations

import os
from pathlib import Path

from vidforge.core.video_io import IMAGE_SUFFIXES, media_path
from vidforge.errors import VidforgeError

VIDEO_FILE_SUFFIXES = {".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv", ".m4v"}


def is_png_sequence(path: Path) -> bool:
    """A folder of PNG frames (as ``VideoWriter`` writes them) and no video files."""
    if not path.is_dir() or not any(p.is_file() for p in path.glob("*.png")):
        return False
    return not any(p.suffix.lower() in VIDEO_FILE_SUFFIXES or p.is_dir() for p in path.iterdir())


def expand_inputs(items: list, what: str = "video") -> list:
    """Turn CLI arguments into a flat list of videos, in order, without duplicates.

    A folder of PNG frames is one video; any other folder contributes its video files (sorted, not
    recursive); a ``.txt`` file lists one path per line (relative to the list; ``#`` comments).
    Videos given as frames (arrays, :class:`~vidforge.core.video_io.Video`) pass through as they are."""
    videos: list = []
    for item in items:
        if not isinstance(item, str | os.PathLike):
            videos.append(item)
            continue
        path = media_path(item)
        if not path.exists():
            raise VidforgeError(f"{what} {item!r} does not exist")
        if path.suffix.lower() == ".txt" and path.is_file():
            lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
            listed = [str(p if Path(p).is_absolute() else path.parent / p) for p in lines if p]
            if not listed:
                raise VidforgeError(f"{what} list {item!r} names no videos")
            videos += expand_inputs(listed, what)
        elif path.is_dir() and not is_png_sequence(path):
            found = sorted(
                p
                for p in path.iterdir()
                if (p.is_file() and p.suffix.lower() in VIDEO_FILE_SUFFIXES) or is_png_sequence(p)
            )
            if not found:
                raise VidforgeError(
                    f"{what} folder {item!r} holds no videos ({', '.join(sorted(VIDEO_FILE_SUFFIXES))} "
                    "or PNG-sequence folders)"
                )
            videos += found
        else:
            videos.append(path)
    seen: set[Path] = set()
    unique = []  # each path once (where it first appears); frames always
    for video in videos:
        if isinstance(video, Path):
            if video in seen:
                continue
            seen.add(video)
        unique.append(video)
    return unique


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file()
