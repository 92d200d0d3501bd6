"""The compiled loop of :func:`deepmr_kipoi.mr.pairmask.pair_sums` (numba; imported on first use).

One loop over work items (a block of exposures of one sequence), shared between threads. The
block's exposures gather their selected instruments once, with what every cell recomputed per
instrument before (``|b|``, ``b^2``, ``1/se^2`` and their products) worked out once per instrument;
then, outcome by outcome, the outcome's values stay in cache while every exposure of the block
makes one pass over its instruments that evaluates the directionality rule and accumulates every
sum at once: the MR sums, the heterogeneity test's slope and every model sample's sums; the
heterogeneity test (which needs the cell's slope first) takes a second, short pass for Cochran's
Q. Nothing of size cells x instruments is ever formed.

Layouts (structure of arrays, one row per quantity, the instruments contiguous): a side's values
are ``(F, ROWS, K)`` with the rows of :data:`ROWS`, its per-sample effects and their deviations
from the sample mean ``(F, S, K)``. The terms are the same floating-point operations, in the same
order, as the definitions in ``run.local_checks`` evaluate them, so the sums do not depend on the
layout.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Smallest positive float64: the floor of a residual variance (an outcome that is an exact
#: function of the exposure in every sample leaves no noise).
_TINY = 2.2250738585072014e-308
#: Exposures that share one pass over the outcomes (the outcomes' values stay in cache).
X_BLOCK = 8
#: Rows of a side's packed values: effect, SE, the rule's statistic ``t`` and variance ``v``,
#: whether the rule's effect is finite, ``se^2``, ``1/se^2`` and ``t (1 - tie)``.
ROWS = ("b", "se", "t", "v", "finite", "se2", "w", "t_tie")


@numba.njit(cache=True, error_model="numpy")
def _ratio(a, b):
    """``a / b`` with NumPy's float semantics (0/0 NaN, x/0 signed inf) inside the kernel."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


@numba.njit(cache=True, error_model="numpy")
def _gather(xp, xs, xc, mask_row, xg, xd, xcd, ks):
    """The selected instruments of one exposure into contiguous rows, with their derived terms.

    ``xg`` rows: 0 b, 1 se, 2 t, 3 v, 4 finite, 5 b^2, 6 |b|, 7 1/se^2, 8 |b|/se^2,
    9 |b|^2/se^2, 10 se^2, 11 the sign of b (1 where b >= 0, else -1); ``xd`` the per-sample
    effects, then their squares, absolute values and signs (S rows each);
    ``xcd`` the centred effects. Returns the number of instruments."""
    m = 0
    n_s, n_c = xs.shape[0], xc.shape[0]
    for kk in range(mask_row.shape[0]):
        if not mask_row[kk]:
            continue
        ks[m] = kk
        b, s = xp[0, kk], xp[1, kk]
        xg[0, m] = b
        xg[1, m] = s
        xg[2, m] = xp[2, kk]
        xg[3, m] = xp[3, kk]
        xg[4, m] = xp[4, kk]
        xg[5, m] = b * b
        ab = abs(b)
        ivx = 1.0 / (s * s)
        xg[6, m] = ab
        xg[7, m] = ivx
        xg[8, m] = ab * ivx
        xg[9, m] = ab * ab * ivx
        xg[10, m] = s * s
        xg[11, m] = 1.0 if b >= 0 else -1.0
        for q in range(n_s):
            d = xs[q, kk]
            xd[q, m] = d
            xd[n_s + q, m] = d * d
            xd[2 * n_s + q, m] = abs(d)
            xd[3 * n_s + q, m] = 1.0 if d >= 0 else -1.0
        for q in range(n_c):
            xcd[q, m] = xc[q, kk]
        m += 1
    return m


@numba.njit(cache=True, error_model="numpy")
def _rule(settings, use, xg, yv, j, kk):
    """1.0 where instrument ``j`` (column ``kk`` of the outcome) passes the directionality rule
    (``instruments.directional``), else 0.0. The comparisons become 0/1 numbers, not branches
    (the rule splits the instruments at random, which branch prediction cannot follow); the
    branches left test what is the same for every instrument of the cell."""
    direction, z, tie = settings
    if not direction:
        return 1.0
    both = (xg[4, j] > 0) * 1.0 * (yv[4, kk] > 0)
    if not use:
        return both
    if z > 0:
        sd = math.sqrt(xg[3, j] + yv[3, kk])
        if not math.isfinite(sd):
            sd = math.inf
        return both * ((xg[2, j] - yv[2, kk]) >= z * sd)
    return both * (xg[2, j] >= yv[7, kk])


@numba.njit(cache=True, error_model="numpy")
def _first_pass(xg, yv, nk, ks, rule, scratch, do_main, acc):
    """The MR sums (``acc[0:11]``) and the heterogeneity slope's sums (``acc[11:14]``) of one
    cell; per instrument, into ``scratch``: the pass weight where both SEs are usable (else NaN),
    its inverse-variance weight and the heterogeneity weight (NaN where a value is unusable).
    Whether an instrument passes is a 0/1 weight, not a branch: terms are selected."""
    settings, use = rule
    pf, w, hv = scratch
    for i in range(acc.shape[0]):
        acc[i] = 0.0
    a_n = a_xx = a_xy = a_yy = a_w = a_x = a_y = a_v = a_vz = a_vzz = n_pass = 0.0
    h_xy = h_xx = h_k = 0.0
    for j in range(nk):
        kk = ks[j]
        p = _rule(settings, use, xg, yv, j, kk)
        ok = p > 0
        n_pass += p
        s1, s2 = xg[1, j], yv[1, kk]
        hv[j] = math.nan
        if not (math.isfinite(s1) and math.isfinite(s2) and s2 > 0):
            pf[j] = math.nan
            continue
        # se_x = 0 takes no part in MR or the sample sums (NaN), but in the heterogeneity test
        pf[j] = p if s1 > 0 else math.nan
        wj = yv[6, kk] if ok else 0.0
        w[j] = wj
        b1, b2 = xg[0, j], yv[0, kk]
        if not (math.isfinite(b1) and math.isfinite(b2)):
            continue
        hv[j] = p
        h_xy += wj * b1 * b2
        h_xx += wj * b1 * b1
        h_k += p
        if do_main and s1 > 0:
            wy = wj * b2
            a_n += p
            a_xx += xg[5, j] * wj
            a_xy += b1 * wy
            a_yy += wy * b2
            a_w += wj
            a_x += xg[6, j] * wj
            a_y += wy * xg[11, j]
            a_v += xg[7, j] * yv[5, kk] if ok else 0.0
            a_vz += xg[8, j] * s2 if ok else 0.0
            a_vzz += xg[9, j] if ok else 0.0
    acc[0], acc[1], acc[2], acc[3], acc[4] = a_n, a_xx, a_xy, a_yy, a_w
    acc[5], acc[6], acc[7], acc[8], acc[9], acc[10] = a_x, a_y, a_v, a_vz, a_vzz, n_pass
    acc[11], acc[12], acc[13] = h_xy, h_xx, h_k


@numba.njit(cache=True, error_model="numpy")
def _samples(xd, yd, nk, ks, scratch, samp, at):
    """Every model sample's sums of one cell: instrument j with weight ``pf[j]`` in {0, 1} (NaN
    where an SE is unusable) and inverse-variance weight ``w[j]`` (0 where it does not pass)."""
    pf, w, _ = scratch
    ni, xi, yi = at
    n_s = samp.shape[0]
    for s in range(n_s):
        a_n = a_xx = a_xy = a_yy = a_w = a_x = a_y = 0.0
        for j in range(nk):
            p = pf[j]
            d1, d2 = xd[s, j], yd[s, ks[j]]
            if not (p >= 0 and math.isfinite(d1) and math.isfinite(d2)):
                continue
            wj = w[j]
            wy = wj * d2
            a_n += p
            a_xx += xd[n_s + s, j] * wj
            a_xy += d1 * wy
            a_yy += wy * d2
            a_w += wj
            a_x += xd[2 * n_s + s, j] * wj
            a_y += wy * xd[3 * n_s + s, j]
        samp[s, 0, ni, xi, yi] = a_n
        samp[s, 1, ni, xi, yi] = a_xx
        samp[s, 2, ni, xi, yi] = a_xy
        samp[s, 3, ni, xi, yi] = a_yy
        samp[s, 4, ni, xi, yi] = a_w
        samp[s, 5, ni, xi, yi] = a_x
        samp[s, 6, ni, xi, yi] = a_y


@numba.njit(cache=True, error_model="numpy")
def _heterogeneity(xg, xcd, yv, yc, nk, ks, hv, theta):
    """Cochran's Q and the weighted squared residuals of one cell, given its slope (instrument j
    counts with weight ``hv[j]`` in {0, 1}; NaN where its values are not all usable)."""
    n_c = xcd.shape[0]
    q = sp = 0.0
    for j in range(nk):
        h = hv[j]
        if not h >= 0:  # NaN: an unusable value (rare; multiplying by 0 would spread it)
            continue
        kk = ks[j]
        r = yv[0, kk] - theta * xg[0, j]
        var = yv[5, kk] + theta * theta * xg[10, j]
        if n_c > 0:
            cov = 0.0
            for s in range(n_c):
                cov += xcd[s, j] * yc[s, kk]
            var = var - 2.0 * theta * (cov / max(n_c - 1, 1))
        var = max(var, _TINY)
        # a select, not a product: a term can be inf where the variance hits its floor
        q += r * r / var if h > 0 else 0.0
        sp += yv[6, kk] * (r * r) if h > 0 else 0.0
    return q, sp


@numba.njit(cache=True, error_model="numpy", nogil=True)
def pair_sums_kernel(xside, yside, mask, settings, out, items):
    """Fill ``out = (main, het, samp)`` (see ``pairmask.pair_sums``) for one sequence ``ni``'s
    cells of work items ``items = (ni, start, stop)`` (item: a block of :data:`X_BLOCK`
    exposures).

    Each side is ``(values, samples, centred, usable)``: values (F, ROWS, K), per-sample and
    centred effects (F, S, K) (S = 0: none) and whether each feature's spread is usable (F,). The
    GIL is released: threads share the items (numba's own parallel loops would bring an OpenMP
    runtime that a later ``fork`` of the process aborts on)."""
    xp, xs, xc, xuse = xside
    yp, ys, yc, yuse = yside
    main, het, samp = out
    ni, first, last = items
    n_e, k = mask.shape
    n_o = yp.shape[0]
    do_main, do_het, do_samp = main.shape[0] > 0, het.shape[0] > 0, samp.shape[0] > 0
    n_s, n_c = xs.shape[1] if do_samp else 0, xc.shape[1]
    xg = np.empty((X_BLOCK, 12, k))
    xd = np.empty((X_BLOCK, 4 * n_s, k))
    xcd = np.empty((X_BLOCK, n_c, k))
    ks = np.zeros((X_BLOCK, k), dtype=np.int64)
    nks = np.zeros(X_BLOCK, dtype=np.int64)
    scratch = (np.empty(k), np.empty(k), np.empty(k))
    acc = np.empty(14)
    for item in range(first, last):
        x0 = item * X_BLOCK
        nx = min(X_BLOCK, n_e - x0)
        for xl in range(nx):
            nks[xl] = _gather(
                xp[x0 + xl],
                xs[x0 + xl, :n_s],
                xc[x0 + xl],
                mask[x0 + xl],
                xg[xl],
                xd[xl],
                xcd[xl],
                ks[xl],
            )
        for yi in range(n_o):
            yv = yp[yi]
            for xl in range(nx):
                xi = x0 + xl
                nk = nks[xl]
                if nk == 0:
                    if do_het:
                        het[0, ni, xi, yi] = math.nan
                    continue
                rule = (settings, xuse[xi] and yuse[yi])
                _first_pass(xg[xl], yv, nk, ks[xl], rule, scratch, do_main, acc)
                if do_main:
                    for r in range(11):
                        main[r, ni, xi, yi] = acc[r]
                if do_samp:
                    _samples(xd[xl], ys[yi], nk, ks[xl], scratch, samp, (ni, xi, yi))
                if do_het:
                    h_xy, h_xx, h_k = acc[11], acc[12], acc[13]
                    theta = _ratio(h_xy, h_xx)
                    het[0, ni, xi, yi] = theta
                    het[3, ni, xi, yi] = h_k
                    if h_k >= 2 and math.isfinite(theta):
                        q, sp = _heterogeneity(
                            xg[xl], xcd[xl], yv, yc[yi], nk, ks[xl], scratch[2], theta
                        )
                        het[1, ni, xi, yi] = q
                        het[2, ni, xi, yi] = math.sqrt(_ratio(sp, h_xx)) / abs(theta)
