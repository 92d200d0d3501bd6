"""The one exception type for the user's mistakes.

Every check of user input (arguments of the public functions, CLI options, config files, input files,
model factories) raises :class:`DeepMRInputError` with a one-line message that names the problem and
the fix. It subclasses :class:`ValueError`, so ``except ValueError`` in user code keeps working. The
``deepmr`` command maps it, and :class:`OSError` on paths the user gave, to exit status 2 and one
line; an exception raised in the user's own model code becomes :class:`ModelCodeError` (one line
naming it, its traceback with ``--debug``); any other exception is a bug and is shown with its
traceback (the chunks a run has already computed are kept).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class DeepMRInputError(ValueError):
    """Bad input from the user: the message says what is wrong and how to fix it."""


class DeepMRWarning(UserWarning):
    """A caveat about a run's results (uncalibrated uncertainty, random reference DNA, pairs without
    an estimate, ...), issued through Python's :mod:`warnings` by :func:`deepmr_kipoi.analyze` so that
    scripts and notebooks see it (once per place, under Python's default filter); the command line
    shows the same text as log lines."""


class ModelCodeError(DeepMRInputError):
    """The user's own model code (a factory's model, a Kipoi model's module) raised while it ran.

    A :class:`DeepMRInputError`, so the command line reports it in one line (exit status 2); the
    model's own exception is its ``__cause__``, and ``deepmr ... --debug`` prints its traceback.
    """


def user_code_origin(err: BaseException) -> tuple[str, int, str] | None:
    """Where in the user's own code an exception was raised: ``(file, line, function)`` of the
    innermost traceback frame that lies outside ``deepmr_kipoi`` and the Python installation (its
    standard library and site-packages), or None when no frame does (then it is not the user's).
    """
    import sys
    import sysconfig
    import traceback

    own = os.path.dirname(os.path.abspath(__file__)) + os.sep
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    installed = [os.path.abspath(p) + os.sep for p in paths | {sys.prefix, sys.base_prefix} if p]
    found = None
    for frame in traceback.extract_tb(err.__traceback__):
        path = os.path.abspath(frame.filename)
        if (
            frame.filename.startswith("<")
            or path.startswith(own)
            or any(path.startswith(p) for p in installed)
        ):
            continue
        found = (frame.filename, frame.lineno or 0, frame.name)
    return found


def one_line(err: BaseException) -> str:
    """An exception as one line, ``"TypeName: message"`` with its whitespace collapsed."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextlib.contextmanager
def user_code_errors() -> Iterator[None]:
    """Turn an exception raised in the user's own model code (:func:`user_code_origin`) into a
    one-line :class:`ModelCodeError`; other exceptions pass unchanged."""
    try:
        yield
    except DeepMRInputError:
        raise
    except Exception as err:
        origin = user_code_origin(err)
        if origin is None:
            raise
        path, line, func = origin
        raise ModelCodeError(
            f"the model's own code raised {one_line(err)} ({os.path.basename(path)} line {line}, in {func}); fix "
            "the model (--debug shows its traceback)"
        ) from err
