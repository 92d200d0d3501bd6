"""The one exception type for the user's mistakes.

Every check of user input (arguments of the public functions, CLI options, config files, input files,
model factories) raises :class:`DeepMRInputError` with a one-line message that names the problem and
the fix. It subclasses :class:`ValueError`, so ``except ValueError`` in user code keeps working. The
``deepmr`` command maps it, and :class:`OSError` on paths the user gave, to exit status 2 and one
line; any other exception is a bug and is shown with its traceback (the chunks a run has already
computed are kept).
"""

from __future__ import annotations


class DeepMRInputError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it."""
