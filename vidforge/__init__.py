"""vidforge: command-line video editing with video diffusion models.

Python API (the CLI is a thin layer over it)::

    from vidforge import stylize, StylizeOptions
    result = stylize.run("clip.mp4", StylizeOptions(style="ink wash"), output="out.mp4")

Importing ``vidforge`` is cheap: the commands (and torch) load on first use.
"""

from vidforge._lazy import lazy_getattr
from vidforge._version import __version__
from vidforge.errors import VidforgeError

__getattr__ = lazy_getattr(
    __name__,
    {
        "animate": "vidforge.animate",
        "evaluate": "vidforge.evaluate",
        "extend": "vidforge.extend",
        "stylize": "vidforge.stylize",
        "AnimateOptions": "vidforge.animate.options",
        "EvaluateOptions": "vidforge.evaluate.options",
        "ExtendOptions": "vidforge.extend.options",
        "StylizeOptions": "vidforge.stylize.options",
        "ModelBundle": "vidforge.models.bundle",
        "available_models": "vidforge.models",
        "load_model": "vidforge.models",
        "resolve_model": "vidforge.models",
    },
)

__all__ = [
    "AnimateOptions",
    "EvaluateOptions",
    "ExtendOptions",
    "ModelBundle",
    "StylizeOptions",
    "VidforgeError",
    "__version__",
    "animate",
    "available_models",
    "evaluate",
    "extend",
    "load_model",
    "resolve_model",
    "stylize",
]
