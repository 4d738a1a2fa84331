"""The one exception type for expected user mistakes (bad files, bad arguments).

The CLI prints its message on one line and exits with status 2; anything else is a bug and
keeps its traceback.
"""


class LeanfaceError(Exception):
    """An expected, user-facing error. The message names the file (and line) at fault."""
