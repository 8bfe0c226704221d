"""vidforge extend (not built yet)."""

from vidforge.errors import NotBuiltError
from vidforge.extend.options import *  # noqa: F403


def run(*args, **kwargs):
    raise NotBuiltError("vidforge extend is not built yet")
