"""The tests the verdict rests on (steps 1, 2 and 5 of the rule in :mod:`deepmr_kipoi.verdict`).

The minimum-effect test of every estimator (:func:`min_effect_pvalue`), the intersection-union
p-value of every pair and its Benjamini-Hochberg adjustment over pairs (:func:`statistics`,
:func:`benjamini_hochberg`), and the binomial test of excess heterogeneity over sequences
(:func:`heterogeneity_excess`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# scipy.special evaluates the same t and binomial functions scipy.stats does, without the
# second that importing scipy.stats adds to every command's start
from scipy import special

from deepmr_kipoi.mr.methods import methods_where
from deepmr_kipoi.verdict._pairs import pair_ids, per_pair

#: Estimators that must agree for a causal claim (those of them that were run).
AGREEMENT_METHODS = methods_where(agreement=True)
#: Smallest share of sequences with significant local heterogeneity that counts as excess.
HETEROGENEITY_SHARE = 0.25
#: Default smallest effect of interest, standardized (effect x sd_exposure / sd_outcome).
MIN_EFFECT = 0.1


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
    p = special.bdtrc(count - 1, np.maximum(n, 1), alpha)
    return ok & (p < alpha) & (np.where(ok, share, 0.0) >= HETEROGENEITY_SHARE)


def min_effect_pvalue(estimate, se, df, margin) -> np.ndarray:
    """P-value of the minimum-effect test ``H0: |beta| <= margin`` against ``|beta| > margin``.

    ``p = min(1, 2 P(T_df > (|estimate| - margin) / se))``: below ``alpha`` exactly when the
    two-sided ``1 - alpha`` t interval ``estimate +- t_{df, 1 - alpha/2} se`` lies wholly outside
    ``[-margin, margin]``. With ``margin = 0`` it is the usual two-sided p-value. It is
    conservative for a point inside the band (the test of the band's nearer edge, Wellek 2010).

    Parameters
    ----------
    estimate, se, df, margin : array_like, broadcastable, e.g. shape (P,)
        Headline estimate, its SE, its t degrees of freedom (inf: normal) and the margin (>= 0,
        raw units).

    Returns
    -------
    ndarray, the broadcast shape
        NaN where the estimate or SE is not finite; where SE is 0, 0 outside the band, 1 inside.
    """
    estimate, se, df, margin = (
        np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(estimate, se, df, margin)
    )
    margin = np.where(np.isfinite(margin), margin, 0.0)
    excess = np.abs(estimate) - margin
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(1.0, 2.0 * special.stdtr(df, -excess / np.where(se > 0, se, 1.0)))
    p = np.where(se > 0, p, np.where(excess > 0, 0.0, 1.0))
    return np.where(np.isfinite(estimate) & np.isfinite(se), p, np.nan)


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted.

    Parameters
    ----------
    p : array_like, shape (P,)

    Returns
    -------
    ndarray, shape (P,)
        ``q_(i) = min_{j >= i} p_(j) m / j``, capped at 1, over the ``m`` finite p-values.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    vals = np.empty(m)
    vals[order] = np.minimum(ranked, 1.0)
    q[ok] = vals
    return q


def statistics(
    table: pd.DataFrame,
    *,
    min_sequences: int = 5,
    level: float = 0.95,
    min_effect: float = MIN_EFFECT,
) -> pd.DataFrame:
    """The verdict's test statistics of every row (steps 1-2 of the rule, :mod:`deepmr_kipoi.verdict`).

    Parameters
    ----------
    table : DataFrame
        The global table (:data:`REQUIRED_COLUMNS`, ``effect_scale`` where known).
    min_sequences : int
        Fitted sequences a pair needs to be tested.
    level : float
        Confidence level of the run.
    min_effect : float
        Smallest effect of interest, standardized (>= 0).

    Returns
    -------
    DataFrame aligned with ``table``
        ``min_effect`` (the margin in the pair's raw units: ``min_effect / effect_scale``, 0
        without a scale), ``pvalue_min_effect`` (per row), ``pair_pvalue`` and ``pair_qvalue``
        (per pair, the same on its rows; NaN for a pair that is not estimable).
    """
    ids, pairs = pair_ids(table)
    n_pairs = len(pairs)
    methods = table["method"].astype(str).to_numpy()
    scale = table["effect_scale"].to_numpy(float) if "effect_scale" in table else np.nan
    scale = np.broadcast_to(scale, len(table))
    ok_scale = np.isfinite(scale) & (scale > 0)
    margin = np.where(ok_scale, float(min_effect) / np.where(ok_scale, scale, 1.0), 0.0)
    estimate = table["estimate"].to_numpy(float)
    pme = min_effect_pvalue(estimate, table["se"], table["df"], margin)
    run = list(dict.fromkeys(methods))
    primary = "ivw" if "ivw" in run else run[0]
    required = [m for m in AGREEMENT_METHODS if m in run] or [primary]
    first = methods == primary
    fitted = per_pair(table["n_sequences"], ids, first, n_pairs)
    est_primary = per_pair(estimate, ids, first, n_pairs)
    estimable = (fitted >= int(min_sequences)) & np.isfinite(est_primary)
    pair_p = np.zeros(n_pairs)
    signs = []
    for m in required:  # the intersection-union p-value: the largest (NaN if any is NaN)
        pair_p = np.maximum(pair_p, per_pair(pme, ids, methods == m, n_pairs))
        signs.append(np.sign(per_pair(estimate, ids, methods == m, n_pairs)))
    disagree = np.zeros(n_pairs, dtype=bool)
    for s in signs[1:]:
        disagree |= s != signs[0]
    pair_p = np.where(disagree & np.isfinite(pair_p), 1.0, pair_p)
    pair_p = np.where(estimable, pair_p, np.nan)
    pair_q = benjamini_hochberg(pair_p)
    return pd.DataFrame(
        {
            "min_effect": margin,
            "pvalue_min_effect": pme,
            "pair_pvalue": pair_p[ids],
            "pair_qvalue": pair_q[ids],
        },
        index=table.index,
    )
