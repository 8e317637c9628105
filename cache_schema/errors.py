"""Errors shared by every stage.

A `UserInputError` is a problem with something the user handed us (a path, an option, a store, a
checkpoint). CLIs print its message on one line and exit with code 2; libraries raise it instead of
logging and continuing.
"""


class UserInputError(ValueError):
    """Bad input from the user; the message names the file or option and says what is wrong."""


class CorruptChunkError(ValueError):
    """A chunk's bytes fail their checksum or cannot be decoded (the message names the array and row)."""


def exit_2_on_user_error(fn):
    """Decorator for CLI commands: a `UserInputError` becomes one line on stderr and exit code 2."""
    import functools
    import sys

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserInputError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper
