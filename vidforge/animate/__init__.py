"""vidforge animate (not built yet)."""

from vidforge.animate.options import *  # noqa: F403
from vidforge.errors import NotBuiltError


def run(*args, **kwargs):
    raise NotBuiltError("vidforge animate is not built yet")
