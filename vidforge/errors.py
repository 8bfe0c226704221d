"""The exceptions vidforge shows to users as one-line errors."""


class VidforgeError(Exception):
    """A problem the user can fix (bad input, missing weights...). The CLI prints
    ``error: <message>`` and exits 1; messages name the parameter and the fix."""


class OptionError(VidforgeError):
    """An impossible option value or combination (a usage error: the CLI exits 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, ``docker stop``, cluster schedulers): handled like Ctrl-C
    (outputs cleaned up, extend's resumable state kept), exit code 143."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message ("" if it has none), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
