"""Inverse-variance weighted (IVW) estimators, as TwoSampleMR's ``mr_ivw`` and ``mr_ivw_fe``.

Both fit the weighted regression through the origin ``b_y ~ b_x`` with weights ``1 / se_y**2``
(first-order weights: the uncertainty of ``b_x`` is ignored, the NOME assumption):

* estimate ``b = sum(w b_x b_y) / sum(w b_x**2)``;
* fixed-effect SE ``se_fixed = 1 / sqrt(sum(w b_x**2))``;
* Cochran's ``Q = sum(w (b_y - b b_x)**2)`` on ``K - 1`` df, residual SE ``sigma = sqrt(Q/(K-1))``;
* ``ivw`` (multiplicative random effects): ``se = se_fixed * max(1, sigma)``, which is R's
  ``lm`` coefficient SE divided by ``min(1, sigma)``; ``ivw_fe``: ``se = se_fixed``.

Inference uses the normal distribution, as TwoSampleMR does. Two instruments are required (the
residual SE needs one degree of freedom; TwoSampleMR asks the same of ``mr_ivw_fe``). Where the
fit is exact (``Q = 0``) TwoSampleMR's ``mr_ivw_fe`` divides by ``sigma = 0`` and returns NaN;
here ``se = se_fixed``, its limit.
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.mr._common import as_instruments, chi2_sf, normal_inference
from deepmr_kipoi.mr._result_types import IVWResult


def _ivw(bx, by, se_bx, se_by, level: float, method: str) -> IVWResult:
    level = validation.level(level)
    bx, by, _, se_by = as_instruments(bx, by, se_bx, se_by, method)
    w = 1.0 / se_by**2
    sxx = np.sum(w * bx * bx)
    b = np.sum(w * bx * by) / sxx
    q = float(np.sum(w * (by - b * bx) ** 2))
    k = bx.size
    sigma = np.sqrt(q / (k - 1))
    se_fixed = 1.0 / np.sqrt(sxx)
    se = se_fixed * max(1.0, sigma) if method == "ivw" else se_fixed
    lo, hi, p = normal_inference(b, se, level)
    return IVWResult(
        method=method,
        estimate=float(b),
        se=float(se),
        ci_low=float(lo),
        ci_high=float(hi),
        pvalue=float(p),
        n_instruments=int(k),
        level=level,
        q=q,
        q_df=k - 1,
        q_pvalue=float(chi2_sf(q, k - 1)),
        residual_se=float(sigma),
        se_fixed=float(se_fixed),
    )


def ivw(bx, by, se_bx, se_by, *, level: float = 0.95) -> IVWResult:
    """IVW estimate with multiplicative random effects (TwoSampleMR ``mr_ivw``).

    Parameters
    ----------
    bx, by : array_like, shape (K,)
        Instrument effects on the exposure and on the outcome.
    se_bx, se_by : array_like, shape (K,)
        Their standard errors, finite and positive (``se_bx`` is checked, not used).
    level : float
        Confidence level of the normal Wald interval.

    Returns
    -------
    IVWResult
        ``se = se_fixed * max(1, residual_se)``; ``q``, ``q_df = K - 1``, ``q_pvalue``.

    Raises
    ------
    DeepMRInputError
        Fewer than 2 instruments, non-finite values, non-positive SEs, or all ``b_x`` zero.
    """
    return _ivw(bx, by, se_bx, se_by, level, "ivw")


def ivw_fe(bx, by, se_bx, se_by, *, level: float = 0.95) -> IVWResult:
    """Fixed-effect IVW estimate (TwoSampleMR ``mr_ivw_fe``): ``se = 1 / sqrt(sum w b_x**2)``.

    Parameters
    ----------
    bx, by : array_like, shape (K,)
        Instrument effects on the exposure and on the outcome.
    se_bx, se_by : array_like, shape (K,)
        Their standard errors, finite and positive (``se_bx`` is checked, not used).
    level : float
        Confidence level of the normal Wald interval.

    Returns
    -------
    IVWResult

    Raises
    ------
    DeepMRInputError
        Fewer than 2 instruments, non-finite values, non-positive SEs, or all ``b_x`` zero.
    """
    return _ivw(bx, by, se_bx, se_by, level, "ivw_fe")
