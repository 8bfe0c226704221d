"""``vidforge evaluate``: score videos with weight-free and model-based metrics (SPEC section 4).

Python API::

    from vidforge import evaluate, EvaluateOptions
    report = evaluate.run(["out.mp4"], EvaluateOptions(source="clip.mp4"))
    report.videos[0].metrics["warp-error"].value
"""

from vidforge._lazy import lazy_getattr
from vidforge.evaluate.options import (
    METRICS,
    MODEL_METRICS,
    SET_METRICS,
    WEIGHT_FREE_METRICS,
    EvaluateOptions,
)

__getattr__ = lazy_getattr(
    __name__,
    {
        "run": "vidforge.evaluate.pipeline",
        **{
            name: "vidforge.evaluate.report"
            for name in (
                "MetricResult",
                "Report",
                "VideoReport",
                "check_format",
                "check_outputs",
                "write_report",
            )
        },
    },
)

__all__ = [
    "METRICS",
    "MODEL_METRICS",
    "SET_METRICS",
    "WEIGHT_FREE_METRICS",
    "EvaluateOptions",
    "MetricResult",
    "Report",
    "VideoReport",
    "check_format",
    "check_outputs",
    "run",
    "write_report",
]
