"""Mendelian randomization estimators, matching the R packages TwoSampleMR and MendelianRandomization.

Scalar API (one instrument set; degenerate input raises ``ValueError``)::

    from deepmr_kipoi import mr
    r = mr.ivw(bx, by, se_bx, se_by)            # multiplicative random effects
    r = mr.ivw_fe(bx, by, se_bx, se_by)         # fixed effect
    r = mr.egger(bx, by, se_bx, se_by)          # r.intercept, r.intercept_se, r.i2_gx (percent)
    r = mr.weighted_median(bx, by, se_bx, se_by, weights="second", n_boot=1000, seed=0)
    r = mr.simple_median(bx, by, se_bx, se_by, n_boot=1000, seed=0)
    r = mr.weighted_mode(bx, by, se_bx, se_by, phi=1, n_boot=1000, seed=0)
    r.estimate, r.se, r.ci_low, r.ci_high, r.pvalue, r.n_instruments, r.diagnostics

Batched API (many cells; degenerate cells are NaN with a code in ``REASONS``)::

    b = mr.run_batched("egger", bx, by, se_bx, se_by, mask, n_boot=1000, seed=0, level=0.95)

All exposure x outcome pairs (IVW, IVW-FE, Egger as matrix products; optional sample axis)::

    res = mr.all_pairs(b, se_bx=se, selection=mask)  # b (N, F, K) or (S, N, F, K): all ordered pairs
    res["egger"].estimate                       # (N, F, F) or (S, N, F, F)

Minimum instruments (``MIN_INSTRUMENTS``): 2 for IVW and IVW-FE (the residual SE needs one degree of
freedom), 3 for the others, as TwoSampleMR. Every method also needs finite values and positive SEs
for all selected instruments and a non-zero ``b_x`` somewhere; the ratio methods (medians, mode)
need ``b_x != 0`` for every instrument, and MR-Egger two distinct ``|b_x|``.

Inference conventions. Each p-value is the one the R function named computes; intervals use the same
distribution as the p-value, so a ``level`` interval excludes 0 exactly when
``pvalue < 1 - level``:

==================  ======================  ======================================================
method              p-value and interval    R reference, and where its interval differs
==================  ======================  ======================================================
ivw, ivw_fe         normal                  TwoSampleMR ``mr_ivw`` / ``mr_ivw_fe``
egger               t, ``K - 2`` df         TwoSampleMR ``mr_egger_regression`` (slope and
                                            intercept p); TwoSampleMR reports ``b +- 1.96 se``
                                            intervals, MendelianRandomization's default is normal
weighted_median,    normal                  TwoSampleMR ``mr_weighted_median`` /
simple_median                               ``mr_simple_median``; MendelianRandomization
                                            ``mr_median`` (first-order weights)
weighted_mode       t, ``K - 1`` df         TwoSampleMR ``mr_mode`` p; its interval uses normal
                                            quantiles
==================  ======================  ======================================================

Each estimator module (``ivw``, ``egger``, ``median``, ``mode``, ``batched``) documents its formulas
and names its approximations.
"""

from deepmr_kipoi.mr._common import METHODS, MIN_INSTRUMENTS, REASONS
from deepmr_kipoi.mr._result_types import (
    EggerResult,
    IVWResult,
    MedianResult,
    ModeResult,
    MRBatchResult,
    MRResult,
)
from deepmr_kipoi.mr.batched import run_batched
from deepmr_kipoi.mr.egger import egger, i2_gx
from deepmr_kipoi.mr.ivw import ivw, ivw_fe
from deepmr_kipoi.mr.median import simple_median, weighted_median
from deepmr_kipoi.mr.methods import METHOD_TABLE, MRMethod, method_label, methods_where
from deepmr_kipoi.mr.mode import weighted_mode
from deepmr_kipoi.mr.pairwise import PAIR_METHODS, PairEstimates, PairSelection, all_pairs

#: Scalar estimator by method name (one per row of ``METHOD_TABLE``).
ESTIMATORS = {
    "ivw": ivw,
    "ivw_fe": ivw_fe,
    "egger": egger,
    "weighted_median": weighted_median,
    "simple_median": simple_median,
    "weighted_mode": weighted_mode,
}

__all__ = [
    "ESTIMATORS",
    "METHODS",
    "METHOD_TABLE",
    "MIN_INSTRUMENTS",
    "PAIR_METHODS",
    "REASONS",
    "EggerResult",
    "IVWResult",
    "MRBatchResult",
    "MRMethod",
    "MRResult",
    "MedianResult",
    "ModeResult",
    "PairEstimates",
    "PairSelection",
    "all_pairs",
    "egger",
    "i2_gx",
    "ivw",
    "ivw_fe",
    "method_label",
    "methods_where",
    "run_batched",
    "simple_median",
    "weighted_median",
    "weighted_mode",
]
