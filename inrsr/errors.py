"""The one exception type for user mistakes (bad files, bad options).

The CLI turns an :class:`InputError` into a single line on stderr and exit code 2; any other
exception is a bug and keeps its traceback.
"""


class InputError(Exception):
    """A problem with the user's input: names the offending file or option and the problem."""


class InputWarning(UserWarning):
    """Input that can be used but looks wrong (barely overlapping stacks, stacks whose contents
    disagree); the CLI prints it as one ``inrsr: warning:`` line."""
