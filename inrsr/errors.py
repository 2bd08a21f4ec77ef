"""The exceptions that end a run with one line on stderr, and the warning category for input
that can be used but looks wrong.

The CLI turns an :class:`InrsrError` into a single ``inrsr: error:`` line and a non-zero exit
status (2, or 130 for :class:`Interrupted`); any other exception is a bug and keeps its traceback.
"""


def one_line(message: object) -> str:
    """A message on one line, its whitespace runs (nibabel's and numpy's line breaks) made single spaces."""
    return " ".join(str(message).split())


class InrsrError(Exception):
    """A run that cannot go on: the message names the file or option and the problem."""


class InputError(InrsrError):
    """A problem with the user's input: names the offending file or option and the problem."""


class FitError(InrsrError):
    """A fit that went wrong although its input was valid (the loss or a result is not finite);
    the message names the likely cause and what to change."""


class Interrupted(InrsrError):
    """The run was interrupted (Ctrl-C, SIGTERM); the message says what was kept for ``--resume``."""


class InputWarning(UserWarning):
    """Input that can be used but looks wrong (barely overlapping stacks, stacks whose contents
    disagree, a header that had to be interpreted); the CLI prints it as one ``inrsr: warning:`` line."""
