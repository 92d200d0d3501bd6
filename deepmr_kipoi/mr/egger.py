"""MR-Egger regression, as TwoSampleMR's ``mr_egger_regression`` (Bowden, Davey Smith & Burgess 2015).

Instruments are oriented so that ``b_x >= 0`` (``b_y`` takes the sign of ``b_x``; a zero ``b_x``
keeps its ``b_y``, TwoSampleMR's ``sign0``), then ``b_y ~ a + b * |b_x|`` is fitted by weighted
least squares with weights ``w = 1 / se_y**2``. With residual SE
``sigma = sqrt(RSS / (K - 2))`` (``RSS = sum w (b_y - a - b |b_x|)**2``), the standard errors of
slope and intercept are ``sqrt(diag((X' W X)^-1)) * max(1, sigma)``, i.e. R's ``lm`` SEs divided
by ``min(1, sigma)``. P-values and intervals use a t distribution with ``K - 2`` df (TwoSampleMR's
p-values; see the ``deepmr_kipoi.mr`` docstring for how intervals differ between the R packages).
Heterogeneity: Rucker's ``Q = RSS`` on ``K - 2`` df.

I^2_GX (Bowden et al. 2016, Int J Epidemiol 45:1961) is computed as MendelianRandomization's
``mr_egger`` does, in its form for the weighted regression: ``Q_gx`` is Cochran's Q of
``|b_x| / se_y`` with standard errors ``se_x / se_y``, and ``I2_GX = max(0, (Q_gx - (K-1)) / Q_gx)``,
reported here in percent.

Needs 3 instruments and at least two distinct values of ``|b_x|``.
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr._common import (
    COLLINEAR_RTOL,
    as_instruments,
    chi2_sf,
    sign0,
    t_inference,
)
from deepmr_kipoi.mr._result_types import EggerResult


def i2_gx(bx, se_bx, se_by) -> float:
    """I^2_GX in percent, weighted form (MendelianRandomization ``mr_egger``'s ``I.sq`` x 100).

    Parameters
    ----------
    bx, se_bx, se_by : array_like, shape (K,)
        Exposure effects, their SEs and the outcome SEs (the weights of the Egger regression).

    Returns
    -------
    float
        ``100 * max(0, (Q_gx - (K - 1)) / Q_gx)`` with
        ``Q_gx = sum v (z - sum(v z) / sum(v))**2``, ``z = |b_x| / se_y``, ``v = (se_y / se_x)**2``.
    """
    bx, se_bx, se_by = (np.asarray(a, dtype=np.float64) for a in (bx, se_bx, se_by))
    z = np.abs(bx) / se_by
    v = (se_by / se_bx) ** 2
    mu = np.sum(v * z) / np.sum(v)
    q = np.sum(v * (z - mu) ** 2)
    return float(100.0 * max(0.0, (q - (bx.size - 1)) / q))


def egger(bx, by, se_bx, se_by, *, level: float = 0.95) -> EggerResult:
    """MR-Egger regression estimate, intercept and I^2_GX (TwoSampleMR ``mr_egger_regression``).

    Parameters
    ----------
    bx, by : array_like, shape (K,)
        Instrument effects on the exposure and on the outcome.
    se_bx, se_by : array_like, shape (K,)
        Their standard errors, finite and positive.
    level : float
        Confidence level of the t intervals (``K - 2`` df).

    Returns
    -------
    EggerResult
        Slope (causal estimate), intercept, their SEs with the ``max(1, sigma)`` rule, t-based
        p-values and intervals, Rucker's Q and I^2_GX (percent).

    Raises
    ------
    DeepMRInputError
        Fewer than 3 instruments, non-finite values, non-positive SEs, all ``b_x`` zero, or all
        ``|b_x|`` equal (slope and intercept not identifiable).
    """
    level = validation.level(level)
    bx, by, se_bx, se_by = as_instruments(bx, by, se_bx, se_by, "egger")
    x = np.abs(bx)
    y = by * sign0(bx)
    w = 1.0 / se_by**2
    xc = x - np.sum(w * x) / np.sum(w)
    if np.sum(w * xc**2) <= COLLINEAR_RTOL * np.sum(w * x**2):
        raise DeepMRInputError(
            "all |b_x| are equal: the MR-Egger slope and intercept are not identifiable; "
            "use ivw, or add instruments of different strength."
        )
    sw = np.sqrt(w)
    design = np.column_stack([sw, sw * x])
    coef, _, _, _ = np.linalg.lstsq(design, sw * y, rcond=None)
    rss = float(np.sum((sw * y - design @ coef) ** 2))
    k = bx.size
    df = k - 2
    sigma = np.sqrt(rss / df)
    unscaled = np.linalg.inv(design.T @ design)
    ses = np.sqrt(np.diag(unscaled)) * max(1.0, sigma)
    lo, hi, p = t_inference(coef[1], ses[1], df, level)
    ilo, ihi, ip = t_inference(coef[0], ses[0], df, level)
    return EggerResult(
        method="egger",
        estimate=float(coef[1]),
        se=float(ses[1]),
        ci_low=float(lo),
        ci_high=float(hi),
        pvalue=float(p),
        n_instruments=int(k),
        level=level,
        intercept=float(coef[0]),
        intercept_se=float(ses[0]),
        intercept_ci_low=float(ilo),
        intercept_ci_high=float(ihi),
        intercept_pvalue=float(ip),
        q=rss,
        q_df=df,
        q_pvalue=float(chi2_sf(rss, df)),
        residual_se=float(sigma),
        i2_gx=i2_gx(bx, se_bx, se_by),
    )
