"""vidforge evaluate (not built yet)."""

from vidforge.errors import NotBuiltError
from vidforge.evaluate.options import *  # noqa: F403


def run(*args, **kwargs):
    raise NotBuiltError("vidforge evaluate is not built yet")
