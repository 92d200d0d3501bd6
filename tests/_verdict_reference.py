"""The verdict's rule as a loop over pairs: the reference the vectorised ``verdict.verdicts`` is
checked against (the rule of ``deepmr_kipoi.verdict``'s module docstring, one pair at a time, as the
library computed it before the verdict became array code). Keep it in step with the rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from deepmr_kipoi.mr.methods import method_label as _name
from deepmr_kipoi.verdict import (
    AGREEMENT_METHODS,
    MIN_EFFECT,
    NON_IVW_METHODS,
    OTHER_R2,
    OTHER_RATIO,
    statistics,
)
from deepmr_kipoi.verdict._pairs import method_names as _names


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


def reference_verdicts(
    table: pd.DataFrame,
    *,
    min_sequences: int = 5,
    level: float = 0.95,
    min_effect: float = MIN_EFFECT,
) -> pd.DataFrame:
    """``verdict.verdicts`` computed pair by pair (a groupby loop), for comparison."""
    alpha = 1.0 - level
    stats_ = statistics(table, min_sequences=min_sequences, level=level, min_effect=min_effect)
    work = pd.concat([table, stats_], axis=1)
    decided = {}
    for key, rows in work.groupby(["exposure", "outcome"], sort=False, observed=True):
        decided[(str(key[0]), str(key[1]))] = _pair_decision(
            rows, int(min_sequences), alpha, float(min_effect)
        )
    pooled = {
        pair: _pooled_reverse(rows, int(min_sequences), alpha)
        for pair, rows in (
            ((str(k[0]), str(k[1])), r)
            for k, r in work.groupby(["exposure", "outcome"], sort=False, observed=True)
        )
    }
    context = (pooled, int(min_sequences), "pooled_sequences" in table)
    final = {pair: _direction_step(pair, d, decided, context) for pair, d in decided.items()}
    pairs = list(zip(table["exposure"].astype(str), table["outcome"].astype(str)))
    out = pd.DataFrame(
        {"verdict": [final[p][0] for p in pairs], "verdict_reason": [final[p][1] for p in pairs]},
        index=table.index,
    )
    out["direction"] = [_direction(final, decided, x, y) for x, y in pairs]
    return pd.concat([out, stats_], axis=1)


def _pooled_reverse(rows: pd.DataFrame, min_sequences: int, alpha: float) -> dict:
    """The pooled test of one pair (its primary row): tested where enough sequences have
    instruments; supported where its 1 - alpha t interval lies beyond the margin."""
    by_method = {str(r.method): r for r in rows.itertuples(index=False)}
    primary = by_method.get("ivw") or next(iter(by_method.values()))
    count = getattr(primary, "pooled_sequences", 0)
    count = int(count) if np.isfinite(count) else 0
    est, se = (
        float(getattr(primary, "pooled_estimate", np.nan)),
        float(getattr(primary, "pooled_se", np.nan)),
    )
    df = float(getattr(primary, "pooled_df", np.nan))
    margin = float(primary.min_effect) if np.isfinite(primary.min_effect) else 0.0
    tested = count >= min_sequences and np.isfinite(est) and np.isfinite(se) and not np.isnan(df)
    steiger = float(getattr(primary, "pooled_steiger_ratio", np.nan))
    beyond = tested and abs(est) - margin > stats.t.ppf(1 - alpha / 2, df) * se
    supported = beyond and not steiger >= 1.0
    return {
        "tested": tested,
        "supported": supported,
        "count": count,
        "text": f"({est:.3g} [{getattr(primary, 'pooled_ci_low', np.nan):.3g}, "
        f"{getattr(primary, 'pooled_ci_high', np.nan):.3g}]",
        "margin": margin,
        "steiger": steiger,
    }


def _direction_step(pair, decision: _Decision, decided: dict, context) -> tuple[str, str]:
    """Step 7: a supported pair is causal only when its reverse was tested and not supported
    (by its local fits, or by its instruments pooled over sequences)."""
    pooled, min_sequences, has_pooled = context
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
        test = pooled[pair[::-1]]
        if not has_pooled:
            return (
                "undetermined",
                f"{decision.reason}; reverse direction could not be tested ({reverse.fitted} of "
                f"{reverse.analysed} sequences with a local fit)",
            )
        if not test["tested"]:
            return (
                "undetermined",
                f"{decision.reason}; reverse direction could not be tested ({reverse.fitted} of "
                f"{reverse.analysed} sequences with a local fit, {test['count']} with "
                f"instruments; the pooled test needs {min_sequences})",
            )
        if test["supported"]:
            return (
                "undetermined",
                f"{decision.reason}; but the reverse direction is supported by its instruments "
                f"pooled over {test['count']} sequences {test['text']}, beyond "
                f"{test['margin']:.3g}; per pair, unadjusted): feedback, or a shared driver the "
                "checks did not separate",
            )
        return (
            "causal",
            f"{decision.reason}, reverse direction tested on its instruments pooled over "
            f"{test['count']} sequences (too few per sequence for a local fit) and not supported "
            f"{test['text']}; Steiger ratio {test['steiger']:.2f})",
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


def reference_robust_disagreement(table: pd.DataFrame) -> pd.Series:
    """``verdict.robust_disagreement`` as the loop over rows it was, for comparison."""
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
