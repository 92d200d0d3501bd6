"""One verdict per ordered feature pair: causal, not causal or undetermined, with its reason.

A run gives every ordered pair (X, Y) several estimators (IVW, MR-Egger, medians, mode), each with
its headline inference over sequences and model samples. Users need one decision. The rule reads
the global table only, so it is the same on every method row of a pair:

1. **Estimable.** The primary estimator (IVW when it was run, else the first method) needs a local
   fit in at least ``min_sequences`` sequences: the between-sequence variation, which the
   population statement rests on, cannot be judged from fewer. Otherwise ``undetermined``
   ("too few sequences with a local fit").
2. **No effect.** No estimator significant (Benjamini-Hochberg q below ``1 - level``): ``not
   causal`` -- no effect distinguishable from zero at this power (the interval says how large an
   effect could still be).
3. **Agreement (an intersection-union test).** Causal needs IVW *and* MR-Egger (those of the two
   that were run) significant with the same sign, and no estimator significant with the opposite
   sign. IVW assumes every instrument valid; MR-Egger allows directional pleiotropy
   (InSIDE). A pair with an effect that only one of them finds is ``undetermined``: a claim that
   rests on one set of assumptions when the other set contradicts it is not made. Requiring both
   keeps the false-claim rate at most that of the better of the two.
4. **Heterogeneity beyond model noise.** Within a sequence, valid instruments of one causal effect
   agree up to the model's own noise (``run.local.heterogeneity``: Cochran's Q against the paired,
   calibrated noise of each instrument's residual; a fit counts when the test rejects and its
   instruments' slopes vary by at least ``HETEROGENEITY_SPREAD`` of the estimate). Where clearly
   more sequences reject homogeneity than chance explains (a one-sided binomial test of the share of sequences with
   local p below ``1 - level`` against ``1 - level``, and at least ``HETEROGENEITY_SHARE`` of
   them), instruments of different kinds (pleiotropic ones, a second pathway) are mixed: the claim
   then needs a robust estimator that tolerates invalid instruments (weighted median or mode,
   when run) significant with the same sign; otherwise ``undetermined``.
5. **Direction.** If the reverse pair (Y, X) passes steps 1-4 too, neither direction is claimed:
   both are ``undetermined`` (feedback, or a shared driver that the directionality check did not
   separate).

The per-unordered-pair ``direction`` column summarises the two verdicts: ``"X -> Y"`` when one
direction is causal, ``"both"`` when both directions passed steps 1-4, ``"neither"`` when both are
not causal, ``"undetermined"`` otherwise.

The verdict is about the model: a causal verdict says the model's outcome responds to mutations
through its exposure, robustly to invalid instruments of the kinds above; it is not proof of a
biological mechanism.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr.methods import METHOD_TABLE, method_label, methods_where

#: The three verdicts.
VERDICTS = ("causal", "not causal", "undetermined")
#: Estimators that must agree for a causal claim (those of them that were run).
AGREEMENT_METHODS = methods_where(agreement=True)
#: Estimators that tolerate a share of invalid instruments (heterogeneous pairs need one of them).
ROBUST_METHODS = methods_where(robust=True)
#: All estimators besides IVW that ``robust_disagreement`` compares with IVW.
NON_IVW_METHODS = tuple(m for m, spec in METHOD_TABLE.items() if spec.batched != "ivw")
#: Smallest share of sequences with significant local heterogeneity that counts as excess.
HETEROGENEITY_SHARE = 0.25
#: Smallest spread of the instruments' slopes, relative to the local estimate, that counts as
#: disagreement (a model with tiny noise makes the test reject mild nonlinearity too).
HETEROGENEITY_SPREAD = 0.25
#: Global-table columns the rule reads.
REQUIRED_COLUMNS = (
    "exposure",
    "outcome",
    "method",
    "estimate",
    "ci_low",
    "ci_high",
    "significant",
    "n_sequences",
    "n_analysed",
    "heterogeneity_share",
    "heterogeneity_excess",
)


def _name(method: str) -> str:
    return method_label(method)


def heterogeneity_excess(share, n, alpha: float) -> np.ndarray:
    """Whether a share of sequences with significant local heterogeneity exceeds chance.

    Parameters
    ----------
    share : array_like, shape (P,)
        Share of a pair's fitted sequences whose local heterogeneity p-value is below ``alpha``.
    n : array_like, shape (P,)
        Fitted sequences.
    alpha : float

    Returns
    -------
    ndarray of bool, shape (P,)
        One-sided binomial test of ``share`` against ``alpha`` at level ``alpha``, and ``share >=
        HETEROGENEITY_SHARE``; False where ``n`` is 0 or the share is NaN.
    """
    share = np.asarray(share, dtype=np.float64)
    n = np.asarray(n, dtype=np.int64)
    ok = (n > 0) & np.isfinite(share)
    count = np.round(np.where(ok, share, 0.0) * n).astype(np.int64)
    p = stats.binom.sf(count - 1, np.maximum(n, 1), alpha)
    return ok & (p < alpha) & (np.where(ok, share, 0.0) >= HETEROGENEITY_SHARE)


def _pair_decision(rows: pd.DataFrame, min_sequences: int, alpha: float):
    """(candidate, verdict, reason) of one ordered pair's method rows, before the reverse check."""
    by_method = {str(r.method): r for r in rows.itertuples(index=False)}
    primary = by_method.get("ivw") or next(iter(by_method.values()))
    fitted, analysed = int(primary.n_sequences), int(primary.n_analysed)
    if fitted < min_sequences or not np.isfinite(primary.estimate):
        return (
            False,
            "undetermined",
            (
                f"too few sequences with a local fit ({fitted} of {analysed}; a verdict needs "
                f"{min_sequences})"
            ),
        )
    sig = {
        m: np.sign(r.estimate)
        for m, r in by_method.items()
        if bool(r.significant) and np.isfinite(r.estimate)
    }
    if not sig:
        return (
            False,
            "not causal",
            (
                f"no estimator finds an effect ({_name(primary.method)} "
                f"{primary.estimate:+.3g} [{primary.ci_low:.3g}, {primary.ci_high:.3g}])"
            ),
        )
    required = [m for m in AGREEMENT_METHODS if m in by_method] or [str(primary.method)]
    if len(set(sig.values())) > 1:
        return False, "undetermined", "estimators disagree in sign"
    missing = [m for m in required if m not in sig]
    if missing:
        found = " and ".join(_name(m) for m in sig)
        return (
            False,
            "undetermined",
            (
                f"{found} find{'s' if len(sig) == 1 else ''} an effect that "
                f"{' and '.join(_name(m) for m in missing)} do{'es' if len(missing) == 1 else ''} "
                "not: invalid instruments cannot be ruled out"
            ),
        )
    agreed = " and ".join(_name(m) for m in required)
    agreed += " agree" if len(required) > 1 else " finds an effect"
    if bool(primary.heterogeneity_excess):
        return (
            False,
            "undetermined",
            (
                f"instruments disagree: heterogeneity beyond model noise in "
                f"{primary.heterogeneity_share:.0%} of sequences"
            ),
        )
    return True, "causal", agreed


def verdicts(table: pd.DataFrame, *, min_sequences: int = 5, level: float = 0.95) -> pd.DataFrame:
    """Verdict, reason and direction of every row's pair.

    Parameters
    ----------
    table : DataFrame
        The global table: rows per (exposure, outcome, method) with ``estimate``, ``ci_low``,
        ``ci_high``, ``significant``, ``n_sequences`` (sequences the headline used),
        ``n_analysed``, ``heterogeneity_share`` and ``heterogeneity_excess``.
    min_sequences : int
        Fitted sequences a causal or not-causal verdict needs.
    level : float
        Confidence level of the run (significance at ``1 - level``).

    Returns
    -------
    DataFrame aligned with ``table``
        Columns ``verdict`` (one of :data:`VERDICTS`), ``verdict_reason`` and ``direction``.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table]
    if missing:
        raise DeepMRInputError(
            f"a verdict needs the global table's columns {', '.join(missing)}; pass the table "
            "global_effects returns"
        )
    alpha = 1.0 - level
    decided = {}
    for key, rows in table.groupby(["exposure", "outcome"], sort=False, observed=True):
        decided[(str(key[0]), str(key[1]))] = _pair_decision(rows, int(min_sequences), alpha)
    final = {}
    for (x, y), (candidate, verdict, reason) in decided.items():
        reverse = decided.get((y, x))
        if candidate and reverse is not None and reverse[0]:
            verdict, reason = (
                "undetermined",
                (
                    "both directions supported: feedback, or a shared driver the directionality "
                    "check did not separate"
                ),
            )
        elif candidate:
            reason += ", reverse direction not supported"
        final[(x, y)] = (verdict, reason)
    pairs = list(zip(table["exposure"].astype(str), table["outcome"].astype(str)))
    out = pd.DataFrame(
        {"verdict": [final[p][0] for p in pairs], "verdict_reason": [final[p][1] for p in pairs]},
        index=table.index,
    )
    out["direction"] = [_direction(final, decided, x, y) for x, y in pairs]
    return out


def _direction(final: dict, decided: dict, x: str, y: str) -> str:
    """Direction of the unordered pair {x, y} from its two ordered verdicts."""
    fwd, rev = final.get((x, y)), final.get((y, x))
    if fwd is None or rev is None:
        return "undetermined"
    if fwd[0] == "causal":
        return f"{x} -> {y}"
    if rev[0] == "causal":
        return f"{y} -> {x}"
    if decided[(x, y)][0] and decided[(y, x)][0]:
        return "both"
    if fwd[0] == "not causal" and rev[0] == "not causal":
        return "neither"
    return "undetermined"


def robust_disagreement(table: pd.DataFrame) -> pd.Series:
    """Flag ordered pairs where IVW and another estimator disagree beyond their intervals.

    Parameters
    ----------
    table : DataFrame
        Rows per (exposure, outcome, method) with ``ci_low``/``ci_high``.

    Returns
    -------
    Series of bool, aligned with ``table``
        True on every row of a pair whose IVW interval and the interval of at least one other
        method (MR-Egger, medians, mode) run in this table do not overlap: a sign that invalid
        instruments (pleiotropy) drive the IVW estimate. False where there is nothing to compare.
    """
    ivw = table[table["method"] == "ivw"].set_index(["exposure", "outcome"])[["ci_low", "ci_high"]]
    others = table[table["method"].isin(NON_IVW_METHODS)]
    flagged = set()
    for r in others.itertuples(index=False):
        if (r.exposure, r.outcome) not in ivw.index:
            continue
        lo, hi = ivw.loc[(r.exposure, r.outcome)]
        if np.isfinite([lo, hi, r.ci_low, r.ci_high]).all() and (r.ci_high < lo or hi < r.ci_low):
            flagged.add((r.exposure, r.outcome))
    pairs = zip(table["exposure"], table["outcome"])
    return pd.Series([p in flagged for p in pairs], index=table.index, name="robust_disagreement")
