"""vidforge stylize: Style-A-Video, zero-shot text-driven video stylization (SPEC section 1)."""

from vidforge._lazy import lazy_getattr
from vidforge.stylize.options import StylizeOptions

__getattr__ = lazy_getattr(
    __name__, {"StylizePipeline": "vidforge.stylize.pipeline", "run": "vidforge.stylize.pipeline"}
)

__all__ = ["StylizeOptions", "StylizePipeline", "run"]
