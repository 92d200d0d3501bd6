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
   agree up to the model's own noise (``run.local.heterogeneity``: Cochran's Q against the
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
   pair (Y, X) analysed and estimable (step 1) and failing steps 2-6. Otherwise the forward pair
   is ``undetermined`` ("reverse direction could not be tested (k of N sequences with a local
   fit)"). If the reverse pair also passes steps 2-6, neither direction is claimed: both are
   ``undetermined`` (feedback, or a shared driver that the checks did not separate).

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
from scipy import stats

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
#: feature (a heuristic threshold on a collinearity share; measured in the simulation experiment).
OTHER_R2 = 0.7
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
#: Columns the rule reads where present (without them: no margin, no Steiger check).
OPTIONAL_COLUMNS = (
    "effect_scale",
    "steiger_ratio",
    "other_ratio",
    "other_feature",
    "other_r2",
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
    p = stats.binom.sf(count - 1, np.maximum(n, 1), alpha)
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
        p = np.minimum(1.0, 2.0 * stats.t.sf(excess / np.where(se > 0, se, 1.0), df))
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


def _pair_ids(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Pair index of every row and the pairs (exposure, outcome), in order of appearance."""
    keys = pd.MultiIndex.from_arrays(
        [table["exposure"].astype(str).to_numpy(), table["outcome"].astype(str).to_numpy()]
    )
    ids, pairs = pd.factorize(keys)
    return ids, pd.DataFrame(list(pairs), columns=["exposure", "outcome"])


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


@dataclass(frozen=True)
class _Decision:
    """One ordered pair before the direction step: its verdict, reason and standing."""

    verdict: str
    reason: str
    estimable: bool = False
    supported: bool = False
    fitted: int = 0
    analysed: int = 0


def _std(value: float, scale: float) -> float:
    return value * scale if np.isfinite(scale) and scale > 0 else value


def _no_claim(by_method, primary, required, alpha, delta, scale) -> _Decision:
    """Step 3: a pair whose pair test fails: not causal (equivalence) or undetermined."""
    beyond = [m for m in required if by_method[m].pvalue_min_effect < alpha]
    missing = [m for m in required if m not in beyond]
    fitted, analysed = int(primary.n_sequences), int(primary.n_analysed)
    keep = {"estimable": True, "fitted": fitted, "analysed": analysed}
    band = f"+-{delta:.3g}" + (" standardized" if np.isfinite(scale) and scale > 0 else "")
    if beyond and missing:
        return _Decision(
            "undetermined",
            f"{_names(beyond)} find{'s' if len(beyond) == 1 else ''} an effect beyond {band} "
            f"that {_names(missing)} do{'es' if len(missing) == 1 else ''} not (per pair, "
            "unadjusted): invalid instruments cannot be ruled out",
            **keep,
        )
    if beyond:
        return _Decision(
            "undetermined",
            f"{_names(beyond)} each exclude effects within {band} (per pair, unadjusted). The "
            f"pair is not significant after the adjustment over pairs (pair q {primary.pair_qvalue:.2g})",
            **keep,
        )
    lo, hi = _std(primary.ci_low, scale), _std(primary.ci_high, scale)
    interval = f"{_name(primary.method)} 95% interval [{lo:.3g}, {hi:.3g}]"
    if np.isfinite(scale) and scale > 0:
        interval += ", standardized"
    if lo > -delta and hi < delta:
        return _Decision(
            "not causal", f"effect within {band} ({interval}; per pair, unadjusted)", **keep
        )
    reach = max(abs(lo), abs(hi))
    return _Decision(
        "undetermined",
        f"no effect beyond {band} found (pair q {primary.pair_qvalue:.2g}). Effects of interest "
        f"are not excluded (up to {reach:.3g}: {interval}; per pair, unadjusted)",
        **keep,
    )


def _pair_decision(rows: pd.DataFrame, min_sequences: int, alpha: float, delta: float):
    """Steps 1-6 of one ordered pair (the direction step needs the reverse pair)."""
    by_method = {str(r.method): r for r in rows.itertuples(index=False)}
    primary = by_method.get("ivw") or next(iter(by_method.values()))
    fitted, analysed = int(primary.n_sequences), int(primary.n_analysed)
    steiger = float(getattr(primary, "steiger_ratio", np.nan))
    if fitted < min_sequences or not np.isfinite(primary.estimate):
        return _Decision(
            "undetermined",
            f"too few sequences with a local fit ({fitted} of {analysed}; a verdict needs "
            f"{min_sequences})",
            fitted=fitted,
            analysed=analysed,
        )
    scale = float(getattr(primary, "effect_scale", np.nan))
    required = [m for m in AGREEMENT_METHODS if m in by_method] or [str(primary.method)]
    keep = {"estimable": True, "fitted": fitted, "analysed": analysed}
    lower = {m: r.ci_low - r.min_effect for m, r in by_method.items()}
    upper = {m: r.ci_high + r.min_effect for m, r in by_method.items()}
    side = {m: np.sign(r.estimate) for m, r in by_method.items() if lower[m] > 0 or upper[m] < 0}
    if len(set(side.values())) > 1:
        return _Decision("undetermined", "estimators disagree in sign", **keep)
    if not primary.pair_qvalue < alpha:
        return _no_claim(by_method, primary, required, alpha, delta, scale)
    reason = f"{_names(required)} agree (pair q {primary.pair_qvalue:.2g})"
    if bool(primary.heterogeneity_excess):
        return _Decision(
            "undetermined",
            "instruments disagree: heterogeneity beyond model noise in "
            f"{primary.heterogeneity_share:.0%} of sequences",
            **keep,
        )
    if steiger >= 1.0:
        return _Decision(
            "undetermined",
            "the exposure's instruments move the outcome as much as the exposure (Steiger "
            f"ratio {steiger:.2f}): reverse causation or a shared driver cannot be ruled out",
            **keep,
        )
    other = float(getattr(primary, "other_ratio", np.nan))
    if other >= OTHER_RATIO:
        return _Decision(
            "undetermined",
            f"the exposure's instruments act more strongly on {primary.other_feature} than on "
            f"the exposure (ratio {other:.2f}): a shared driver cannot be ruled out",
            **keep,
        )
    shared = float(getattr(primary, "other_r2", np.nan))
    if shared >= OTHER_R2:
        return _Decision(
            "undetermined",
            f"the exposure's instruments move {primary.other_feature} in a fixed ratio to the "
            f"exposure (R2 {shared:.2f}): whether the outcome follows the exposure or "
            f"{primary.other_feature} cannot be told from these instruments (a shared driver, "
            "or a path through that feature)",
            **keep,
        )
    return _Decision("causal", reason, supported=True, **keep)


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
    work = pd.concat([table, stats_], axis=1)
    decided = {}
    for key, rows in work.groupby(["exposure", "outcome"], sort=False, observed=True):
        decided[(str(key[0]), str(key[1]))] = _pair_decision(
            rows, int(min_sequences), alpha, float(min_effect)
        )
    final = {pair: _direction_step(pair, d, decided) for pair, d in decided.items()}
    pairs = list(zip(table["exposure"].astype(str), table["outcome"].astype(str)))
    out = pd.DataFrame(
        {"verdict": [final[p][0] for p in pairs], "verdict_reason": [final[p][1] for p in pairs]},
        index=table.index,
    )
    out["direction"] = [_direction(final, decided, x, y) for x, y in pairs]
    return pd.concat([out, stats_], axis=1)


def _direction_step(pair, decision: _Decision, decided: dict) -> tuple[str, str]:
    """Step 7: a supported pair is causal only when its reverse was tested and not supported."""
    if not decision.supported:
        return decision.verdict, decision.reason
    reverse = decided.get(pair[::-1])
    if reverse is None:
        return (
            "undetermined",
            f"{decision.reason}; reverse direction not analysed (run {pair[1]} as an exposure "
            f"and {pair[0]} as an outcome to test it)",
        )
    if not reverse.estimable:
        return (
            "undetermined",
            f"{decision.reason}; reverse direction could not be tested ({reverse.fitted} of "
            f"{reverse.analysed} sequences with a local fit)",
        )
    if reverse.supported:
        return (
            "undetermined",
            "both directions supported: feedback, or a shared driver the checks did not separate",
        )
    return "causal", f"{decision.reason}, reverse direction tested and not supported"


def _direction(final: dict, decided: dict, x: str, y: str) -> str:
    """Direction of the unordered pair {x, y} from its two ordered verdicts."""
    fwd, rev = final.get((x, y)), final.get((y, x))
    if fwd is None or rev is None:
        return "undetermined"
    if fwd[0] == "causal":
        return f"{x} -> {y}"
    if rev[0] == "causal":
        return f"{y} -> {x}"
    if decided[(x, y)].supported and decided[(y, x)].supported:
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
