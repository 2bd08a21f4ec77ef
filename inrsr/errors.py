"""The exceptions that end a run with one line on stderr, and the warning category for input
that can be used but looks wrong.

The CLI turns an :class:`InrsrError` into a single ``inrsr: error:`` line and a non-zero exit
status (2, or 130 for :class:`Interrupted`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator


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


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[str]]:
    """Inside the block, the one-line message of every :class:`InputWarning` that is shown is
    appended to the yielded list, in order. The warnings are still shown as before (by whatever
    ``warnings.showwarning`` is in place, e.g. the CLI's ``inrsr: warning:`` printer): only the
    warnings the user sees are recorded."""
    seen: list[str] = []
    previous = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, InputWarning):
            seen.append(one_line(message))
        previous(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield seen
    finally:
        warnings.showwarning = previous
