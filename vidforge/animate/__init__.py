"""vidforge animate: DynamiCrafter image animation (SPEC section 2).

from vidforge import animate
result = animate.run("photo.png", animate.AnimateOptions(prompt="waves crash"), output="waves.mp4")
"""

from vidforge._lazy import lazy_getattr
from vidforge.animate.options import AnimateOptions

__getattr__ = lazy_getattr(__name__, {"run": "vidforge.animate.pipeline"})

__all__ = ["AnimateOptions", "run"]
