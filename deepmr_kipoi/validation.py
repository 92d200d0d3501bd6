"""Validation helpers shared by the public functions, ``RunConfig`` and the command line.

Each helper returns the normalised value or raises :class:`~deepmr_kipoi.errors.DeepMRInputError`
with a one-line message naming the argument (``name``) and the accepted values.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError


def _is_integer(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return hasattr(value, "__index__") and not isinstance(value, (str, bytes))


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int >= ``minimum``; refuse bools, floats with a fraction and strings."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_integer(value):
        raise DeepMRInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise DeepMRInputError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def finite_float(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given bounds (closed unless ``*_open``)."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise DeepMRInputError(f"{name} must be a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise DeepMRInputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise DeepMRInputError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (out <= low if low_open else out < low)
    too_high = high is not None and (out >= high if high_open else out > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise DeepMRInputError(
            f"{name} must be {' and '.join(s for s in (lo, hi) if s)}, got {out:g}"
        )
    return out


def level(value, name: str = "level") -> float:
    """Return a confidence level, a fraction in the open interval (0, 1).

    The one check of every confidence level the package takes (MR, meta-analysis, inference,
    calibration, the run's configuration), with one message.
    """
    try:
        out = float(value) if not isinstance(value, (bool, str, bytes)) else math.nan
    except (TypeError, ValueError):
        out = math.nan
    if not 0.0 < out < 1.0:  # also refuses NaN
        raise DeepMRInputError(
            f"{name} must be a confidence level in (0, 1), e.g. 0.95 (not 95), got {value!r}"
        )
    return out


def choice(value, choices: Iterable[str], name: str, *, case_sensitive: bool = True) -> str:
    """Return ``value`` if it is one of ``choices`` (as the choice's own spelling)."""
    options = list(choices)
    if isinstance(value, str):
        for option in options:
            if value == option or (not case_sensitive and value.lower() == option.lower()):
                return option
    raise DeepMRInputError(f"unknown {name} {value!r}; choose from {', '.join(map(str, options))}")


def string_list(value, name: str, *, allow_empty: bool = False) -> list[str]:
    """Return a list of strings; a single string is one item, never its characters."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or isinstance(value, bytes):
        raise DeepMRInputError(f"{name} must be a list of names, got {value!r}")
    out = []
    for item in value:
        if not isinstance(item, str) or not item:
            raise DeepMRInputError(f"{name} must be a list of non-empty names, got item {item!r}")
        out.append(item)
    if not out and not allow_empty:
        raise DeepMRInputError(f"{name} must name at least one item")
    return out


def window(value, length: int | None = None, name: str = "window") -> tuple[int, int] | None:
    """The one check of a half-open ISM window ``(start, end)``, ``0 <= start < end``.

    With ``length`` (the sequences are known) the window must fit inside ``[0, length]`` and None is
    the whole sequence, ``(0, length)``; without it (a config, before any sequence is read) None
    stays None.
    """
    if value is None:
        return None if length is None else (0, int(length))
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise DeepMRInputError(
            f"{name} must be two integers (start, end) or null for the whole sequence, got {value!r}"
        )
    start = positive_int(value[0], f"{name} start", minimum=0)
    end = positive_int(value[1], f"{name} end", minimum=0)
    if start >= end:
        raise DeepMRInputError(f"{name} {start}-{end} is empty; give start < end")
    if length is not None and end > length:
        raise DeepMRInputError(
            f"{name} {start}-{end} does not fit sequences of {length} bp; give 0 <= start < end "
            f"<= {length}"
        )
    return start, end


def boolean(value, name: str) -> bool:
    """Return ``value`` if it is a bool (YAML ``true``/``false``); refuse strings and numbers."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise DeepMRInputError(f"{name} must be true or false, got {value!r}")


def optional_text(value, name: str) -> str | None:
    """Return None, or ``value`` as a non-empty string (paths are accepted and turned into text)."""
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise DeepMRInputError(f"{name} must be a non-empty text or path, got {value!r}")
    return value
