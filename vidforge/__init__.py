"""vidforge: command-line video editing with video diffusion models.

Python API (the CLI is a thin layer over it)::

    from vidforge import stylize, StylizeOptions
    result = stylize.run("clip.mp4", StylizeOptions(style="ink wash"), output="out.mp4")
"""

__version__ = "0.1.0"

from vidforge import animate, evaluate, extend, stylize  # noqa: E402
from vidforge.animate.options import AnimateOptions  # noqa: E402
from vidforge.core.models import available_models, resolve_model  # noqa: E402
from vidforge.errors import VidforgeError  # noqa: E402
from vidforge.evaluate.options import EvaluateOptions  # noqa: E402
from vidforge.extend.options import ExtendOptions  # noqa: E402
from vidforge.stylize.options import StylizeOptions  # noqa: E402

__all__ = [
    "AnimateOptions",
    "EvaluateOptions",
    "ExtendOptions",
    "StylizeOptions",
    "VidforgeError",
    "animate",
    "available_models",
    "evaluate",
    "extend",
    "resolve_model",
    "stylize",
]
