"""Messages in Python terms: the command line's option names turned into ``analyze``'s arguments.

The run's warnings and one-line errors name the fix as a ``deepmr run`` option (``--z``,
``--calibration-table``, ``--mask-nonfinite``), because most of them are raised deep in the run,
which does not know who called it. :func:`python_terms` rewrites a message for a Python caller:
every option of a ``RunConfig`` setting becomes its keyword (``z=``, ``calibration_table=``,
``mask_nonfinite=True``; a switch that turns a setting off, ``--no-figures``, becomes
``figures=False``), a value that follows a choice or number option joins it
(``--direction-scale effects`` -> ``direction_scale="effects"``), and the panel hint
``--model a=... --model b=...`` becomes a dict of models. ``analyze`` and ``Analysis.reanalyze``
apply it to the warnings they issue and the errors they raise.
"""

from __future__ import annotations

import functools
import re

#: The command line's panel hint and its Python form.
_PANEL_HINT = ("--model a=... --model b=...", 'a dict of models: analyze({"a": ..., "b": ...})')


@functools.lru_cache(maxsize=1)
def _options() -> dict[str, tuple[str, dict]]:
    """Every ``RunConfig`` option: flag -> (setting name, argparse keywords)."""
    from deepmr_kipoi.run.settings import GROUPS, cli_options

    return {flag: (dest, kw) for cls in GROUPS.values() for flag, dest, kw in cli_options(cls)}


def _keyword(flag: str, value: str | None) -> tuple[str, bool]:
    """The Python form of ``flag`` (followed by the word ``value``) and whether it took the value."""
    dest, kw = _options()[flag]
    action = kw.get("action")
    if action in ("store_true", "store_false"):
        return f"{dest}={action == 'store_true'}", False
    if value is not None:
        if value in tuple(map(str, kw.get("choices") or ())):
            return f'{dest}="{value}"', True
        if kw.get("type") in (int, float) and re.fullmatch(r"-?\d+(\.\d+)?", value):
            return f"{dest}={value}", True
    return f"{dest}=", False


_FLAG = re.compile(r"--[a-z][a-z0-9-]*(?: ([A-Za-z_][A-Za-z0-9_-]*|-?\d+(?:\.\d+)?))?")


def python_terms(text: str) -> str:
    """``text`` with the command line's options of run settings written as Python keywords.

    Parameters
    ----------
    text : str
        A warning or error message of the run.

    Returns
    -------
    str
        The message for a caller of ``analyze``; options that are no run setting (``--config``)
        are left as they are.
    """
    text = str(text).replace(*_PANEL_HINT)

    def replace(match: re.Match) -> str:
        flag, value = match.group(0).split(" ")[0], match.group(1)
        if flag not in _options():
            return match.group(0)
        word, took = _keyword(flag, value)
        return word if took or value is None else f"{word} {value}"

    return _FLAG.sub(replace, text)
