"""Rich progress bars for every long loop, and the one-line summary at the end of a command.

Bars go to stderr (stdout stays clean for ``--json``) and are off with ``--quiet`` or when stdout
is not a terminal. The Python API is quiet by default.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr = Console(stderr=True, highlight=False)


class Bars:
    """One live display holding nested bars: ``bars.track(clips, "clips")`` inside which
    ``bars.track(steps, "denoise")`` shows a second row that disappears when done."""

    def __init__(self, disable: bool = True):
        self.disable = disable
        self._progress = None
        self._depth = 0

    def __enter__(self) -> Bars:
        if not self.disable:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr,
                transient=True,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def track(
        self,
        items: Iterable,
        description: str,
        total: int | None = None,
        status: Callable[[], str] | None = None,
    ) -> Iterator:
        """Yield ``items`` under a bar; ``status()`` (optional) is appended to the description after
        each item (e.g. a running loss)."""
        if self._progress is None:
            yield from items
            return
        total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        task = self._progress.add_task(("  " * self._depth) + description, total=total)
        self._depth += 1
        try:
            for item in items:
                yield item
                self._progress.advance(task)
                if status is not None:
                    self._progress.update(
                        task, description=("  " * (self._depth - 1)) + description + status()
                    )
        finally:
            self._depth -= 1
            self._progress.remove_task(task)


def bars(quiet: bool = False) -> Bars:
    """Bars for a CLI run: shown unless ``quiet`` or stdout is not a terminal."""
    return Bars(disable=quiet or not sys.stdout.isatty())


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def summary(frames: int, seconds: float, output) -> str:
    per = f", {seconds / frames:.2f} s/frame" if frames else ""
    return f"{frames} frames in {seconds:.1f} s{per} -> {output}"
