"""The compiled operand builders of :func:`deepmr_kipoi.mr.all_pairs` (numba; imported on first use).

The matrix products of ``mr.pairwise`` take as left operands the masked exposure-side factors
(``M b_x**2``, ``M |b_x|``, ``M b_x``, ``M sign0(b_x)``) and as right operands the outcome-side
factors (``w b_y``, ``w b_y**2``). Built with NumPy, each is one pass over an (E, K) array and one
temporary of that size, and at a few hundred features these passes cost half as much as the
products themselves; here each side is one pass that writes every operand into buffers the
caller reuses from sequence to sequence. The values are the same floating-point operations as
the NumPy expressions (``(M b) b``, ``|M b|``, ``w b``, ``(w b) b``), so the sums do not change.
"""

from __future__ import annotations

import math

import numba


@numba.njit(cache=True, error_model="numpy")
def fill_operands(x, y, out, shared):
    """Fill the operands of one sample's products, exposure side then outcome side.

    Parameters
    ----------
    x : (ndarray, ndarray)
        Exposure effects ``b`` (float64, (E, K)) and the selected instruments ``m`` (bool, (E, K)).
    y : (ndarray, ndarray)
        Outcome effects ``by`` and SEs ``sy`` (float64, (O, K)).
    out : tuple of 6 ndarray of float64
        ``(mf, xw, xwy, w, wy, wyy)``, filled: ``mf`` (E, K) the mask as 0/1; ``xw`` (E, K) or
        (2E, K): rows ``[0, E)`` ``M b**2``, rows ``[E, 2E)`` (if present) ``M |b|``; ``xwy``
        likewise ``M b`` and ``M sign0(b)`` (``sign0(0) = +1``, MR-Egger's orientation); ``w``
        (O, K) the weights ``1 / sy**2``; ``wy`` and ``wyy`` ``w by`` and ``(w by) by``.
    shared : bool
        Also fill ``mf`` and ``w``, which every sample shares (else they are read).

    Returns
    -------
    int
        Values that ``mr.all_pairs`` rejects, counted on the way: non-finite ``b`` or ``by`` and,
        with ``shared``, ``sy`` not finite and positive (the caller then names them).
    """
    b, m = x
    by, sy = y
    mf, xw, xwy, w, wy, wyy = out
    n_exp, n_inst = b.shape
    egger = xw.shape[0] > n_exp
    bad = 0
    for e in range(n_exp):
        for k in range(n_inst):
            if not math.isfinite(b[e, k]):
                bad += 1
            sel = m[e, k]
            v = b[e, k] if sel else 0.0
            one = 1.0 if sel else 0.0
            if shared:
                mf[e, k] = one
            xw[e, k] = v * v
            xwy[e, k] = v
            if egger:
                xw[n_exp + e, k] = abs(v)
                xwy[n_exp + e, k] = -one if b[e, k] < 0.0 else one
    for o in range(by.shape[0]):
        for k in range(n_inst):
            if not math.isfinite(by[o, k]):
                bad += 1
            if shared:
                se = sy[o, k]
                if not (se > 0.0 and se < math.inf):
                    bad += 1
                w[o, k] = 1.0 / (se * se)
            v = w[o, k] * by[o, k]
            wy[o, k] = v
            wyy[o, k] = v * by[o, k]
    return bad
