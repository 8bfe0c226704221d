"""``--prompts FILE``: a prompt per video for ``clip-text``.

The file is a JSON object from a video's file name (``out.mp4``), its stem (``out``) or its path as
given to one prompt: ``{"river.mp4": "a river through a forest", "waves": "waves crash"}``. A video
the file does not name falls back to ``--prompt``; with neither, its clip-text fails alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from vidforge.errors import VidforgeError


def load_prompts(path: str | None) -> dict[str, str]:
    """The prompts of ``--prompts`` (empty without one); one-line errors for a bad file."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VidforgeError(f"--prompts {path!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VidforgeError(f"--prompts {path!r} is not a readable JSON file ({type(e).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise VidforgeError(
            f"--prompts {path!r} must be a JSON object of video file name -> non-empty prompt, "
            'e.g. {"river.mp4": "a river through a forest"}'
        )
    return data


def prompt_for(video, prompts: dict[str, str], fallback: str | None) -> str | None:
    """The prompt of ``video`` (a path, or frames: only the fallback applies)."""
    if isinstance(video, str | Path):
        path = Path(video)
        for key in (str(video), path.name, path.stem):
            if key in prompts:
                return prompts[key]
    return fallback
