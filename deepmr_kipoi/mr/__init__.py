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

Which distribution each method's p-value and interval use, and how that relates to the R packages,
is tabulated in ``deepmr_kipoi.mr._common``; each estimator module documents its formulas and
approximations.
"""

from deepmr_kipoi.mr._common import METHODS, MIN_INSTRUMENTS, REASONS
from deepmr_kipoi.mr._results import (
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
from deepmr_kipoi.mr.mode import weighted_mode

#: Scalar estimator by method name.
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
    "MIN_INSTRUMENTS",
    "REASONS",
    "EggerResult",
    "IVWResult",
    "MRBatchResult",
    "MRResult",
    "MedianResult",
    "ModeResult",
    "egger",
    "i2_gx",
    "ivw",
    "ivw_fe",
    "run_batched",
    "simple_median",
    "weighted_median",
    "weighted_mode",
]
