"""Step 7 of the verdict (:mod:`deepmr_kipoi.verdict`): a supported pair is causal only when its
reverse was tested and not supported, with the pooled test over sequences for a reverse pair with
too few local fits; and the direction of every unordered pair from its two verdicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepmr_kipoi.verdict._pairs import Decided, PairView, fmt
from deepmr_kipoi.verdict.significance import min_effect_pvalue


def direction_step(view: PairView, d: Decided, min_sequences: int, alpha: float) -> tuple:
    """Step 7: a supported pair is causal only when its reverse was tested and not supported.

    Parameters
    ----------
    view : PairView
        The P ordered pairs of the global table, with the verdict's statistics.
    d : Decided
        Steps 1-6 of every pair.
    min_sequences : int
        Sequences with instruments the pooled test of a reverse pair with too few local fits needs.
    alpha : float
        ``1 - level``.

    Returns
    -------
    verdict, reason : ndarray of object, shape (P,)
        The final verdicts and their reasons.
    rev : ndarray of int, shape (P,)
        The index of every pair's reverse (-1: not analysed).
    """
    ex, oc = view.pairs["exposure"].to_numpy(), view.pairs["outcome"].to_numpy()
    keys = pd.MultiIndex.from_arrays([ex, oc])
    rev = keys.get_indexer(pd.MultiIndex.from_arrays([oc, ex]))
    verdict, reason = d.verdict.copy(), d.reason.copy()
    sup = d.supported
    r = np.maximum(rev, 0)
    absent = sup & (rev < 0)
    reason[absent] = fmt(
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
        reason[untested] = fmt(
            "{}; reverse direction could not be tested ({} of {} sequences with a local fit, {} "
            f"with instruments; the pooled test needs {min_sequences})",
            d.reason[untested],
            d.fitted[r][untested],
            d.analysed[r][untested],
            pooled.sequences[r][untested],
        )
    else:  # a table from before the pooled test
        reason[untested] = fmt(
            "{}; reverse direction could not be tested ({} of {} sequences with a local fit)",
            d.reason[untested],
            d.fitted[r][untested],
            d.analysed[r][untested],
        )
    pooled_both = few & pooled.tested[r] & pooled.supported[r]
    pooled_not = few & pooled.tested[r] & ~pooled.supported[r]
    figures = [pooled.sequences[r], pooled.estimate[r], pooled.ci_low[r], pooled.ci_high[r]]
    reason[pooled_both] = fmt(
        "{}; but the reverse direction is supported by its instruments pooled over {} sequences "
        "({:.3g} [{:.3g}, {:.3g}], beyond {:.3g}; per pair, unadjusted): feedback, or a shared "
        "driver the checks did not separate",
        *(c[pooled_both] for c in (d.reason, *figures, pooled.margin[r])),
    )
    reason[pooled_not] = fmt(
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
    reason[tested] = fmt("{}, reverse direction tested and not supported", d.reason[tested])
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


def _pooled_reverse(view: PairView, min_sequences: int, alpha: float) -> _Pooled:
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


def directions(view: PairView, d: Decided, final: np.ndarray, rev: np.ndarray) -> np.ndarray:
    """The direction of every pair's unordered pair {x, y} from its two ordered verdicts.

    Parameters
    ----------
    view : PairView
        The P ordered pairs.
    d : Decided
        Steps 1-6 of every pair (which pairs were supported).
    final : ndarray of object, shape (P,)
        The final verdicts (:func:`direction_step`).
    rev : ndarray of int, shape (P,)
        The index of every pair's reverse (-1: not analysed).

    Returns
    -------
    ndarray of object, shape (P,)
        ``"x -> y"``, ``"both"``, ``"neither"`` or ``"undetermined"``.
    """
    ex, oc = view.pairs["exposure"].to_numpy(), view.pairs["outcome"].to_numpy()
    out = np.full(len(ex), "undetermined", dtype=object)
    r = np.maximum(rev, 0)
    has = rev >= 0
    fwd_causal = has & (final == "causal")
    rev_causal = has & ~fwd_causal & (final[r] == "causal")
    out[fwd_causal] = fmt("{} -> {}", ex[fwd_causal], oc[fwd_causal])
    out[rev_causal] = fmt("{} -> {}", oc[rev_causal], ex[rev_causal])
    rest = has & ~fwd_causal & ~rev_causal
    both = rest & d.supported & d.supported[r]
    out[both] = "both"
    neither = rest & ~both & (final == "not causal") & (final[r] == "not causal")
    out[neither] = "neither"
    return out
