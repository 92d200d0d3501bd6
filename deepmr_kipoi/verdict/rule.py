"""Steps 1-6 of the verdict's rule (:mod:`deepmr_kipoi.verdict`: the rule and why), one function
per gate applied in the rule's order by ``_decide``, and :func:`verdicts`, which adds step 7
(:mod:`deepmr_kipoi.verdict.direction`) and returns the verdict of every row's pair."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr.methods import METHOD_TABLE, method_label, methods_where
from deepmr_kipoi.verdict._pairs import (
    Decided,
    PairView,
    fmt,
    method_names,
    pair_ids,
)
from deepmr_kipoi.verdict.direction import direction_step, directions
from deepmr_kipoi.verdict.significance import AGREEMENT_METHODS, MIN_EFFECT, statistics

#: The three verdicts.
VERDICTS = ("causal", "not causal", "undetermined")
#: Estimators that tolerate a share of invalid instruments.
ROBUST_METHODS = methods_where(robust=True)
#: All estimators besides IVW that ``robust_disagreement`` compares with IVW.
NON_IVW_METHODS = tuple(m for m, spec in METHOD_TABLE.items() if spec.batched != "ivw")
#: Smallest spread of the instruments' slopes, relative to the local estimate, that counts as
#: disagreement (a model with tiny noise makes the test reject mild nonlinearity too).
HETEROGENEITY_SPREAD = 0.25
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


def _required(view: PairView) -> list:
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


def _too_few(view: PairView, min_sequences: int):
    """Step 1: pairs whose primary estimator has fewer than ``min_sequences`` local fits."""
    fitted = view.value("n_sequences").astype(np.int64)
    analysed = view.value("n_analysed").astype(np.int64)
    hit = (fitted < min_sequences) | ~np.isfinite(view.value("estimate"))
    reason = fmt(
        f"too few sequences with a local fit ({{}} of {{}}; a verdict needs {min_sequences})",
        fitted[hit],
        analysed[hit],
    )
    return hit, reason


def _sign_disagreement(view: PairView) -> np.ndarray:
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


def _no_claim(view: PairView, sel: np.ndarray, alpha: float, delta: float):
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
                reason[at] = fmt(
                    f"{method_names(found)} find{'s' if len(found) == 1 else ''} an effect beyond {{}} "
                    f"that {method_names(missing)} do{'es' if len(missing) == 1 else ''} not (per "
                    "pair, unadjusted): invalid instruments cannot be ruled out",
                    band[at],
                )
            elif found:
                reason[at] = fmt(
                    f"{method_names(found)} each exclude effects within {{}} (per pair, unadjusted). "
                    "The pair is not significant after the adjustment over pairs (pair q {:.2g})",
                    band[at],
                    q[at],
                )
            else:
                _equivalence(view, at, (band, scale, scaled, q), delta, (verdict, reason))
    return verdict, reason


def _equivalence(view: PairView, at: np.ndarray, pair_values, delta: float, out) -> None:
    """Step 3's equivalence on the pairs ``at`` with no estimator beyond the band: not causal
    where the primary's standardized interval lies inside ``(-delta, delta)``."""
    band, scale, scaled, q = pair_values
    verdict, reason = out
    factor = np.where(scaled, scale, 1.0)
    lo, hi = view.value("ci_low") * factor, view.value("ci_high") * factor
    label = np.array([method_label(m) for m in view.rows], dtype=object)[
        pd.Index(list(view.rows)).get_indexer(view.methods[view.primary])
    ]
    std = np.where(scaled, ", standardized", "")
    inside = at & (lo > -delta) & (hi < delta)
    reason[inside] = fmt(
        "effect within {} ({} 95% interval [{:.3g}, {:.3g}]{}; per pair, unadjusted)",
        *(a[inside] for a in (band, label, lo, hi, std)),
    )
    verdict[inside] = "not causal"
    rest = at & ~inside
    a, b = np.abs(lo), np.abs(hi)
    reach = np.where(b > a, b, a)  # Python's max(|lo|, |hi|): the first unless the second is larger
    reason[rest] = fmt(
        "no effect beyond {} found (pair q {:.2g}). Effects of interest are not excluded (up to "
        "{:.3g}: {} 95% interval [{:.3g}, {:.3g}]{}; per pair, unadjusted)",
        *(a[rest] for a in (band, q, reach, label, lo, hi, std)),
    )


def _checks(view: PairView, sel: np.ndarray) -> list:
    """Steps 5-6 on the pairs ``sel`` that pass the pair test, in the rule's order: a list of
    (pairs it stops, their reasons)."""
    out = []
    excess = np.asarray(view.value("heterogeneity_excess", fill=False)).astype(bool)
    hit = sel & excess
    out.append(
        (
            hit,
            fmt(
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
            fmt(
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
            fmt(
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
            fmt(
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


def _decide(view: PairView, min_sequences: int, alpha: float, delta: float) -> Decided:
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
        reason[at] = fmt(f"{method_names(required)} agree (pair q {{:.2g}})", q[at])
    verdict[supported] = "causal"
    fitted = view.value("n_sequences").astype(np.int64)
    analysed = view.value("n_analysed").astype(np.int64)
    return Decided(verdict, reason, estimable, supported, fitted, analysed)


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
        Smallest effect of interest, standardized (``delta`` of the rule, :mod:`deepmr_kipoi.verdict`).

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
    view = PairView.build(pd.concat([table, stats_], axis=1))
    decided = _decide(view, int(min_sequences), alpha, float(min_effect))
    final, reason, rev = direction_step(view, decided, int(min_sequences), alpha)
    out = pd.DataFrame(
        {
            "verdict": final[view.ids],
            "verdict_reason": reason[view.ids],
            "direction": directions(view, decided, final, rev)[view.ids],
        },
        index=table.index,
    )
    return pd.concat([out, stats_], axis=1)


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
    ids, pairs = pair_ids(table)
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
