"""The evaluation report and its writers: rich table (stderr), JSON or VBench JSON (stdout), CSV,
per-frame plot.

JSON, the same shape for any number of videos::

    {"videos": [{"video": "out.mp4", "metrics": {"flicker": {"value": 0.97, "variant": "...",
                                                            "per_frame": [...]}}}, ...],
     "mean": {"video": "mean", "metrics": {"flicker": {"value": 0.97, "variant": "...", "n": 1}}},
     "sets": {"fvd": {...}}}

(``sets`` is empty unless fvd/kvd were asked for). A metric that failed has ``"value": null`` and an
``"error"`` line. ``--format vbench``: VBench's ``{dimension: [mean, [{"video_path": ...,
"video_results": ...}]]}`` for the metrics computed as VBench defines them (:data:`VBENCH_DIMENSIONS`).
The CSV holds numbers only (a label column, then one column per metric); the variants go to a
second file beside it, ``NAME.variants.csv``.
"""

from __future__ import annotations

import csv as csv_module
import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidforge.errors import OptionError, VidforgeError


@dataclass
class MetricResult:
    value: float | None
    variant: str
    per_frame: list[float] | None = None
    extra: dict = field(default_factory=dict)  # e.g. flow method, CLIP model, ×100 score, N, seed
    error: str | None = None

    def to_dict(self, per_frame: bool = True) -> dict:
        extra = {k: _clean(v) if isinstance(v, float) else v for k, v in self.extra.items()}
        out: dict = {"value": _clean(self.value), "variant": self.variant, **extra}
        if self.error is not None:
            out["error"] = self.error
        if per_frame and self.per_frame is not None:
            out["per_frame"] = [_clean(round(float(v), 6)) for v in self.per_frame]  # NaN -> null
        return out


def failure(variant: str, error: str) -> MetricResult:
    return MetricResult(None, variant, error=error)


@dataclass
class VideoReport:
    video: str
    metrics: dict[str, MetricResult]
    num_frames: int = 0
    error: str | None = None  # the video could not be read: no metric ran on it

    def to_dict(self) -> dict:
        out = {"video": self.video, "metrics": {k: m.to_dict() for k, m in self.metrics.items()}}
        return out if self.error is None else {**out, "error": self.error}


@dataclass
class Report:
    videos: list[VideoReport]
    sets: dict[str, MetricResult] = field(default_factory=dict)  # fvd, kvd
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return (
            any(v.error for v in self.videos)
            or any(m.error for v in self.videos for m in v.metrics.values())
            or any(m.error for m in self.sets.values())
        )

    @property
    def errors(self) -> list[str]:
        """One line per failure; a failure shared by several videos (missing weights) is said once."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for v in self.videos:
            for name, m in v.metrics.items():
                if m.error:
                    grouped.setdefault((name, m.error), []).append(v.video)
        out = [v.error for v in self.videos if v.error]  # unreadable videos: the message names the file
        out += [
            f"{names[0] if len(names) == 1 else f'{len(names)} videos'}: {metric}: {error}"
            for (metric, error), names in grouped.items()
        ]
        return out + [f"{name}: {m.error}" for name, m in self.sets.items() if m.error]

    def mean(self) -> dict[str, MetricResult]:
        """Mean of each per-video metric over the videos where it succeeded."""
        out = {}
        names = dict.fromkeys(name for v in self.videos for name in v.metrics)
        for name in names:
            results = [v.metrics[name] for v in self.videos if name in v.metrics]
            values = [r.value for r in results if r.value is not None]
            variant = results[0].variant
            if values:
                out[name] = MetricResult(float(np.mean(values)), variant, extra={"n": len(values)})
            else:
                out[name] = failure(variant, "failed on every video")
        return out

    def to_dict(self) -> dict:
        return {
            "videos": [v.to_dict() for v in self.videos],
            "mean": {"video": "mean", "metrics": {k: m.to_dict(False) for k, m in self.mean().items()}},
            "sets": {k: m.to_dict(False) for k, m in self.sets.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    def to_vbench(self) -> dict:
        """VBench's results layout for the metrics it shares; a video whose metric failed is left
        out of that dimension (and of its mean)."""
        out = {}
        for name, dimension in VBENCH_DIMENSIONS.items():
            scored = [(v.video, v.metrics[name].value) for v in self.videos if name in v.metrics]
            scored = [(video, value) for video, value in scored if value is not None]
            if scored:
                mean = float(np.mean([value for _, value in scored]))
                out[dimension] = [
                    mean,
                    [{"video_path": video, "video_results": value} for video, value in scored],
                ]
        return out


# vidforge metric -> VBench dimension, where the definitions agree (flicker: VBench's formula on
# uint8 frames). clip-frame, motion and clip-text differ from VBench's subject/background consistency
# (DINO / CLIP ViT-B/32 against the first and previous frame), dynamic degree (RAFT, thresholded)
# and overall consistency (ViCLIP), so they are not relabelled as those.
VBENCH_DIMENSIONS = {"flicker": "temporal_flickering"}
FORMATS = ("table", "json", "vbench")


def _clean(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


# -------------------------------------------------------------------------------------------- writers


def _rows(report: Report) -> tuple[list[str], list[tuple[str, dict[str, MetricResult]]]]:
    names = list(dict.fromkeys(n for v in report.videos for n in v.metrics))
    rows = [(v.video, v.metrics) for v in report.videos]
    if len(report.videos) > 1:
        rows.append(("mean", report.mean()))
    if report.sets:
        names += list(report.sets)
        rows.append(("(sets)", report.sets))
    return names, rows


def print_table(report: Report) -> None:
    """A rich table on stderr (stdout stays clean): one row per video, the mean, then set metrics."""
    from rich.table import Table

    from vidforge.core.progress import stderr

    names, rows = _rows(report)
    short = [Path(v.video).name for v in report.videos]
    if len(set(short)) == len(short):  # file names are enough when they are unique
        rows = [(short[i], m) if i < len(short) else (label, m) for i, (label, m) in enumerate(rows)]
    last_video = rows[len(report.videos) - 1][0]
    table = Table(title=f"vidforge evaluate ({report.seconds:.1f} s)", title_justify="left")
    table.add_column("video", overflow="fold")
    for name in names:
        table.add_column(name, justify="right")
    for label, metrics in rows:
        cells = []
        for name in names:
            m = metrics.get(name)
            cells.append("" if m is None else ("failed" if m.error else f"{m.value:.4f}"))
        table.add_row(label, *cells, end_section=label == last_video)
    stderr.print(table)
    variants = {name: m.variant for _, metrics in rows for name, m in metrics.items()}
    for name, variant in variants.items():
        stderr.print(f"  [bold]{name}[/bold]: {variant}", highlight=False)
    for label, metrics in rows[: len(report.videos)]:
        m = metrics.get("seams")
        if m is not None and m.error is None:  # where they are, not only how bad the worst is
            pairs = ", ".join(f"{t}→{t + 1}" for t in m.extra["seams"]) or "none"
            stderr.print(f"  seams in {label}: {pairs}", highlight=False, markup=False)


def write_csv(report: Report, path: str | Path) -> Path:
    """Numbers only: one row per video (plus ``mean`` and set metrics), one column per metric; an
    empty cell where a metric failed or does not apply. Each metric's variant goes to
    ``NAME.variants.csv`` beside it (``metric,variant``)."""
    from vidforge.core.writers import atomic_path

    names, rows = _rows(report)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv_module.writer(f)
        writer.writerow(["video", *names])
        for label, metrics in rows:
            writer.writerow(
                [label]
                + [
                    "" if name not in metrics or metrics[name].value is None else f"{metrics[name].value:.6g}"
                    for name in names
                ]
            )
    variants = {name: m.variant for _, metrics in rows for name, m in metrics.items()}
    with atomic_path(variants_path(path)) as tmp, open(tmp, "w", newline="") as f:
        writer = csv_module.writer(f)
        writer.writerow(["metric", "variant"])
        writer.writerows([name, variants[name]] for name in names if name in variants)
    return path


def variants_path(csv_path: Path) -> Path:
    """``scores.csv`` -> ``scores.variants.csv``."""
    return csv_path.with_name(csv_path.stem + ".variants.csv")


def write_plot(report: Report, path: str | Path) -> Path:
    """Per-frame curves, one panel per metric, one line per video (matplotlib, Agg backend), so a
    user sees where in the video the flicker or the warp error is. Pair metrics are drawn at the
    pair's first frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        n for n in dict.fromkeys(n for v in report.videos for n in v.metrics)
        if any(v.metrics.get(n) is not None and v.metrics[n].per_frame for v in report.videos)
    ]  # fmt: skip
    fig, axes = plt.subplots(
        max(len(names), 1), 1, figsize=(9, 2.2 * max(len(names), 1) + 0.6), squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=False):
        for v in report.videos:
            m = v.metrics.get(name)
            if m is not None and m.per_frame:
                ax.plot(range(len(m.per_frame)), m.per_frame, marker=".", label=Path(v.video).name)
            if m is not None and m.extra.get("threshold") is not None:
                ax.axhline(m.extra["threshold"], color="gray", linestyle="--", linewidth=0.8)
        ax.set_ylabel(name)
        variant = next(v.metrics[name].variant for v in report.videos if name in v.metrics)
        ax.set_title(textwrap.fill(variant, 130), fontsize=7)
        ax.grid(alpha=0.3)
    if not names:
        axes[0, 0].text(0.5, 0.5, "no per-frame metric", ha="center", va="center")
    axes[-1, 0].set_xlabel("frame")
    if len(report.videos) > 1 and names:
        axes[0, 0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    from vidforge.core.writers import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def check_format(format: str, metrics) -> None:
    """``--format``: a known one; ``vbench`` only with a metric VBench shares."""
    if format not in FORMATS:
        raise OptionError(f"--format must be one of {', '.join(FORMATS)}")
    if format == "vbench" and not any(m in VBENCH_DIMENSIONS for m in metrics):
        shared = ", ".join(f"{m} ({d})" for m, d in VBENCH_DIMENSIONS.items())
        raise OptionError(
            f"--format vbench: no metric asked for has a VBench dimension; VBench shares {shared}"
        )


def check_outputs(csv: str | Path | None = None, plot: str | Path | None = None) -> None:
    """Fail before any work when the report files cannot be written."""
    for path, suffix, flag in ((csv, ".csv", "--csv"), (plot, ".png", "--plot")):
        if path is None:
            continue
        path = Path(path)
        if path.suffix.lower() != suffix:
            raise VidforgeError(f"{flag} {str(path)!r}: the file name must end in {suffix}")
        if not path.parent.exists():
            raise VidforgeError(f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist")


def write_report(
    report: Report,
    format: str = "table",
    csv: str | Path | None = None,
    plot: str | Path | None = None,
    quiet: bool = False,
) -> None:
    """Show the report: ``json`` or ``vbench`` on stdout (and nothing else there), or a table on
    stderr; optional CSV and per-frame plot; every failed metric as one ``error:`` line on stderr."""
    from vidforge.core.progress import stderr

    check_outputs(csv, plot)
    if csv is not None:
        write_csv(report, csv)
    if plot is not None:
        write_plot(report, plot)
    if format == "json":
        print(report.to_json(), flush=True)
    elif format == "vbench":
        print(json.dumps(report.to_vbench(), allow_nan=False), flush=True)
    elif not quiet:
        print_table(report)
    for line in report.errors:
        stderr.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
