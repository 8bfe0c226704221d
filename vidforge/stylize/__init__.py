"""vidforge stylize: Style-A-Video, zero-shot text-driven video stylization (SPEC section 1)."""

from vidforge.stylize.options import StylizeOptions
from vidforge.stylize.pipeline import StylizePipeline, run

__all__ = ["StylizeOptions", "StylizePipeline", "run"]
