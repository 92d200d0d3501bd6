"""Stage 1, inputs: the exposures and outcomes of a run, as indices into the model's features."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence

from deepmr_kipoi.errors import DeepMRInputError


def select_features(patterns: Sequence[str], names: Sequence[str], role: str) -> list[int]:
    """Indices of the features matched by names or fnmatch globs, in model order of first match.

    Parameters
    ----------
    patterns : sequence of str
        Exact feature names or globs (``*``, ``?``, ``[...]``); empty selects every feature. A
        pattern that is itself a feature name selects that feature only (so a name holding glob
        characters, ``K562_*``, can be selected); to use it as a glob, write a glob that is not a
        name (``K562_[*]*`` matches the literal ``K562_*`` and what follows).
    names : sequence of str, length F
        The model's feature names.
    role : str
        ``"exposure"`` or ``"outcome"`` (for messages).

    Returns
    -------
    list of int

    Raises
    ------
    DeepMRInputError
        When a pattern matches nothing (lists close matches).
    """
    names = list(names)
    if not patterns:
        return list(range(len(names)))
    picked: list[int] = []
    for pattern in patterns:
        if pattern in names:  # an exact name wins, glob characters and all
            hits = [i for i, n in enumerate(names) if n == pattern]
        elif any(c in pattern for c in "*?["):
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, pattern)]
        else:
            hits = []
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.4)
            if close:
                hint = "close matches: " + ", ".join(close)
            else:
                shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
                hint = f"the model's features are: {shown}"
            raise DeepMRInputError(f"unknown {role} feature {pattern!r}; {hint}")
        picked.extend(i for i in hits if i not in picked)
    return picked
