"""Weighted mode (mode-based estimate, MBE; Hartwig, Davey Smith & Bowden 2017), as TwoSampleMR's
``mr_weighted_mode`` with its defaults.

Point estimate, for ratio estimates ``r_j = b_y,j / b_x,j`` with second-order standard errors
``s_j = sqrt(se_y**2 / b_x**2 + b_y**2 se_x**2 / b_x**4)`` (no NOME assumption):

1. bandwidth ``h = max(1e-8, phi * 0.9 * min(sd(r), mad(r)) / K**(1/5))`` (modified Silverman
   rule of Bickel 2002; ``sd`` with ``ddof=1``, ``mad`` as R's: ``1.4826 * median|r - median r|``),
   computed from the ratios without weights;
2. the Gaussian kernel density of ``r`` with standardised weights ``s_j**-2 / sum s**-2``,
   evaluated exactly as R's ``density(r, weights=, bw=h)`` (R >= 4.4.0, ``old.coords=FALSE``):
   the weights are linearly binned onto 2 x 512 points spanning ``lo = min r - 7h`` to
   ``up = max r + 7h`` (512 of them used, the rest zero padding), convolved with the kernel by FFT,
   negative values set to 0, and linearly interpolated onto the output grid of 512 points from
   ``min r - 3h`` to ``max r + 3h``;
3. the estimate is the first grid point with the highest density (``which.max``).

Approximations, all R's own: the density is the binned FFT approximation of the kernel sum (error
of order ``(grid step / h)**2`` relative), and the estimate is quantised to the 512-point grid, whose
step is ``(max r - min r + 6h) / 511``: for widely spread ratios the step can be a sizeable fraction
of the SE.

Standard error: TwoSampleMR's bootstrap, which perturbs the ratios directly: each replicate draws
``r* ~ N(r, s**2)`` per instrument, recomputes the bandwidth from ``r*`` and takes the weighted mode
with the *original* weights; the SE is R's ``mad()`` of the replicates (a robust SD, 1.4826 x the
median absolute deviation). Draws are ``default_rng(seed).standard_normal((n_boot, K))``.

Inference: t distribution with ``K - 1`` df for the p-value (TwoSampleMR) and the interval (where
TwoSampleMR uses normal quantiles; see the ``deepmr_kipoi.mr`` docstring).
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi import validation
from deepmr_kipoi.mr._common import (
    as_instruments,
    check_n_boot,
    check_phi,
    r_mad,
    seed_sequence,
    t_inference,
)
from deepmr_kipoi.mr._result_types import ModeResult

#: Points of R's ``density()`` output grid (its default ``n = 512``).
N_GRID = 512
#: Rows per FFT block in :func:`mode_rows` (bounds memory at about 60 kB per row).
ROW_BLOCK = 1024
#: R's ``density(cut = 3)`` and its internal extension ``ext = 4`` (in bandwidths).
_CUT, _EXT = 3.0, 4.0
#: Non-negative lags 0..n of R's kernel ordinates (the negative lags -(n-1)..-1 mirror 1..n-1).
_HALF_LAGS = np.arange(N_GRID + 1, dtype=np.float64)


def ratio_se(bx, by, se_bx, se_by) -> np.ndarray:
    """Second-order standard error of the ratio ``b_y / b_x`` (arrays broadcast elementwise)."""
    return np.sqrt(se_by**2 / bx**2 + by**2 * se_bx**2 / bx**4)


def _sorted_median(v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Median of the first ``n`` entries of each sorted row of ``v``."""
    lo = ((n - 1) // 2)[:, None]
    hi = (n // 2)[:, None]
    return 0.5 * (np.take_along_axis(v, lo, -1)[:, 0] + np.take_along_axis(v, hi, -1)[:, 0])


def _mode_block(r: np.ndarray, w: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    used = np.isfinite(r)
    n = used.sum(axis=-1)
    v = np.sort(r, axis=-1)
    med = _sorted_median(v, n)
    r0 = np.where(used, r, 0.0)
    mean = r0.sum(axis=-1) / n
    sd = np.sqrt(np.where(used, (r0 - mean[:, None]) ** 2, 0.0).sum(axis=-1) / (n - 1))
    dev = np.sort(np.where(used, np.abs(r0 - med[:, None]), np.inf), axis=-1)
    mad = 1.4826 * _sorted_median(dev, n)
    h = np.maximum(1e-8, phi * 0.9 * np.minimum(sd, mad) / n**0.2)

    rmin = v[:, 0]
    rmax = np.take_along_axis(v, (n - 1)[:, None], -1)[:, 0]
    frm, to = rmin - _CUT * h, rmax + _CUT * h
    lo, up = frm - _EXT * h, to + _EXT * h
    dx = (up - lo) / (N_GRID - 1)

    wn = np.where(used, w, 0.0)
    wn = wn / wn.sum(axis=-1, keepdims=True)
    pos = (np.where(used, r, lo[:, None]) - lo[:, None]) / dx[:, None]
    ix = np.clip(np.floor(pos).astype(np.int64), 0, N_GRID - 2)
    fx = pos - ix
    rows = r.shape[0]
    base = (np.arange(rows, dtype=np.int64) * (2 * N_GRID))[:, None]
    size = rows * 2 * N_GRID
    binned = np.bincount((base + ix).ravel(), ((1.0 - fx) * wn).ravel(), minlength=size)
    binned += np.bincount((base + ix + 1).ravel(), (fx * wn).ravel(), minlength=size)
    binned = binned.reshape(rows, 2 * N_GRID)

    # dnorm at lags 0..n, mirrored for the negative lags -(n-1)..-1 (R's kernel ordinates).
    half = np.exp(-0.5 * (_HALF_LAGS[None, :] * (dx / h)[:, None]) ** 2)
    half /= (h * np.sqrt(2 * np.pi))[:, None]
    kern = np.concatenate([half, half[:, N_GRID - 1 : 0 : -1]], axis=1)
    spec = np.fft.rfft(binned, axis=-1) * np.conj(np.fft.rfft(kern, axis=-1))
    dens = np.maximum(np.fft.irfft(spec, n=2 * N_GRID, axis=-1)[:, :N_GRID], 0.0)

    step = (to - frm) / (N_GRID - 1)
    grid = frm[:, None] + np.arange(N_GRID)[None, :] * step[:, None]
    jpos = (grid - lo[:, None]) / dx[:, None]
    j = np.clip(np.floor(jpos).astype(np.int64), 0, N_GRID - 2)
    t = jpos - j
    flat = (j + (np.arange(rows, dtype=np.int64) * N_GRID)[:, None]).ravel()
    dens = dens.ravel()
    d0 = dens[flat].reshape(rows, N_GRID)
    d1 = dens[flat + 1].reshape(rows, N_GRID)
    curve = d0 + t * (d1 - d0)
    best = np.argmax(curve, axis=-1)
    return frm + best * step, h


def mode_rows(r: np.ndarray, w: np.ndarray, phi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mode of every row, by R's ``density()`` algorithm (see the module docstring).

    Parameters
    ----------
    r : ndarray, shape (R, k)
        Ratio estimates; unused slots hold ``+inf``. Each row needs at least 2 finite entries.
    w : ndarray, shape (R, k)
        Positive weights of the used slots (unnormalised; unused slots are ignored).
    phi : float
        Bandwidth multiplier.

    Returns
    -------
    mode : ndarray, shape (R,)
    bandwidth : ndarray, shape (R,)
    """
    r = np.asarray(r, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    modes = np.empty(r.shape[0])
    bws = np.empty(r.shape[0])
    for start in range(0, r.shape[0], ROW_BLOCK):
        sl = slice(start, start + ROW_BLOCK)
        modes[sl], bws[sl] = _mode_block(r[sl], w[sl], phi)
    return modes, bws


def bootstrap_modes(r, se_r, w, z: np.ndarray, phi: float) -> np.ndarray:
    """Weighted modes of TwoSampleMR's ratio bootstrap, all cells and replicates at once.

    Parameters
    ----------
    r, se_r, w : ndarray, shape (C, k)
        Ratio estimates (``+inf`` in unused slots), their second-order SEs and the weights.
    z : ndarray, shape (C, B, k)
        Standard normal noise.
    phi : float

    Returns
    -------
    ndarray, shape (C, B)
    """
    c, n_boot, k = z.shape
    rb = r[:, None, :] + se_r[:, None, :] * z
    wb = np.broadcast_to(w[:, None, :], (c, n_boot, k)).reshape(c * n_boot, k)
    return mode_rows(rb.reshape(c * n_boot, k), wb, phi)[0].reshape(c, n_boot)


def weighted_mode(
    bx,
    by,
    se_bx,
    se_by,
    *,
    phi: float = 1.0,
    n_boot: int = 1000,
    seed=0,
    level: float = 0.95,
) -> ModeResult:
    """Weighted mode-based estimate (TwoSampleMR ``mr_weighted_mode``), bootstrap SE.

    Parameters
    ----------
    bx, by : array_like, shape (K,)
        Instrument effects on the exposure (all non-zero) and on the outcome.
    se_bx, se_by : array_like, shape (K,)
        Their standard errors, finite and positive.
    phi : float
        Bandwidth multiplier (TwoSampleMR's default 1).
    n_boot : int
        Bootstrap replicates for the SE.
    seed : int or numpy.random.SeedSequence
        Seed of the bootstrap draws.
    level : float
        Confidence level of the t interval (``K - 1`` df).

    Returns
    -------
    ModeResult

    Raises
    ------
    DeepMRInputError
        Fewer than 3 instruments, non-finite values, non-positive SEs, or a zero ``b_x``.
    """
    level = validation.level(level)
    n_boot = check_n_boot(n_boot)
    phi = check_phi(phi)
    bx, by, se_bx, se_by = as_instruments(bx, by, se_bx, se_by, "weighted_mode")
    r = by / bx
    se_r = ratio_se(bx, by, se_bx, se_by)
    w = se_r**-2
    est, h = mode_rows(r[None], w[None], phi)
    rng = np.random.default_rng(seed_sequence(seed))
    z = rng.standard_normal((n_boot, bx.size))
    boot = bootstrap_modes(r[None], se_r[None], w[None], z[None], phi)[0]
    se = r_mad(boot)
    k = bx.size
    lo, hi, p = t_inference(est[0], se, k - 1, level)
    return ModeResult(
        method="weighted_mode",
        estimate=float(est[0]),
        se=se,
        ci_low=float(lo),
        ci_high=float(hi),
        pvalue=float(p),
        n_instruments=int(k),
        level=level,
        bandwidth=float(h[0]),
        phi=phi,
        n_boot=n_boot,
    )
