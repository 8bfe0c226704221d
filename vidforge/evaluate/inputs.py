"""Which files to score: video files, folders of videos, PNG-sequence folders and ``.txt`` lists
(the expansion is shared with the other commands: :mod:`vidforge.core.inputs`)."""

from __future__ import annotations

from pathlib import Path

from vidforge.core.inputs import VIDEO_FILE_SUFFIXES, expand_inputs, is_png_sequence
from vidforge.core.video_io import IMAGE_SUFFIXES

__all__ = ["VIDEO_FILE_SUFFIXES", "expand_inputs", "is_image", "is_png_sequence"]


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file()
