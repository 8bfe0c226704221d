"""``vidforge evaluate``: score videos with weight-free and model-based metrics (SPEC section 4).

Python API::

    from vidforge import evaluate, EvaluateOptions
    report = evaluate.run(["out.mp4"], EvaluateOptions(source="clip.mp4"))
    report.videos[0].metrics["warp-error"].value
"""

from __future__ import annotations

from pathlib import Path

from vidforge.errors import VidforgeError
from vidforge.evaluate.options import (
    METRICS,
    MODEL_METRICS,
    SET_METRICS,
    WEIGHT_FREE_METRICS,
    EvaluateOptions,
)
from vidforge.evaluate.pipeline import run
from vidforge.evaluate.report import MetricResult, Report, VideoReport, print_table, write_csv, write_plot

__all__ = [
    "METRICS",
    "MODEL_METRICS",
    "SET_METRICS",
    "WEIGHT_FREE_METRICS",
    "EvaluateOptions",
    "MetricResult",
    "Report",
    "VideoReport",
    "check_outputs",
    "run",
    "write_report",
]


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
    as_json: bool = False,
    csv: str | Path | None = None,
    plot: str | Path | None = None,
    quiet: bool = False,
) -> None:
    """Show the report: JSON on stdout (and nothing else there) or a table on stderr; optional CSV and
    per-frame plot; every failed metric as one ``error:`` line on stderr."""
    from vidforge.core.progress import stderr

    check_outputs(csv, plot)
    if csv is not None:
        write_csv(report, csv)
    if plot is not None:
        write_plot(report, plot)
    if as_json:
        print(report.to_json(), flush=True)
    elif not quiet:
        print_table(report)
    for line in report.errors:
        stderr.print(f"error: {line}", highlight=False, markup=False, soft_wrap=True)
