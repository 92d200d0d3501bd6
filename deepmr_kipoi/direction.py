"""Direction verdicts for feature pairs, and agreement between IVW and the robust estimators.

MR on one model cannot tell from a single ordered pair which feature drives the other: a mutation
that moves X also moves Y whether X causes Y or Y causes X. The verdict therefore looks at both
ordered pairs of an unordered pair {X, Y}, after the instruments have passed the directionality
check (``instruments.directional``):

* ``"X -> Y"``: X -> Y is significant and Y -> X is not;
* ``"both"``: both are significant (feedback, or a shared driver the instruments did not separate);
* ``"neither"``: neither is significant;
* ``"undetermined"``: one of the two directions has no estimate (too few instruments, or only one
  direction was analysed).

"Significant" is the headline flag (q-value below ``1 - level``). A pair that is significant in one
direction only is a statement about the model's learned dependencies, not proof of a biological
direction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ROBUST_METHODS = ("egger", "weighted_median", "simple_median", "weighted_mode")


def verdicts(table: pd.DataFrame) -> pd.Series:
    """Direction verdict of every row's unordered pair, per method.

    Parameters
    ----------
    table : DataFrame
        One row per (exposure, outcome, method) with columns ``exposure``, ``outcome``, ``method``,
        ``estimate`` and ``significant`` (bool).

    Returns
    -------
    Series of str, aligned with ``table``
        ``"X -> Y"``, ``"Y -> X"`` (with the feature names), ``"both"``, ``"neither"`` or
        ``"undetermined"``.
    """
    key = {(r.exposure, r.outcome, r.method): (r.estimate, bool(r.significant))
           for r in table[["exposure", "outcome", "method", "estimate", "significant"]].itertuples()}  # fmt: skip
    out = []
    for r in table[["exposure", "outcome", "method"]].itertuples(index=False):
        fwd = key.get((r.exposure, r.outcome, r.method))
        rev = key.get((r.outcome, r.exposure, r.method))
        if fwd is None or rev is None or not (np.isfinite(fwd[0]) and np.isfinite(rev[0])):
            out.append("undetermined")
        elif fwd[1] and rev[1]:
            out.append("both")
        elif fwd[1]:
            out.append(f"{r.exposure} -> {r.outcome}")
        elif rev[1]:
            out.append(f"{r.outcome} -> {r.exposure}")
        else:
            out.append("neither")
    return pd.Series(out, index=table.index, name="direction")


def robust_disagreement(table: pd.DataFrame) -> pd.Series:
    """Flag ordered pairs where IVW and a robust estimator disagree beyond their intervals.

    Parameters
    ----------
    table : DataFrame
        Rows per (exposure, outcome, method) with ``ci_low``/``ci_high``.

    Returns
    -------
    Series of bool, aligned with ``table``
        True on every row of a pair whose IVW interval and the interval of at least one robust
        method (MR-Egger, medians, mode) run in this table do not overlap: a sign that invalid
        instruments (pleiotropy) drive the IVW estimate. False where there is nothing to compare.
    """
    ivw = table[table["method"] == "ivw"].set_index(["exposure", "outcome"])[["ci_low", "ci_high"]]
    robust = table[table["method"].isin(ROBUST_METHODS)]
    flagged = set()
    for r in robust.itertuples(index=False):
        if (r.exposure, r.outcome) not in ivw.index:
            continue
        lo, hi = ivw.loc[(r.exposure, r.outcome)]
        if np.isfinite([lo, hi, r.ci_low, r.ci_high]).all() and (r.ci_high < lo or hi < r.ci_low):
            flagged.add((r.exposure, r.outcome))
    pairs = zip(table["exposure"], table["outcome"])
    return pd.Series([p in flagged for p in pairs], index=table.index, name="robust_disagreement")
