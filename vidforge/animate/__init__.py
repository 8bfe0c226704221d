"""vidforge animate: DynamiCrafter image animation (SPEC section 2).

from vidforge import animate
result = animate.run("photo.png", animate.AnimateOptions(prompt="waves crash"), output="waves.mp4")
"""

from vidforge.animate.options import AnimateOptions
from vidforge.animate.pipeline import run

__all__ = ["AnimateOptions", "run"]
