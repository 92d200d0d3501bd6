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

import numba


@numba.njit(cache=True, error_model="numpy")
def fill_operands(b, m, by, w, xw, xwy, wy, wyy):
    """Fill the operands of one sample's products, exposure side then outcome side.

    Parameters
    ----------
    b : ndarray of float64, shape (E, K)
        Exposure effects.
    m : ndarray of bool, shape (E, K)
        Selected instruments.
    by : ndarray of float64, shape (O, K)
        Outcome effects.
    w : ndarray of float64, shape (O, K)
        Weights ``1 / se_y**2``.
    xw : ndarray of float64, shape (E, K) or (2E, K)
        Out: rows ``[0, E)`` ``M b**2``; rows ``[E, 2E)`` (if present) ``M |b|``.
    xwy : ndarray of float64, shape (E, K) or (2E, K)
        Out: rows ``[0, E)`` ``M b``; rows ``[E, 2E)`` (if present) ``M sign0(b)`` (``sign0(0) =
        +1``, MR-Egger's orientation).
    wy, wyy : ndarray of float64, shape (O, K)
        Out: ``w by`` and ``(w by) by``.
    """
    n_exp, n_inst = b.shape
    egger = xw.shape[0] > n_exp
    for e in range(n_exp):
        for k in range(n_inst):
            sel = m[e, k]
            x = b[e, k] if sel else 0.0
            xw[e, k] = x * x
            xwy[e, k] = x
            if egger:
                xw[n_exp + e, k] = abs(x)
                one = 1.0 if sel else 0.0
                xwy[n_exp + e, k] = -one if b[e, k] < 0.0 else one
    for o in range(by.shape[0]):
        for k in range(n_inst):
            v = w[o, k] * by[o, k]
            wy[o, k] = v
            wyy[o, k] = v * by[o, k]
