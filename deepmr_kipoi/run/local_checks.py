"""What a local fit is checked with besides its estimate: heterogeneity and instrument strength.

:func:`heterogeneity` is Cochran's Q of a cell's instruments against the model's own noise (the
definition the compiled pass of :mod:`deepmr_kipoi.run.local_fit` computes); :func:`steiger_sums`
the strength of an exposure's instruments on every feature, which the verdict reads.
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi import instruments

#: Per-cell instrument strength on each feature (:func:`steiger_sums`), local-table columns.
STEIGER_FIELDS = ("r2_exposure", "r2_outcome", "r2_other", "cross_other")


def heterogeneity(bx, by, sx, sy, mask, samples_x=None, samples_y=None, paired=None):
    """Cochran's Q of every cell against the model's own noise, with its chi-square p-value.

    Under a homogeneous local effect ``theta`` every instrument's residual ``b_y - theta b_x`` is
    model noise only. Its variance over the model's samples is
    ``var_s(d_y - theta d_x) = se_y^2 + theta^2 se_x^2 - 2 theta cov_s(d_x, d_y)``: both effects
    are uncertain, and paired (a sample that moves the exposure more moves an outcome that follows
    it more). ``Q = sum_k (b_y - theta b_x)^2 / var_k`` with ``theta`` the first-order IVW
    estimate of the cell is referred to chi-square with ``K - 1`` df: the calibrated SEs are the
    model's predictive spread of each effect, so the test asks whether the instruments disagree
    more than the model's own (calibrated) uncertainty about each of them allows. It is
    conservative: the same residuals against the noise of the samples' *mean* (``var_k / S``)
    would be far more sensitive, but then the few samples of a deep ensemble, the selection of
    instruments on those samples and the structure that sequences share through the model
    (measured on linear toy ensembles with valid instruments) make valid pairs look
    heterogeneous. Approximations, named: ``theta`` is treated as known (its estimation is what
    the lost df stands for), model noise as Gaussian; without per-sample effects the covariance
    term is taken as 0.

    Parameters
    ----------
    bx, sx : ndarray, shape (n, E, 1, K)
        Exposure effects and calibrated SEs.
    by, sy : ndarray, shape (n, 1, O, K)
        Outcome effects and calibrated SEs.
    mask : ndarray of bool, shape (n, E, O, K)
        The cell's instruments.
    samples_x, samples_y : ndarray, shapes (S, n, E, 1, K) and (S, n, 1, O, K), optional
        Calibrated per-sample effects (for the covariance term).
    paired : ndarray of bool, shape (E, O), optional
        Whether exposure and outcome come from one model (their samples paired); default all
        True. Features of two models of a panel have independent errors: covariance 0, the
        two-sample ``var_k = se_y^2 + theta^2 se_x^2``.

    Returns
    -------
    q, pvalue : ndarray, shape (n, E, O)
        NaN where a cell has fewer than 2 usable instruments.
    spread : ndarray, shape (n, E, O)
        The weighted root-mean-square deviation of the instruments' slopes from ``theta``,
        ``sqrt(sum_k w_k (b_y - theta b_x)^2 / sum_k w_k b_x^2)`` with ``w_k = 1 / se_y^2``,
        divided by ``|theta|``: the practical size of the disagreement (inf where theta is 0).
    """
    from scipy import special

    # in float64: squares of float32 effects overflow (or vanish) at output scales beyond 1e+-19
    bx, sx, by, sy = (np.asarray(a, dtype=np.float64) for a in (bx, sx, by, sy))
    ok = mask & np.isfinite(bx) & np.isfinite(by) & (sy > 0) & np.isfinite(sy) & np.isfinite(sx)
    w = np.where(ok, 1.0 / np.where(ok, sy, 1.0) ** 2, 0.0)
    bxz, byz = np.where(ok, bx, 0.0), np.where(ok, by, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = (w * bxz * byz).sum(-1) / (w * bxz * bxz).sum(-1)
        t = theta[..., None]
        var = sy**2 + t**2 * sx**2
        if samples_x is not None:
            s = samples_x.shape[0]
            samples_x, samples_y = (np.asarray(a, np.float64) for a in (samples_x, samples_y))
            cx = samples_x - samples_x.mean(axis=0)
            cy = samples_y - samples_y.mean(axis=0)
            cov = np.einsum("snexk,snxok->neok", cx, cy) / max(s - 1, 1)
            if paired is not None:  # features of two models: independent errors
                cov = cov * np.asarray(paired, dtype=np.float64)[None, :, :, None]
            var = var - 2.0 * t * cov
        # an outcome that is an exact function of the exposure in every sample leaves no noise
        var = np.maximum(var, np.finfo(np.float64).tiny)
        q = np.where(ok, (byz - t * bxz) ** 2 / np.where(ok, var, 1.0), 0.0).sum(-1)
        # how much the instruments' slopes vary, relative to the slope: a practical size next to
        # the test, which on a model with tiny noise also rejects a mildly nonlinear response
        spread = np.sqrt((w * (byz - t * bxz) ** 2).sum(-1) / (w * bxz * bxz).sum(-1)) / np.abs(
            theta
        )
    k = ok.sum(-1)
    q = np.where((k >= 2) & np.isfinite(theta), q, np.nan)
    p = np.where(np.isfinite(q), special.chdtrc(np.maximum(k - 1, 1), q), np.nan)
    return q, p, np.where(np.isfinite(q), spread, np.nan)


def steiger_sums(effects, mask, exposures, outcomes):
    """How strongly the exposure's instruments act on each feature, in units of its own spread.

    For every sequence, exposure ``e`` and feature ``f`` of the run, ``A[e, f] = sum_k (b_f,k /
    s_f)^2`` over the exposure's instruments ``k`` (selected on the exposure, before the
    directionality check), with ``s_f`` the root-mean-square effect of ``f`` over the sequence's
    mutants (``instruments.effect_spread``): the share of the feature's mutational variation the
    instruments carry, times the number of mutants (the local analog of Steiger's variance
    explained, Hemani et al. 2017). If the exposure causes the outcome and the instruments act on
    it only through the exposure, ``A[e, outcome] < A[e, e]``; the verdict reads the ratios.
    ``C[e, f] = sum_k (b_e,k / s_e) (b_f,k / s_f)`` is the signed cross-product of the same
    standardized effects: pooled over sequences, ``C^2 / (A[e, e] A[e, f])`` is the share of the
    exposure's instrument effects that a fixed ratio to ``f`` explains (their collinearity).

    Parameters
    ----------
    effects : ndarray, shape (n, W, 3, U)
        Effect means of every used feature (NaN at N positions).
    mask : ndarray of bool, shape (n, W, 3, E)
        Instruments of every exposure.
    exposures, outcomes : sequence of int
        Feature indices (into U) of the E exposures and O outcomes.

    Returns
    -------
    dict of str to ndarray, shape (n, E, O)
        ``r2_exposure`` (``A[e, e]``), ``r2_outcome`` (``A[e, o]``), ``r2_other`` (the largest
        ``A[e, f]`` over the other features, NaN without one), ``cross_other`` (``C[e, f]`` of
        that feature, NaN without one) and ``other_feature`` (its index into U, -1 without one,
        int64).
    """
    effects = np.asarray(effects, dtype=np.float64)
    n, u = effects.shape[0], effects.shape[-1]
    ex, oc = np.asarray(exposures, dtype=np.int64), np.asarray(outcomes, dtype=np.int64)
    shape = (n, len(ex), len(oc))
    spread = instruments.effect_spread(effects)  # (n, U)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = effects / spread[:, None, None, :]
    t = np.where(np.isfinite(t), t, 0.0).reshape(n, -1, u)
    cand = np.asarray(mask, dtype=np.float64).reshape(n, -1, len(ex)).transpose(0, 2, 1)
    strength = np.matmul(cand, t * t)  # (n, E, U): one BLAS product per sequence
    own = np.take_along_axis(strength, ex[None, :, None], axis=2)  # (n, E, 1)
    fields = {"r2_exposure": np.broadcast_to(own, shape).copy(), "r2_outcome": strength[:, :, oc]}
    if u < 3:  # no feature besides the exposure and the outcome
        return {
            **fields,
            "r2_other": np.full(shape, np.nan),
            "cross_other": np.full(shape, np.nan),
            "other_feature": np.full(shape, -1),
        }
    others = strength.copy()
    np.put_along_axis(others, ex[None, :, None], -np.inf, axis=2)
    # the largest and second largest other feature: the outcome itself is not "another"
    order = np.argsort(-others, axis=2)[..., :2]
    top = np.take_along_axis(others, order, axis=2)  # (n, E, 2)
    first_is_outcome = order[:, :, None, 0] == oc[None, None, :]  # (n, E, O)
    other = np.where(first_is_outcome, top[:, :, None, 1], top[:, :, None, 0])
    other_feature = np.where(first_is_outcome, order[:, :, None, 1], order[:, :, None, 0])
    none = ~np.isfinite(other)
    # signed cross-products of the exposure's own standardized effects with every feature's
    cross = np.matmul(cand * t[:, :, ex].transpose(0, 2, 1), t)  # (n, E, U)
    cross_other = np.take_along_axis(cross[:, :, None, :], other_feature[..., None], axis=3)[..., 0]
    return {
        **fields,
        "r2_other": np.where(none, np.nan, other),
        "cross_other": np.where(none, np.nan, cross_other),
        "other_feature": np.where(none, -1, other_feature).astype(np.int64),
    }
