"""One verdict per ordered feature pair: causal, not causal or undetermined, with its reason.

A run gives every ordered pair (X, Y) several estimators (IVW, MR-Egger, medians, mode), each with
its headline inference over sequences and model samples. Users need one decision. The rule reads
the global table only, so it is the same on every method row of a pair. Effects are judged
against a **smallest effect of interest** ``delta`` on a standardized scale: the effect times
``sd_X / sd_Y`` (``effect_scale``; ``sd`` is each feature's spread over the reference sequences),
i.e. the change of Y, in its SDs, per SD of X. In raw units the margin of a pair is
``delta / effect_scale`` (``min_effect``); without spreads it is 0.

1. **Estimable.** The primary estimator (IVW when it was run, else the first method) needs a
   local fit in at least ``min_sequences`` sequences: the between-sequence variation, which the
   population statement rests on, cannot be judged from fewer. Otherwise ``undetermined`` ("too
   few sequences with a local fit"). Such a pair enters no multiple-testing adjustment and is
   never ``significant``.
2. **Minimum-effect test, an intersection-union test, Benjamini-Hochberg over pairs.** For each
   estimator the p-value of ``H0: |beta| <= margin`` is ``2 P(t_df > (|estimate| - margin) /
   se)`` (capped at 1): it is below ``1 - level`` exactly when the headline interval excludes the
   whole band ``[-margin, margin]``. The pair's p-value (``pair_pvalue``) is the largest of those
   of IVW and MR-Egger (those run), 1 when their estimates differ in sign: the p-value of the
   intersection-union test "both exclude the band, on the same side" (Berger 1982), valid
   without any assumption on how the two estimators depend on each other. ``pair_qvalue`` is its
   Benjamini-Hochberg adjustment over the estimable ordered pairs. A claim needs ``pair_qvalue
   < 1 - level``. IVW assumes every instrument valid, MR-Egger allows directional pleiotropy
   (InSIDE); a claim rests on both.
3. **No claim.** A pair that fails step 2 is ``not causal`` only where an equivalence holds: the
   primary estimator's headline interval, standardized, lies inside ``(-delta, delta)`` (two
   one-sided tests at ``(1 - level) / 2`` each; per pair, not adjusted for multiplicity).
   Otherwise it is ``undetermined`` with what was and was not found ("no effect beyond +-delta
   found; effects up to ... not excluded"), or, where one estimator excludes the band and the
   other does not, "... finds an effect that ... does not: invalid instruments cannot be ruled
   out".
4. **Sign agreement.** An estimator whose interval excludes the band with the opposite sign makes
   the pair ``undetermined`` ("estimators disagree in sign").
5. **Heterogeneity beyond model noise.** Within a sequence, valid instruments of one causal effect
   agree up to the model's own noise (``run.local_checks.heterogeneity``: Cochran's Q against the
   paired, calibrated noise of each instrument's residual; a fit counts when the test rejects and
   its instruments' slopes vary by at least ``HETEROGENEITY_SPREAD`` of the estimate). Where
   clearly more sequences reject homogeneity than chance explains (a one-sided binomial test of
   the share against ``1 - level``, and a share of at least ``HETEROGENEITY_SHARE``), instruments
   of different kinds are mixed: ``undetermined``.
6. **Instrument strength (pair-level Steiger, Hemani et al. 2017).** Over the exposure's
   instruments, each feature's squared mutation effects in units of its own spread of effects in
   the sequence (``r2_exposure``, ``r2_outcome``, ``r2_other``: summed over instruments and fitted
   sequences). If X causes Y and the instruments act on Y only through X, Y's spread holds X's
   times ``|beta|`` plus Y's own, so the instruments explain less of Y than of X
   (``steiger_ratio = r2_outcome / r2_exposure < 1``), and less of any feature downstream of X
   than of X. A pair whose instruments explain at least as much of the outcome
   (``steiger_ratio >= 1``: reverse causation, a shared driver, or an outcome that is a copy of
   the exposure), or clearly more of another feature of the run (``other_ratio >=
   OTHER_RATIO``: the instruments are that feature's, a shared driver), is ``undetermined``.
   So is a pair whose instruments move that other feature in one fixed ratio to the exposure
   (``other_r2``, the squared cosine of the two features' standardized instrument effects, pooled
   over the fitted sequences, at least ``OTHER_R2``): the instruments then cannot separate the
   exposure from that feature, and a shared driver acting on the outcome directly (a pleiotropic
   site: the exposure's own sites were not learned, the instruments are the shared sites) gives
   the same data as a true effect. The threshold is a heuristic, not a test; its cost is that a
   true effect whose exposure moves a third feature in lockstep (a chain through it, or a copy
   of the exposure) is ``undetermined`` too: the instruments carry no evidence of which of the
   two acts.
7. **Direction.** The reverse direction must have been tested and not supported: the reverse
   pair (Y, X) analysed and estimable (step 1) and failing steps 2-6. If the reverse pair also
   passes steps 2-6, neither direction is claimed: both are ``undetermined`` (feedback, or a
   shared driver that the checks did not separate). A reverse pair with too few local fits
   (Y's own instruments are often weak: one or two per sequence, below ``min_instruments``) is
   tested by pooling its instruments over all sequences (``pooled_*`` columns: one IVW slope
   over every sequence's instruments with a cluster-robust SE over sequences,
   ``run.aggregate.pooled_ivw``) where at least ``min_sequences`` sequences have instruments:
   it counts as supported when that interval excludes the reverse pair's band ``[-margin,
   margin]`` (the minimum-effect p-value below ``1 - level``, per pair and unadjusted, so that
   the check errs towards finding the reverse effect) and its instruments move their exposure
   more than their outcome (``pooled_steiger_ratio < 1``, as in step 6: otherwise they are the
   forward exposure's own sites leaking into the reverse pair), and the forward pair is then
   ``undetermined``. With fewer sequences with instruments the reverse direction could not be
   tested and the forward pair is ``undetermined`` ("reverse direction could not be tested (k
   of N sequences with a local fit, m with instruments)").

Otherwise the pair is ``causal``. The claimed set is a subset of the Benjamini-Hochberg set of
step 2: under the conditions of Benjamini & Hochberg (1995) (independent or positively dependent
pair p-values) that set has a false-discovery rate of "effects beyond the margin" of at most
``1 - level``; steps 3-7 only remove pairs from it, so the expected number of false claims is at
most ``(1 - level)`` times the expected size of the BH set.

The per-unordered-pair ``direction`` column summarises the two verdicts: ``"X -> Y"`` when one
direction is causal, ``"both"`` when both directions passed steps 1-6, ``"neither"`` when both
are not causal, ``"undetermined"`` otherwise.

The verdict is about the model: a causal verdict says the model's outcome responds to mutations
through its exposure, beyond the smallest effect of interest, robustly to invalid instruments of
the kinds above; it is not proof of a biological mechanism.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# scipy.special evaluates the same t and binomial functions scipy.stats does, without the
# second that importing scipy.stats adds to every command's start
from scipy import special

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr.methods import METHOD_TABLE, method_label, methods_where

#: The three verdicts.
VERDICTS = ("causal", "not causal", "undetermined")
#: Estimators that must agree for a causal claim (those of them that were run).
AGREEMENT_METHODS = methods_where(agreement=True)
#: Estimators that tolerate a share of invalid instruments.
ROBUST_METHODS = methods_where(robust=True)
#: All estimators besides IVW that ``robust_disagreement`` compares with IVW.
NON_IVW_METHODS = tuple(m for m, spec in METHOD_TABLE.items() if spec.batched != "ivw")
#: Smallest share of sequences with significant local heterogeneity that counts as excess.
HETEROGENEITY_SHARE = 0.25
#: Smallest spread of the instruments' slopes, relative to the local estimate, that counts as
#: disagreement (a model with tiny noise makes the test reject mild nonlinearity too).
HETEROGENEITY_SPREAD = 0.25
#: Default smallest effect of interest, standardized (effect x sd_exposure / sd_outcome).
MIN_EFFECT = 0.1
#: ``other_ratio`` at or above which the exposure's instruments count as another feature's.
OTHER_RATIO = 1.0
#: ``other_r2`` at or above which the instruments cannot separate the exposure from the other
#: feature: that feature explains at least half of the exposure's instrument effects (a heuristic
#: threshold on a collinearity share, measured in the simulation experiment).
OTHER_R2 = 0.5
#: Global-table columns the rule reads.
REQUIRED_COLUMNS = (
    "exposure",
    "outcome",
    "method",
    "estimate",
    "se",
    "df",
    "ci_low",
    "ci_high",
    "n_sequences",
    "n_analysed",
    "heterogeneity_share",
    "heterogeneity_excess",
)
#: Columns of the pooled test over sequences (``run.aggregate.pooled_ivw``), which step 7 reads for
#: a reverse pair with too few local fits.
POOLED_COLUMNS = (
    "pooled_estimate",
    "pooled_se",
    "pooled_df",
    "pooled_ci_low",
    "pooled_ci_high",
    "pooled_sequences",
    "pooled_steiger_ratio",
)
#: Columns the rule reads where present (without them: no margin, no Steiger check).
OPTIONAL_COLUMNS = (
    "effect_scale",
    "steiger_ratio",
    "other_ratio",
    "other_feature",
    "other_r2",
    *POOLED_COLUMNS,
)
#: Columns :func:`verdicts` adds (besides ``verdict``, ``verdict_reason`` and ``direction``).
VERDICT_STATISTICS = ("min_effect", "pvalue_min_effect", "pair_pvalue", "pair_qvalue")


def _name(method: str) -> str:
    return method_label(method)


def _names(methods) -> str:
    return " and ".join(_name(m) for m in methods)


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


def _codes(column) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of a column's values as strings, and the distinct strings (object array)."""
    codes, uniques = pd.factorize(column.to_numpy() if hasattr(column, "to_numpy") else column)
    names = np.asarray([str(u) for u in uniques], dtype=object)
    # values that differ but print the same (1 and "1") are one name
    same, distinct = pd.factorize(names)
    return same[codes], np.asarray(distinct, dtype=object)


def _pair_ids(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Pair index of every row and the pairs (exposure, outcome), in order of appearance."""
    ex, ex_names = _codes(table["exposure"])
    oc, oc_names = _codes(table["outcome"])
    n_oc = max(len(oc_names), 1)
    ids, keys = pd.factorize(ex.astype(np.int64) * n_oc + oc)
    keys = np.asarray(keys, dtype=np.int64)
    pairs = pd.DataFrame({"exposure": ex_names[keys // n_oc], "outcome": oc_names[keys % n_oc]})
    return ids, pairs


def _per_pair(values, ids, rows, n_pairs) -> np.ndarray:
    """The values of the rows ``rows`` (one per pair at most) on the pair axis, NaN elsewhere."""
    out = np.full(n_pairs, np.nan)
    out[ids[rows]] = np.asarray(values, dtype=np.float64)[rows]
    return out


def statistics(
    table: pd.DataFrame,
    *,
    min_sequences: int = 5,
    level: float = 0.95,
    min_effect: float = MIN_EFFECT,
) -> pd.DataFrame:
    """The verdict's test statistics of every row (rule steps 1-2 of the module docstring).

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
    ids, pairs = _pair_ids(table)
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
    fitted = _per_pair(table["n_sequences"], ids, first, n_pairs)
    est_primary = _per_pair(estimate, ids, first, n_pairs)
    estimable = (fitted >= int(min_sequences)) & np.isfinite(est_primary)
    pair_p = np.zeros(n_pairs)
    signs = []
    for m in required:  # the intersection-union p-value: the largest (NaN if any is NaN)
        pair_p = np.maximum(pair_p, _per_pair(pme, ids, methods == m, n_pairs))
        signs.append(np.sign(_per_pair(estimate, ids, methods == m, n_pairs)))
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


@dataclass(frozen=True, eq=False)
class _PairView:
    """The rows of every ordered pair, as index arrays on the pair axis (P pairs).

    Attributes
    ----------
    work : DataFrame
        The table with the verdict's statistics (:func:`statistics`) alongside.
    pairs : DataFrame
        ``exposure``, ``outcome`` (str) of every pair, in order of appearance.
    ids : ndarray of int, shape (R,)
        The pair of every row.
    methods : ndarray of str, shape (R,)
        The method of every row.
    rows : dict of str to ndarray of int, shape (P,)
        Per method, the pair's row of that method (the last one), -1 where the pair lacks it.
    primary : ndarray of int, shape (P,)
        The row of the pair's primary estimator: IVW where the pair has it, else the pair's
        first method.
    """

    work: pd.DataFrame
    pairs: pd.DataFrame
    ids: np.ndarray
    methods: np.ndarray
    rows: dict
    primary: np.ndarray

    @classmethod
    def build(cls, work: pd.DataFrame) -> _PairView:
        ids, pairs = _pair_ids(work)
        n_pairs = len(pairs)
        methods = work["method"].astype(str).to_numpy()
        rows = {}
        for m in dict.fromkeys(methods):
            at = np.flatnonzero(methods == m)
            # the last row of the method in each pair (a later row replaces an earlier one)
            last_ids, first_rev = np.unique(ids[at][::-1], return_index=True)
            rows[m] = np.full(n_pairs, -1, dtype=np.int64)
            rows[m][last_ids] = at[::-1][first_rev]
        _, first_row = np.unique(ids, return_index=True)
        primary = np.full(n_pairs, -1, dtype=np.int64)
        for m, r in rows.items():  # the first method of the pair, where it has no IVW
            primary = np.where(methods[first_row] == m, r, primary)
        if "ivw" in rows:
            primary = np.where(rows["ivw"] >= 0, rows["ivw"], primary)
        return cls(work, pairs, ids, methods, rows, primary)

    def value(self, column: str, rows=None, fill=np.nan) -> np.ndarray:
        """``column`` at the pairs' ``rows`` (default: the primary rows), ``fill`` where a pair
        lacks the row or the table lacks the column."""
        rows = self.primary if rows is None else rows
        if column not in self.work:
            return np.full(len(rows), fill, dtype=object if isinstance(fill, str) else None)
        values = self.work[column].to_numpy()[np.maximum(rows, 0)]
        if values.dtype.kind in "fiub":
            values = values.astype(np.float64) if values.dtype.kind != "b" else values
        return np.where(rows >= 0, values, fill)


def _fmt(template: str, *columns) -> np.ndarray:
    """``template.format(*values)`` of every pair, as an object array."""
    return np.array([template.format(*v) for v in zip(*columns)], dtype=object)


def _required(view: _PairView) -> list:
    """The estimators a claim needs on every pair (those of :data:`AGREEMENT_METHODS` the pair
    has, else its primary), as (methods, pair mask) groups."""
    have = [m for m in AGREEMENT_METHODS if m in view.rows]
    present = np.stack([view.rows[m] >= 0 for m in have], axis=1) if have else None
    groups = []
    keys = np.zeros(len(view.pairs), dtype=np.int64)
    for i in range(len(have)):
        keys |= present[:, i].astype(np.int64) << i
    methods = view.methods
    for key in np.unique(keys):
        sel = keys == key
        chosen = [m for i, m in enumerate(have) if key >> i & 1]
        if chosen:
            groups.append((tuple(chosen), sel))
            continue
        primaries = methods[view.primary[sel]]  # no agreement method: the primary alone
        for m in dict.fromkeys(primaries):
            groups.append(((m,), _within(sel, primaries == m)))
    return groups


def _within(sel: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """The pairs of ``sel`` (bool, P) for which ``sub`` (bool, over the selected) holds."""
    out = np.zeros_like(sel)
    out[np.flatnonzero(sel)[sub]] = True
    return out


def _too_few(view: _PairView, min_sequences: int):
    """Step 1: pairs whose primary estimator has fewer than ``min_sequences`` local fits."""
    fitted = view.value("n_sequences").astype(np.int64)
    analysed = view.value("n_analysed").astype(np.int64)
    hit = (fitted < min_sequences) | ~np.isfinite(view.value("estimate"))
    reason = _fmt(
        f"too few sequences with a local fit ({{}} of {{}}; a verdict needs {min_sequences})",
        fitted[hit],
        analysed[hit],
    )
    return hit, reason


def _sign_disagreement(view: _PairView) -> np.ndarray:
    """Step 4: estimators (any of the pair's) whose intervals exclude the band on both sides."""
    distinct = np.zeros(len(view.pairs), dtype=np.int64)
    pos, neg, zero = (np.zeros(len(view.pairs), dtype=bool) for _ in range(3))
    for rows in view.rows.values():
        est = view.value("estimate", rows)
        margin = view.value("min_effect", rows)
        with np.errstate(invalid="ignore"):
            excl = (view.value("ci_low", rows) - margin > 0) | (
                view.value("ci_high", rows) + margin < 0
            )
        excl &= rows >= 0
        sign = np.sign(est)
        pos |= excl & (sign > 0)
        neg |= excl & (sign < 0)
        zero |= excl & (sign == 0)
        distinct += excl & np.isnan(sign)  # NaN signs differ from each other, as in a set
    return (distinct + pos + neg + zero) > 1


def _band(delta: float, scaled: np.ndarray) -> np.ndarray:
    """``+-delta`` (standardized where the pair has a scale) of every pair."""
    band = f"+-{delta:.3g}"
    return np.where(scaled, band + " standardized", band).astype(object)


def _no_claim(view: _PairView, sel: np.ndarray, alpha: float, delta: float):
    """Step 3 on the pairs ``sel`` whose pair test fails: verdicts and reasons (P,)."""
    verdict = np.full(len(view.pairs), "undetermined", dtype=object)
    reason = np.full(len(view.pairs), "", dtype=object)
    scale = view.value("effect_scale")
    scaled = np.isfinite(scale) & (scale > 0)
    band, q = _band(delta, scaled), view.value("pair_qvalue")
    for required, group in _required(view):
        group = group & sel
        with np.errstate(invalid="ignore"):
            beyond = np.stack(
                [view.value("pvalue_min_effect", view.rows[m]) < alpha for m in required], 1
            )
        for key in np.unique(beyond[group], axis=0):
            at = group & (beyond == key).all(axis=1)
            found = [m for m, b in zip(required, key) if b]
            missing = [m for m, b in zip(required, key) if not b]
            if found and missing:
                reason[at] = _fmt(
                    f"{_names(found)} find{'s' if len(found) == 1 else ''} an effect beyond {{}} "
                    f"that {_names(missing)} do{'es' if len(missing) == 1 else ''} not (per "
                    "pair, unadjusted): invalid instruments cannot be ruled out",
                    band[at],
                )
            elif found:
                reason[at] = _fmt(
                    f"{_names(found)} each exclude effects within {{}} (per pair, unadjusted). "
                    "The pair is not significant after the adjustment over pairs (pair q {:.2g})",
                    band[at],
                    q[at],
                )
            else:
                _equivalence(view, at, (band, scale, scaled, q), delta, (verdict, reason))
    return verdict, reason


def _equivalence(view: _PairView, at: np.ndarray, pair_values, delta: float, out) -> None:
    """Step 3's equivalence on the pairs ``at`` with no estimator beyond the band: not causal
    where the primary's standardized interval lies inside ``(-delta, delta)``."""
    band, scale, scaled, q = pair_values
    verdict, reason = out
    factor = np.where(scaled, scale, 1.0)
    lo, hi = view.value("ci_low") * factor, view.value("ci_high") * factor
    label = np.array([_name(m) for m in view.rows], dtype=object)[
        pd.Index(list(view.rows)).get_indexer(view.methods[view.primary])
    ]
    std = np.where(scaled, ", standardized", "")
    inside = at & (lo > -delta) & (hi < delta)
    reason[inside] = _fmt(
        "effect within {} ({} 95% interval [{:.3g}, {:.3g}]{}; per pair, unadjusted)",
        *(a[inside] for a in (band, label, lo, hi, std)),
    )
    verdict[inside] = "not causal"
    rest = at & ~inside
    a, b = np.abs(lo), np.abs(hi)
    reach = np.where(b > a, b, a)  # Python's max(|lo|, |hi|): the first unless the second is larger
    reason[rest] = _fmt(
        "no effect beyond {} found (pair q {:.2g}). Effects of interest are not excluded (up to "
        "{:.3g}: {} 95% interval [{:.3g}, {:.3g}]{}; per pair, unadjusted)",
        *(a[rest] for a in (band, q, reach, label, lo, hi, std)),
    )


def _checks(view: _PairView, sel: np.ndarray) -> list:
    """Steps 5-6 on the pairs ``sel`` that pass the pair test, in the rule's order: a list of
    (pairs it stops, their reasons)."""
    out = []
    excess = np.asarray(view.value("heterogeneity_excess", fill=False)).astype(bool)
    hit = sel & excess
    out.append(
        (
            hit,
            _fmt(
                "instruments disagree: heterogeneity beyond model noise in {:.0%} of sequences",
                view.value("heterogeneity_share")[hit],
            ),
        )
    )
    steiger = view.value("steiger_ratio")
    with np.errstate(invalid="ignore"):
        hit = sel & (steiger >= 1.0)
    out.append(
        (
            hit,
            _fmt(
                "the exposure's instruments move the outcome as much as the exposure (Steiger "
                "ratio {:.2f}): reverse causation or a shared driver cannot be ruled out",
                steiger[hit],
            ),
        )
    )
    other = view.value("other_ratio")
    with np.errstate(invalid="ignore"):
        hit = sel & (other >= OTHER_RATIO)
    out.append(
        (
            hit,
            _fmt(
                "the exposure's instruments act more strongly on {} than on the exposure (ratio "
                "{:.2f}): a shared driver cannot be ruled out",
                view.value("other_feature", fill="nan")[hit],
                other[hit],
            ),
        )
    )
    shared = view.value("other_r2")
    with np.errstate(invalid="ignore"):
        hit = sel & (shared >= OTHER_R2)
    named = view.value("other_feature", fill="nan")[hit]
    out.append(
        (
            hit,
            _fmt(
                "the exposure's instruments move {} in a fixed ratio to the exposure (R2 "
                "{:.2f}): whether the outcome follows the exposure or {} cannot be told from "
                "these instruments (a shared driver, or a path through that feature)",
                named,
                shared[hit],
                named,
            ),
        )
    )
    return out


@dataclass(frozen=True, eq=False)
class _Decided:
    """Steps 1-6 of every ordered pair (arrays over P): verdict, reason, whether the pair was
    estimable and whether it passed steps 2-6 (supported), fitted and analysed sequences."""

    verdict: np.ndarray
    reason: np.ndarray
    estimable: np.ndarray
    supported: np.ndarray
    fitted: np.ndarray
    analysed: np.ndarray


def _decide(view: _PairView, min_sequences: int, alpha: float, delta: float) -> _Decided:
    """Steps 1-6 of every pair; each gate decides only the pairs no earlier gate stopped."""
    n_pairs = len(view.pairs)
    verdict = np.full(n_pairs, "undetermined", dtype=object)
    reason = np.full(n_pairs, "", dtype=object)
    open_ = np.ones(n_pairs, dtype=bool)

    def stop(hit, why, what="undetermined"):  # the first gate that stops a pair decides it
        hit = hit & open_
        verdict[hit] = what if isinstance(what, str) else what[hit]
        reason[hit] = why[hit]
        open_[hit] = False

    too_few, why = _too_few(view, min_sequences)
    reason[too_few], open_[too_few] = why, False
    estimable = ~too_few
    stop(_sign_disagreement(view), np.full(n_pairs, "estimators disagree in sign", dtype=object))
    with np.errstate(invalid="ignore"):
        claim = view.value("pair_qvalue") < alpha
    no_claim = open_ & ~claim
    v, r = _no_claim(view, no_claim, alpha, delta)
    stop(no_claim, r, v)
    for hit, why in _checks(view, open_.copy()):
        full = np.full(n_pairs, "", dtype=object)
        full[hit] = why
        stop(hit, full)
    supported = open_.copy()
    q = view.value("pair_qvalue")
    for required, group in _required(view):
        at = group & supported
        reason[at] = _fmt(f"{_names(required)} agree (pair q {{:.2g}})", q[at])
    verdict[supported] = "causal"
    fitted = view.value("n_sequences").astype(np.int64)
    analysed = view.value("n_analysed").astype(np.int64)
    return _Decided(verdict, reason, estimable, supported, fitted, analysed)


def verdicts(
    table: pd.DataFrame,
    *,
    min_sequences: int = 5,
    level: float = 0.95,
    min_effect: float = MIN_EFFECT,
) -> pd.DataFrame:
    """Verdict, reason, direction and test statistics of every row's pair.

    Parameters
    ----------
    table : DataFrame
        The global table: rows per (exposure, outcome, method) with :data:`REQUIRED_COLUMNS`
        and, where known, :data:`OPTIONAL_COLUMNS`.
    min_sequences : int
        Fitted sequences a pair needs for any verdict but undetermined.
    level : float
        Confidence level of the run (tests at ``1 - level``).
    min_effect : float
        Smallest effect of interest, standardized (``delta`` of the module docstring).

    Returns
    -------
    DataFrame aligned with ``table``
        Columns ``verdict`` (one of :data:`VERDICTS`), ``verdict_reason``, ``direction`` and
        :data:`VERDICT_STATISTICS`.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in table]
    if missing:
        raise DeepMRInputError(
            f"a verdict needs the global table's columns {', '.join(missing)}; pass the table "
            "global_effects returns"
        )
    if not np.isfinite(min_effect) or min_effect < 0:
        raise DeepMRInputError(f"min_effect must be a finite number >= 0, got {min_effect}")
    alpha = 1.0 - level
    stats_ = statistics(table, min_sequences=min_sequences, level=level, min_effect=min_effect)
    view = _PairView.build(pd.concat([table, stats_], axis=1))
    decided = _decide(view, int(min_sequences), alpha, float(min_effect))
    final, reason, rev = _direction_step(view, decided, int(min_sequences), alpha)
    out = pd.DataFrame(
        {
            "verdict": final[view.ids],
            "verdict_reason": reason[view.ids],
            "direction": _direction(view, decided, final, rev)[view.ids],
        },
        index=table.index,
    )
    return pd.concat([out, stats_], axis=1)


def _direction_step(view: _PairView, d: _Decided, min_sequences: int, alpha: float) -> tuple:
    """Step 7: a supported pair is causal only when its reverse was tested and not supported.

    Returns the final verdicts and reasons (P,) and the index of every pair's reverse (-1: not
    analysed)."""
    ex, oc = view.pairs["exposure"].to_numpy(), view.pairs["outcome"].to_numpy()
    keys = pd.MultiIndex.from_arrays([ex, oc])
    rev = keys.get_indexer(pd.MultiIndex.from_arrays([oc, ex]))
    verdict, reason = d.verdict.copy(), d.reason.copy()
    sup = d.supported
    r = np.maximum(rev, 0)
    absent = sup & (rev < 0)
    reason[absent] = _fmt(
        "{}; reverse direction not analysed (run {} as an exposure and {} as an outcome to test "
        "it)",
        d.reason[absent],
        oc[absent],
        ex[absent],
    )
    pooled = _pooled_reverse(view, min_sequences, alpha)
    few = sup & (rev >= 0) & ~d.estimable[r]
    untested = few & ~pooled.tested[r]
    if "pooled_sequences" in view.work:
        reason[untested] = _fmt(
            "{}; reverse direction could not be tested ({} of {} sequences with a local fit, {} "
            f"with instruments; the pooled test needs {min_sequences})",
            d.reason[untested],
            d.fitted[r][untested],
            d.analysed[r][untested],
            pooled.sequences[r][untested],
        )
    else:  # a table from before the pooled test
        reason[untested] = _fmt(
            "{}; reverse direction could not be tested ({} of {} sequences with a local fit)",
            d.reason[untested],
            d.fitted[r][untested],
            d.analysed[r][untested],
        )
    pooled_both = few & pooled.tested[r] & pooled.supported[r]
    pooled_not = few & pooled.tested[r] & ~pooled.supported[r]
    figures = [pooled.sequences[r], pooled.estimate[r], pooled.ci_low[r], pooled.ci_high[r]]
    reason[pooled_both] = _fmt(
        "{}; but the reverse direction is supported by its instruments pooled over {} sequences "
        "({:.3g} [{:.3g}, {:.3g}], beyond {:.3g}; per pair, unadjusted): feedback, or a shared "
        "driver the checks did not separate",
        *(c[pooled_both] for c in (d.reason, *figures, pooled.margin[r])),
    )
    reason[pooled_not] = _fmt(
        "{}, reverse direction tested on its instruments pooled over {} sequences (too few per "
        "sequence for a local fit) and not supported ({:.3g} [{:.3g}, {:.3g}]; Steiger ratio "
        "{:.2f})",
        *(c[pooled_not] for c in (d.reason, *figures, pooled.steiger[r])),
    )
    both = sup & (rev >= 0) & d.estimable[r] & d.supported[r]
    reason[both] = (
        "both directions supported: feedback, or a shared driver the checks did not separate"
    )
    tested = sup & (rev >= 0) & d.estimable[r] & ~d.supported[r]
    reason[tested] = _fmt("{}, reverse direction tested and not supported", d.reason[tested])
    verdict[absent | untested | both | pooled_both] = "undetermined"
    return verdict, reason, rev


@dataclass(frozen=True, eq=False)
class _Pooled:
    """The pooled test over sequences of every pair (arrays over P): whether it can be made
    (at least ``min_sequences`` sequences with instruments), whether it finds an effect beyond
    the pair's margin, and its figures."""

    tested: np.ndarray
    supported: np.ndarray
    sequences: np.ndarray
    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    margin: np.ndarray
    steiger: np.ndarray


def _pooled_reverse(view: _PairView, min_sequences: int, alpha: float) -> _Pooled:
    """Step 7's fallback for a reverse pair with too few local fits: the pooled test."""
    count = np.nan_to_num(view.value("pooled_sequences", fill=0.0).astype(np.float64))
    estimate, se = view.value("pooled_estimate"), view.value("pooled_se")
    margin = np.nan_to_num(view.value("min_effect"))
    p = min_effect_pvalue(estimate, se, view.value("pooled_df"), margin)
    tested = (count >= min_sequences) & np.isfinite(p)
    # as in step 6: instruments that move the outcome as much as the exposure are the outcome's
    # own sites (here: the forward exposure's, leaking into the reverse pair), not evidence
    steiger = view.value("pooled_steiger_ratio")
    with np.errstate(invalid="ignore"):
        supported = tested & (p < alpha) & ~(steiger >= 1.0)
    return _Pooled(
        tested,
        supported,
        count.astype(np.int64),
        estimate,
        view.value("pooled_ci_low"),
        view.value("pooled_ci_high"),
        margin,
        steiger,
    )


def _direction(view: _PairView, d: _Decided, final: np.ndarray, rev: np.ndarray) -> np.ndarray:
    """Direction of every pair's unordered pair {x, y} from its two ordered verdicts (P,)."""
    ex, oc = view.pairs["exposure"].to_numpy(), view.pairs["outcome"].to_numpy()
    out = np.full(len(ex), "undetermined", dtype=object)
    r = np.maximum(rev, 0)
    has = rev >= 0
    fwd_causal = has & (final == "causal")
    rev_causal = has & ~fwd_causal & (final[r] == "causal")
    out[fwd_causal] = _fmt("{} -> {}", ex[fwd_causal], oc[fwd_causal])
    out[rev_causal] = _fmt("{} -> {}", oc[rev_causal], ex[rev_causal])
    rest = has & ~fwd_causal & ~rev_causal
    both = rest & d.supported & d.supported[r]
    out[both] = "both"
    neither = rest & ~both & (final == "not causal") & (final[r] == "not causal")
    out[neither] = "neither"
    return out


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
    ids, pairs = _pair_ids(table)
    method = table["method"].astype(str).to_numpy()
    lo, hi = table["ci_low"].to_numpy(np.float64), table["ci_high"].to_numpy(np.float64)
    ivw_lo, ivw_hi = np.full(len(pairs), np.nan), np.full(len(pairs), np.nan)
    at = np.flatnonzero(method == "ivw")
    ivw_lo[ids[at]], ivw_hi[ids[at]] = lo[at], hi[at]
    other = np.isin(method, NON_IVW_METHODS)
    a, b = ivw_lo[ids], ivw_hi[ids]
    finite = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(a) & np.isfinite(b)
    with np.errstate(invalid="ignore"):
        apart = other & finite & ((hi < a) | (b < lo))
    flagged = np.zeros(len(pairs), dtype=bool)
    flagged[ids[apart]] = True
    return pd.Series(flagged[ids], index=table.index, name="robust_disagreement")
