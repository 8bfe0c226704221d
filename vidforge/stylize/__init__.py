"""vidforge stylize (not built yet)."""

from vidforge.errors import NotBuiltError
from vidforge.stylize.options import *  # noqa: F403


def run(*args, **kwargs):
    raise NotBuiltError("vidforge stylize is not built yet")
