"""The compiled per-cell loops of :mod:`deepmr_kipoi.meta.batched` (numba; imported on first use).

DerSimonian-Laird's moments and the Paule-Mandel root search read each cell's studies a few times
per iteration. As array code over all cells, every one of those passes is a pass over a
(cells, studies) block in memory and a temporary of that size; here each cell's studies stay in
cache for all of its passes, and a converged cell simply stops (no working set to shrink). The
arithmetic is the one the docstrings of ``meta.batched._dl`` and ``meta.batched._pm`` describe,
in the same order per study; sums run in study order, so results differ from a NumPy evaluation
(pairwise sums) by rounding only.

Inputs are the rows of ``meta.batched._Cells``: ``y``, ``v`` (sampling variances) and ``m``
(1.0 = included), float64 (cells, k), excluded entries holding ``y = 0, v = 1, m = 0``.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def _weighted_sum_mean(y, v, m, tau2, w):
    """``sum w`` and ``mu = sum w y / sum w`` for ``w = m / (v + tau2)`` (``w``: a scratch row,
    filled)."""
    sw = 0.0
    swy = 0.0
    for j in range(y.shape[0]):
        w[j] = m[j] / (v[j] + tau2)
        sw += w[j]
        swy += w[j] * y[j]
    return sw, swy / sw


@numba.njit(cache=True, error_model="numpy")
def _weighted_moments(y, v, m, tau2, w):
    """``sum w``, ``sum w r**2`` and ``sum (w r)**2`` for ``w = m / (v + tau2)``, ``r = y - mu``
    (``w`` a scratch row, filled)."""
    sw, mu = _weighted_sum_mean(y, v, m, tau2, w)
    q = 0.0
    slope = 0.0
    for j in range(y.shape[0]):
        wr = w[j] * (y[j] - mu)
        q += wr * (y[j] - mu)
        slope += wr * wr
    return sw, q, slope


@numba.njit(cache=True, error_model="numpy")
def _spread(y, v, m, k):
    """``sum (y - ybar)**2`` over the included studies (unweighted mean ``ybar``) and
    ``sum v`` of one cell."""
    ybar = 0.0
    sv = 0.0
    for j in range(y.shape[0]):
        ybar += y[j] * m[j]
        sv += v[j] * m[j]
    ybar /= k
    rss = 0.0
    for j in range(y.shape[0]):
        e = (y[j] - ybar) * m[j]
        rss += e * e
    return rss, sv


@numba.njit(cache=True, error_model="numpy")
def prepare(y, s, m, out, flags):
    """The cells' study data as ``_Cells`` reads it, and what is wrong with each cell.

    Parameters
    ----------
    y, s : ndarray of float64, shape (n, kdim)
        Estimates and standard errors.
    m : ndarray of bool, shape (n, kdim)
        Included studies.
    out : (ndarray, ndarray, ndarray)
        Out, float64 (n, kdim): ``y`` (0 where excluded), ``v = s**2`` (1 where excluded) and
        ``m`` as 0/1.
    flags : ndarray of int8, shape (2, n)
        Out: whether an included SE is not finite and positive, whether an included estimate is
        not finite.
    """
    y0, v, mf = out
    for i in range(y.shape[0]):
        bad_se = 0
        bad_y = 0
        for j in range(y.shape[1]):
            if m[i, j]:
                yy = y[i, j]
                ss = s[i, j]
                if not (ss > 0.0 and ss < math.inf):
                    bad_se = 1
                if not math.isfinite(yy):
                    bad_y = 1
                y0[i, j] = yy
                v[i, j] = ss * ss
                mf[i, j] = 1.0
            else:
                y0[i, j] = 0.0
                v[i, j] = 1.0
                mf[i, j] = 0.0
        flags[0, i] = bad_se
        flags[1, i] = bad_y


@numba.njit(cache=True, error_model="numpy")
def weighted_mean(y, v, m, tau2, out):
    """Fill ``out`` (float64, (2, n)) with each cell's ``sum w`` and weighted mean
    ``sum w y / sum w``, ``w = m / (v + tau2)``, for ``y, v, m`` (n, kdim) and ``tau2`` (n,)."""
    w = np.empty(y.shape[1])
    for i in range(y.shape[0]):
        out[0, i], out[1, i] = _weighted_sum_mean(y[i], v[i], m[i], tau2[i], w)


@numba.njit(cache=True, error_model="numpy")
def dl_terms(y, v, m, k, out):
    """DerSimonian-Laird tau2, Q, tr(P) and tr(P P) at tau2 = 0, per cell (k >= 2).

    Parameters
    ----------
    y, v, m : ndarray of float64, shape (n, kdim)
    k : ndarray of float64, shape (n,)
        Included studies per cell.
    out : ndarray of float64, shape (4, n)
        Out: rows tau2, Q, tr(P), tr(P P).
    """
    w = np.empty(y.shape[1])
    for i in range(y.shape[0]):
        sw, q, _ = _weighted_moments(y[i], v[i], m[i], 0.0, w)
        sw2 = 0.0
        sw3 = 0.0
        for j in range(y.shape[1]):
            ww = w[j] * w[j]
            sw2 += ww
            sw3 += ww * w[j]
        q = max(q, 0.0)
        tr_p = sw - sw2 / sw
        out[0, i] = max((q - (k[i] - 1.0)) / tr_p, 0.0)
        out[1, i] = q
        out[2, i] = tr_p
        out[3, i] = sw2 - 2.0 * sw3 / sw + (sw2 / sw) ** 2


@numba.njit(cache=True, error_model="numpy")
def _pm_cell(y, v, m, bracket, sc, tol, maxiter, w):
    """One cell's bracketed Newton iteration from ``bracket = (target, hi, start)``: tau2,
    converged, iterations."""
    target, hi, t = bracket
    lo = 0.0
    for it in range(maxiter):
        _, q, slope = _weighted_moments(y, v, m, t, w)
        f = q - target
        if f > 0.0:
            lo = t
        else:
            hi = t
        newton = t + f / slope * ((f + target) / target)
        if math.isfinite(newton) and newton >= lo and newton <= hi:
            new = newton
        else:
            new = 0.5 * (lo + hi)
        tol_abs = tol * (new + sc)
        if abs(new - t) <= tol_abs or hi - lo <= tol_abs or f == 0.0:
            return new, True, it + 1
        t = new
    return t, False, maxiter


@numba.njit(cache=True, error_model="numpy")
def pm_tau2(cells, per_cell, tol, maxiter, out):
    """Paule-Mandel tau2 per cell (k >= 2); returns the most iterations any cell took.

    Parameters
    ----------
    cells : (ndarray, ndarray, ndarray)
        ``y, v, m``, float64, shape (n, kdim).
    per_cell : (ndarray, ndarray, ndarray, ndarray)
        Float64, shape (n,): included studies ``k``, Q at tau2 = 0, the starting value
        (DerSimonian-Laird) and the typical within-study variance (the tolerance's scale).
    tol : float
    maxiter : int
    out : (ndarray, ndarray)
        Out: tau2 (float64, shape (n,)) and converged (bool, shape (n,)).
    """
    y, v, m = cells
    k, q0, start, scale = per_cell
    tau2, converged = out
    most = 0
    w = np.empty(y.shape[1])
    for i in range(y.shape[0]):
        target = k[i] - 1.0
        if not q0[i] > target:
            tau2[i] = 0.0
            converged[i] = True
            continue
        # Upper end of the bracket: sum (y - ybar)**2 / (k - 1), unweighted mean.
        rss, _ = _spread(y[i], v[i], m[i], k[i])
        bracket = (target, rss / target, start[i])
        t, ok, used = _pm_cell(y[i], v[i], m[i], bracket, scale[i], tol, maxiter, w)
        tau2[i] = t
        converged[i] = ok
        most = max(most, used)
    return most


@numba.njit(cache=True, error_model="numpy")
def _reml_terms(y, v, m, tau2, scratch):
    """``sum w``, the restricted log-likelihood (up to a constant) and the magnitude of its terms
    at ``tau2``; ``scratch = (w, w r)`` rows, filled (``meta.batched._Cells.reml_terms``)."""
    w, wr = scratch
    sw, mu = _weighted_sum_mean(y, v, m, tau2, w)
    rss = 0.0
    logs = 0.0
    size = 0.0
    for j in range(y.shape[0]):
        r = y[j] - mu
        wr[j] = w[j] * r
        rss += wr[j] * r
        ld = math.log(v[j] + tau2)
        logs += ld * m[j]
        size += abs(ld) * m[j]
    log_sw = math.log(sw)
    return sw, -0.5 * (logs + log_sw + rss), size + abs(log_sw) + rss


@numba.njit(cache=True, error_model="numpy")
def _reml_step(sw, scratch, t):
    """The ascent's step from ``t``: Newton where the restricted likelihood is concave, Fisher
    scoring elsewhere, cut back to tau2 = 0 (``meta.batched._reml``)."""
    w, wr = scratch
    sw2 = sw3 = a = b = c = 0.0
    for j in range(w.shape[0]):
        ww = w[j] * w[j]
        sw2 += ww
        sw3 += ww * w[j]
        a += wr[j] * wr[j]
        b += w[j] * wr[j] * wr[j]
        c += w[j] * wr[j]
    tr_p = sw - sw2 / sw
    tr_pp = sw2 - 2.0 * sw3 / sw + (sw2 / sw) ** 2
    grad = 0.5 * (a - tr_p)
    hess = 0.5 * tr_pp - (b - c**2 / sw)
    step = -grad / hess if hess < 0.0 else 2.0 * grad / tr_pp
    return max(step, -t)


@numba.njit(cache=True, error_model="numpy")
def _reml_cell(cell, t, sc, limits, scratch):
    """One cell's ascent from ``t``: tau2, converged, iterations and the log-likelihood there."""
    y, v, m = cell
    tol, maxiter = limits
    sw, ll, _ = _reml_terms(y, v, m, t, scratch)
    for it in range(maxiter):
        step = _reml_step(sw, scratch, t)
        n_sw, n_ll, n_size = _reml_terms(y, v, m, t + step, scratch)
        for _ in range(59):
            if not n_ll < ll - 1e-13 * n_size:
                break
            step *= 0.5
            n_sw, n_ll, n_size = _reml_terms(y, v, m, t + step, scratch)
        new = t + step
        if abs(step) <= tol * (new + sc):
            return new, True, it + 1, n_ll
        t, sw, ll = new, n_sw, n_ll
    return t, False, maxiter, ll


@numba.njit(cache=True, error_model="numpy")
def reml_tau2(cells, k, scale, limits, out):
    """REML tau2 per cell (k >= 2) by ``meta.batched._reml``'s ascent, from Hedges' estimator
    truncated at 0; returns the most iterations any cell took.

    Parameters
    ----------
    cells : (ndarray, ndarray, ndarray)
        ``y, v, m``, float64, shape (n, kdim).
    k, scale : ndarray of float64, shape (n,)
        Included studies and the typical within-study variance (the tolerance's scale).
    limits : (float, int)
        Tolerance and iteration limit.
    out : (ndarray, ndarray, ndarray)
        Out, shape (n,): tau2, converged (bool) and the restricted log-likelihood at tau2.
    """
    y, v, m = cells
    tau2, converged, loglik = out
    scratch = (np.empty(y.shape[1]), np.empty(y.shape[1]))
    most = 0
    for i in range(y.shape[0]):
        rss, sv = _spread(y[i], v[i], m[i], k[i])
        start = max((rss - (1.0 - 1.0 / k[i]) * sv) / (k[i] - 1.0), 0.0)
        cell = (y[i], v[i], m[i])
        tau2[i], converged[i], used, loglik[i] = _reml_cell(cell, start, scale[i], limits, scratch)
        most = max(most, used)
    return most
