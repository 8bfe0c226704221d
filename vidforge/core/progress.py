"""Progress for every long loop, phase timings, and the one-line summary at the end of a command.

Progress goes to stderr (stdout stays clean for ``--json``): rich bars on a terminal, plain lines
with an ETA elsewhere (logs, pipes, ``nohup``, cluster schedulers), nothing with ``--progress
none``. The Python API is quiet by default.
"""

from __future__ import annotations

import contextlib
import os
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


class PlainBars(Bars):
    """Progress as plain lines on stderr, for logs: one line per item of the outermost loop
    (chunk, clip, keyframe, video) at most every ``interval`` seconds, and its last item, with
    the elapsed time and an ETA. Inner loops (denoising steps) print only when they are the
    outermost one, with the same spacing."""

    def __init__(self, interval: float = 5.0, stream=None):
        super().__init__(disable=False)
        self.interval = interval
        self.stream = stream

    def __enter__(self) -> PlainBars:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def track(
        self,
        items: Iterable,
        description: str,
        total: int | None = None,
        status: Callable[[], str] | None = None,
    ) -> Iterator:
        total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        if self._depth > 0:
            yield from items
            return
        self._depth += 1
        start = last = time.perf_counter()
        try:
            for done, item in enumerate(items, start=1):
                yield item
                now = time.perf_counter()
                if now - last >= self.interval or done == total:
                    text = description + (status() if status is not None else "")
                    self._line(text, done, total, now - start)
                    last = now
        finally:
            self._depth -= 1

    def _line(self, description: str, done: int, total: int | None, elapsed: float) -> None:
        if total:
            eta = elapsed / done * (total - done)
            text = f"{description} {done}/{total} ({100 * done // total}%) {elapsed:.1f} s, ETA {eta:.1f} s"
        else:
            text = f"{description} {done} {elapsed:.1f} s"
        print(text, file=self.stream or sys.stderr, flush=True)


PROGRESS_MODES = ("auto", "bar", "plain", "none")


def bars(mode: str = "auto") -> Bars:
    """Progress for a CLI run: ``auto`` shows bars when stderr is a terminal and plain lines
    otherwise; ``bar``, ``plain``, ``none`` force one. Third-party bars are silenced either way."""
    silence_third_party_bars()
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "plain"
    if mode == "plain":
        return PlainBars()
    return Bars(disable=mode != "bar")


def silence_third_party_bars() -> None:
    """huggingface_hub, diffusers and transformers draw tqdm bars ("Loading pipeline components")
    between vidforge's own lines: off."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for module in ("diffusers.utils.logging", "transformers.utils.logging", "huggingface_hub.utils"):
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, "disable_progress_bar"):
            loaded.disable_progress_bar()
        elif loaded is not None and hasattr(loaded, "disable_progress_bars"):
            loaded.disable_progress_bars()


class Phases:
    """Seconds spent per phase of a run (load, encode, sample, decode, write), added up over
    every ``with phases("sample"):`` block, so streamed loops that interleave phases are counted right."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def iterate(self, name: str, items: Iterable):
        """The items of ``items``, the time spent producing each counted as phase ``name`` (a
        generator that samples lazily is timed where it runs, not where it was made)."""
        iterator = iter(items)
        while True:
            with self(name):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}


_END = object()


class Timer:
    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


def summary(
    frames: int, seconds: float, output, phases: dict[str, float] | None = None, note: str = ""
) -> str:
    """``24 frames in 37.1 s (1.55 s/frame; load 3.2 s, sample 30.0 s, ...) -> out.mp4``."""
    parts = [f"{seconds / frames:.2f} s/frame"] if frames else []
    shown = {name: value for name, value in (phases or {}).items() if value >= 0.05}  # not the 0.0 s ones
    if shown:
        parts.append(", ".join(f"{name} {value:.1f} s" for name, value in shown.items()))
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"{frames} frames in {seconds:.1f} s{detail} -> {output}" + (f"; {note}" if note else "")
