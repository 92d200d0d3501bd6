"""The compiled loop of :func:`deepmr_kipoi.mr.pairmask.pair_sums` (numba; imported on first use).

One loop over work items (a sequence and a block of exposures), shared between threads. The block's exposures gather their
selected instruments once; then, outcome by outcome, the outcome's values (packed per instrument,
so one instrument is one cache line) stay in cache while every exposure of the block makes one
pass over its instruments that evaluates the directionality rule and accumulates every sum, and,
for the heterogeneity test (which needs the cell's slope first), a second pass that adds up
Cochran's Q. Nothing of size cells x instruments is ever formed.

Packed layouts: a side is ``(n, F, K, 5)`` with the values ``b, se, t, v, finite`` of every
instrument, and ``(n, F, K, S)`` with its per-sample (or centred) effects.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Smallest positive float64: the floor of a residual variance (an outcome that is an exact
#: function of the exposure in every sample leaves no noise).
_TINY = 2.2250738585072014e-308
#: Exposures that share one pass over the outcomes (the outcomes' values stay in cache).
X_BLOCK = 16


@numba.njit(cache=True, error_model="numpy")
def _passes(gx, gy, use, settings):
    """The directionality rule for one instrument (``instruments.directional``): ``gx``, ``gy``
    its packed values on the two sides (``t, v, finite`` at 2, 3, 4)."""
    direction, z, tie = settings
    tx, vx, fx, ty, vy, fy = gx[2], gx[3], gx[4] > 0, gy[2], gy[3], gy[4] > 0
    if not direction:
        return True
    if not (fx and fy):
        return False
    if not use:
        return True
    if z > 0:
        sd = math.sqrt(vx + vy)
        if not math.isfinite(sd):
            sd = math.inf
        return (tx - ty) >= z * sd
    return tx >= ty * (1.0 - tie)


@numba.njit(cache=True, error_model="numpy")
def _ratio(a, b):
    """``a / b`` with NumPy's float semantics (0/0 NaN, x/0 signed inf) inside the kernel."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


@numba.njit(cache=True, error_model="numpy")
def _heterogeneity(xg, yrow, hv, theta, n_c):
    """Cochran's Q and the weighted squared residuals of one cell, given its slope (instrument j
    counts with weight ``hv[j]`` in {0, 1}; NaN where its values are not all usable)."""
    g, gs, ks, nk = xg
    yv, ysm = yrow
    q = sp = 0.0
    for j in range(nk):
        h = hv[j]
        if not h >= 0:  # NaN: an unusable value (rare; multiplying by 0 would spread it)
            continue
        kk = ks[j]
        b1, s1, b2, s2 = g[j, 0], g[j, 1], yv[kk, 0], yv[kk, 1]
        r = b2 - theta * b1
        var = s2 * s2 + theta * theta * (s1 * s1)
        if n_c > 0:
            cov = 0.0
            for s in range(n_c):
                cov += gs[j, s] * ysm[kk, s]
            var = var - 2.0 * theta * (cov / max(n_c - 1, 1))
        var = max(var, _TINY)
        # a select, not a product: a term can be inf where the variance hits its floor
        q += r * r / var if h > 0 else 0.0
        sp += (1.0 / (s2 * s2)) * (r * r) if h > 0 else 0.0
    return q, sp


@numba.njit(cache=True, error_model="numpy")
def _samples(xg, yrow, pf, w, samp, at):
    """The per-sample sums of one cell: instrument j with weight ``pf[j]`` in {0, 1} (NaN where
    an SE is unusable) and inverse-variance weight ``w[j]`` (0 where it does not pass)."""
    _, gs, ks, nk = xg
    ysm = yrow[1]
    ni, xi, yi = at
    for s in range(samp.shape[0]):
        a_n = a_xx = a_xy = a_yy = a_w = a_x = a_y = 0.0
        for j in range(nk):
            p = pf[j]
            d1, d2 = gs[j, s], ysm[ks[j], s]
            if not (p >= 0 and math.isfinite(d1) and math.isfinite(d2)):
                continue
            wj = w[j]
            wy = wj * d2
            a_n += p
            a_xx += d1 * d1 * wj
            a_xy += d1 * wy
            a_yy += wy * d2
            a_w += wj
            a_x += abs(d1) * wj
            a_y += wy if d1 >= 0 else -wy
        samp[s, 0, ni, xi, yi] = a_n
        samp[s, 1, ni, xi, yi] = a_xx
        samp[s, 2, ni, xi, yi] = a_xy
        samp[s, 3, ni, xi, yi] = a_yy
        samp[s, 4, ni, xi, yi] = a_w
        samp[s, 5, ni, xi, yi] = a_x
        samp[s, 6, ni, xi, yi] = a_y


@numba.njit(cache=True, error_model="numpy")
def _cell(xg, yrow, rule_on, settings, out, at, scratch):
    """The sums of one (sequence ``at[0]``, exposure ``at[1]``, outcome ``at[2]``) cell.

    Whether an instrument passes the rule is a 0/1 weight, not a branch (the rule splits the
    instruments at random, which branch prediction cannot follow): terms are selected, not
    branched on; only unusable values (rare) branch. ``scratch`` holds, per instrument: the pass weight where both SEs are usable (else
    NaN), its inverse-variance weight times the pass weight, and the heterogeneity weight."""
    g, _, ks, nk = xg
    yv, ysm = yrow
    main, het, samp = out
    pf, w, hv = scratch
    ni, xi, yi = at
    do_main, do_het = main.shape[0] > 0, het.shape[0] > 0
    n_pass = 0.0
    a_n = a_xx = a_xy = a_yy = a_w = a_x = a_y = a_v = a_vz = a_vzz = 0.0
    h_xy = h_xx = h_k = 0.0
    for j in range(nk):
        kk = ks[j]
        ok = _passes(g[j], yv[kk], rule_on, settings)
        p = 1.0 if ok else 0.0
        n_pass += p
        s1, s2 = g[j, 1], yv[kk, 1]
        hv[j] = math.nan
        if not (math.isfinite(s1) and math.isfinite(s2) and s2 > 0):
            pf[j] = math.nan
            continue
        # se_x = 0 takes no part in MR or the sample sums (NaN), but in the heterogeneity test
        pf[j] = p if s1 > 0 else math.nan
        wj = 1.0 / (s2 * s2) if ok else 0.0
        w[j] = wj
        b1, b2 = g[j, 0], yv[kk, 0]
        if not (math.isfinite(b1) and math.isfinite(b2)):
            continue
        hv[j] = p
        h_xy += wj * b1 * b2
        h_xx += wj * b1 * b1
        h_k += p
        if do_main and s1 > 0:
            wy = wj * b2
            ab = abs(b1)
            ivx = 1.0 / (s1 * s1)
            a_n += p
            a_xx += b1 * b1 * wj
            a_xy += b1 * wy
            a_yy += wy * b2
            a_w += wj
            a_x += ab * wj
            a_y += wy if b1 >= 0 else -wy
            a_v += ivx * (s2 * s2) if ok else 0.0
            a_vz += ab * ivx * s2 if ok else 0.0
            a_vzz += ab * ab * ivx if ok else 0.0
    if do_main:
        main[0, ni, xi, yi] = a_n
        main[1, ni, xi, yi] = a_xx
        main[2, ni, xi, yi] = a_xy
        main[3, ni, xi, yi] = a_yy
        main[4, ni, xi, yi] = a_w
        main[5, ni, xi, yi] = a_x
        main[6, ni, xi, yi] = a_y
        main[7, ni, xi, yi] = a_v
        main[8, ni, xi, yi] = a_vz
        main[9, ni, xi, yi] = a_vzz
        main[10, ni, xi, yi] = n_pass
    if samp.shape[0] > 0:
        _samples(xg, yrow, pf, w, samp, at)
    if do_het:
        theta = _ratio(h_xy, h_xx)
        het[0, ni, xi, yi] = theta
        het[3, ni, xi, yi] = h_k
        if h_k >= 2 and math.isfinite(theta):
            n_c = ysm.shape[1] if samp.shape[0] == 0 else 0
            q, sp = _heterogeneity(xg, yrow, hv, theta, n_c)
            het[1, ni, xi, yi] = q
            het[2, ni, xi, yi] = math.sqrt(_ratio(sp, h_xx)) / abs(theta)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def pair_sums_kernel(xside, yside, mask, settings, out, items):
    """Fill ``out = (main, het, samp)`` (see ``pairmask.pair_sums``) for the cells of work items
    ``items = (start, stop)`` (item: a sequence and a block of :data:`X_BLOCK` exposures).

    Each side is ``(packed, extra, usable)``: values (n, F, K, 5), per-sample or centred effects
    (n, F, K, S) and whether each feature's spread is usable (n, F). The GIL is released: threads
    share the items (numba's own parallel loops would bring an OpenMP runtime that a later
    ``fork`` of the process aborts on)."""
    xp, xsm, xuse = xside
    yp, ysm, yuse = yside
    het = out[1]
    n, n_e, k = mask.shape
    n_o = yp.shape[1]
    n_blocks = (n_e + X_BLOCK - 1) // X_BLOCK
    n_extra = xsm.shape[3]
    for item in range(items[0], items[1]):
        ni, x0 = item // n_blocks, (item % n_blocks) * X_BLOCK
        nx = min(X_BLOCK, n_e - x0)
        ks = np.zeros((nx, k), dtype=np.int64)
        nks = np.zeros(nx, dtype=np.int64)
        g = np.empty((nx, k, 5))
        gs = np.empty((nx, k, n_extra))
        for xl in range(nx):
            m = 0
            for kk in range(k):
                if mask[ni, x0 + xl, kk]:
                    ks[xl, m] = kk
                    g[xl, m] = xp[ni, x0 + xl, kk]
                    gs[xl, m] = xsm[ni, x0 + xl, kk]
                    m += 1
            nks[xl] = m
        scratch = (np.empty(k), np.empty(k), np.empty(k))
        for yi in range(n_o):
            yv, yv_s = yp[ni, yi], ysm[ni, yi]
            for xl in range(nx):
                xi = x0 + xl
                if nks[xl] == 0:
                    if het.shape[0] > 0:
                        het[0, ni, xi, yi] = math.nan
                    continue
                _cell(
                    (g[xl], gs[xl], ks[xl], nks[xl]),
                    (yv, yv_s),
                    xuse[ni, xi] and yuse[ni, yi],
                    settings,
                    out,
                    (ni, xi, yi),
                    scratch,
                )
