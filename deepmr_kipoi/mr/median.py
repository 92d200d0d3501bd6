"""Weighted and simple median estimators (Bowden, Davey Smith, Haycock & Burgess 2016).

The per-instrument ratio estimates ``r_j = b_y,j / b_x,j`` are sorted with their weights ``w_j``;
with standardised cumulative weights ``s_j = (sum_{i<=j} w_i - w_j / 2) / sum w``, the estimate is
the linear interpolation between the two ratios whose ``s`` straddle 0.5 (TwoSampleMR's and
MendelianRandomization's ``weighted_median``; ties keep their input order, as R's ``order``).

Weights (``weights=``):

* ``"second"`` (default; TwoSampleMR ``mr_weighted_median``): inverse second-order variance of the
  ratio, ``1 / (se_y**2 / b_x**2 + b_y**2 se_x**2 / b_x**4)``;
* ``"first"`` (MendelianRandomization ``mr_median(weighting="weighted")``):
  ``b_x**2 / se_y**2``;
* simple median: equal weights.

Standard error: parametric bootstrap as both R packages do it. Each replicate draws
``b_x* ~ N(b_x, se_x**2)`` and ``b_y* ~ N(b_y, se_y**2)`` independently per instrument, recomputes
the ratios and takes their weighted median with the *original* weights; the SE is the sample SD
(``ddof=1``) of the replicates. It is a Monte Carlo quantity: with the R packages' default of 1000
(TwoSampleMR) or 10000 (MendelianRandomization) replicates it differs from run to run and between
implementations by a few percent, while the point estimate is exact. Draws come from
``numpy.random.default_rng(seed)`` as ``standard_normal((2, n_boot, K))`` (first the exposure, then
the outcome noise), so a seed reproduces a result exactly but not R's random stream.

Inference: normal p-value and interval, as both R packages by default.
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr._common import (
    as_instruments,
    check_n_boot,
    check_weights,
    normal_inference,
    seed_sequence,
)
from deepmr_kipoi.mr._result_types import MedianResult


def ratio_weights(bx, by, se_bx, se_by, kind: str) -> np.ndarray:
    """Weights of the ratio estimates for the median estimators (arrays broadcast elementwise).

    Parameters
    ----------
    bx, by, se_bx, se_by : ndarray, shape (..., K)
    kind : {"second", "first", "simple"}

    Returns
    -------
    ndarray, shape (..., K)
        Unnormalised weights.
    """
    if kind == "second":
        return 1.0 / (se_by**2 / bx**2 + by**2 * se_bx**2 / bx**4)
    if kind == "first":
        return bx**2 / se_by**2
    return np.ones(np.broadcast_shapes(np.shape(bx), np.shape(by)))


def weighted_median_rows(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Bowden's interpolated weighted median of every row.

    Parameters
    ----------
    values : ndarray, shape (R, k)
        Values; unused slots must hold ``+inf`` so that they sort last.
    weights : ndarray, shape (R, k)
        Non-negative weights; unused slots 0. Each row needs two positive weights.

    Returns
    -------
    ndarray, shape (R,)
        NaN for rows where the 0.5 point is not bracketed (fewer than two positive weights).
    """
    order = np.argsort(values, axis=-1, kind="stable")
    v = np.take_along_axis(values, order, axis=-1)
    w = np.take_along_axis(weights, order, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cum = (np.cumsum(w, axis=-1) - 0.5 * w) / np.sum(w, axis=-1, keepdims=True)
        below = np.sum(cum < 0.5, axis=-1) - 1
        lo = np.clip(below, 0, v.shape[-1] - 2)[:, None]
        v0, v1 = np.take_along_axis(v, lo, -1)[:, 0], np.take_along_axis(v, lo + 1, -1)[:, 0]
        c0, c1 = np.take_along_axis(cum, lo, -1)[:, 0], np.take_along_axis(cum, lo + 1, -1)[:, 0]
        out = v0 + (v1 - v0) * (0.5 - c0) / (c1 - c0)
    out[(below < 0) | (below > v.shape[-1] - 2)] = np.nan
    return out


def bootstrap_medians(bx, by, se_bx, se_by, weights, z: np.ndarray) -> np.ndarray:
    """Weighted medians of bootstrap replicates, all cells and replicates at once.

    Parameters
    ----------
    bx, by, se_bx, se_by, weights : ndarray, shape (C, k)
        Per-cell instruments (unused slots: weight 0, any finite ``b_x != 0``).
    z : ndarray, shape (C, 2, B, k)
        Standard normal noise for ``b_x`` (``z[:, 0]``) and ``b_y`` (``z[:, 1]``).

    Returns
    -------
    ndarray, shape (C, B)
    """
    c, _, n_boot, k = z.shape
    bxb = bx[:, None, :] + se_bx[:, None, :] * z[:, 0]
    byb = by[:, None, :] + se_by[:, None, :] * z[:, 1]
    w = np.broadcast_to(weights[:, None, :], (c, n_boot, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(w > 0, byb / bxb, np.inf)
    return weighted_median_rows(ratio.reshape(c * n_boot, k), w.reshape(c * n_boot, k)).reshape(
        c, n_boot
    )


def _median(bx, by, se_bx, se_by, kind, n_boot, seed, level) -> MedianResult:
    """The weighted (``kind`` "second" or "first") or simple (``kind`` "simple") median."""
    method = "simple_median" if kind == "simple" else "weighted_median"
    level = validation.level(level)
    n_boot = check_n_boot(n_boot)
    bx, by, se_bx, se_by = as_instruments(bx, by, se_bx, se_by, method)
    w = ratio_weights(bx, by, se_bx, se_by, kind)
    est = weighted_median_rows((by / bx)[None], w[None])[0]
    rng = np.random.default_rng(seed_sequence(seed))
    z = rng.standard_normal((2, n_boot, bx.size))
    boot = bootstrap_medians(bx[None], by[None], se_bx[None], se_by[None], w[None], z[None])[0]
    se = float(np.std(boot, ddof=1))
    if not (np.isfinite(est) and np.isfinite(se)):
        raise DeepMRInputError(
            f"{method}: the estimate or its bootstrap SE is not finite (weights underflow?); "
            "check for instruments with extreme b_x or SEs."
        )
    lo, hi, p = normal_inference(est, se, level)
    return MedianResult(
        method=method,
        estimate=float(est),
        se=se,
        ci_low=float(lo),
        ci_high=float(hi),
        pvalue=float(p),
        n_instruments=int(bx.size),
        level=level,
        weights=kind,
        n_boot=n_boot,
    )


def weighted_median(
    bx,
    by,
    se_bx,
    se_by,
    *,
    weights: str = "second",
    n_boot: int = 1000,
    seed=0,
    level: float = 0.95,
) -> MedianResult:
    """Weighted median estimate with a parametric-bootstrap SE.

    Parameters
    ----------
    bx, by : array_like, shape (K,)
        Instrument effects on the exposure (all non-zero) and on the outcome.
    se_bx, se_by : array_like, shape (K,)
        Their standard errors, finite and positive.
    weights : {"second", "first"}
        Second-order ratio weights (TwoSampleMR ``mr_weighted_median``) or first-order weights
        ``b_x**2 / se_y**2`` (MendelianRandomization ``mr_median``).
    n_boot : int
        Bootstrap replicates for the SE (TwoSampleMR: 1000; MendelianRandomization: 10000).
    seed : int or numpy.random.SeedSequence
        Seed of the bootstrap draws.
    level : float
        Confidence level of the normal interval.

    Returns
    -------
    MedianResult

    Raises
    ------
    DeepMRInputError
        Fewer than 3 instruments, non-finite values, non-positive SEs, or a zero ``b_x``.
    """
    return _median(bx, by, se_bx, se_by, check_weights(weights), n_boot, seed, level)


def simple_median(
    bx, by, se_bx, se_by, *, n_boot: int = 1000, seed=0, level: float = 0.95
) -> MedianResult:
    """Simple (equal-weight, interpolated) median of the ratio estimates, bootstrap SE.

    Parameters
    ----------
    bx, by : array_like, shape (K,)
        Instrument effects on the exposure (all non-zero) and on the outcome.
    se_bx, se_by : array_like, shape (K,)
        Their standard errors, finite and positive.
    n_boot : int
        Bootstrap replicates for the SE.
    seed : int or numpy.random.SeedSequence
        Seed of the bootstrap draws.
    level : float
        Confidence level of the normal interval.

    Returns
    -------
    MedianResult
        TwoSampleMR ``mr_simple_median``'s estimate (for an even K the interpolation gives the
        ordinary median).

    Raises
    ------
    DeepMRInputError
        Fewer than 3 instruments, non-finite values, non-positive SEs, or a zero ``b_x``.
    """
    return _median(bx, by, se_bx, se_by, "simple", n_boot, seed, level)
