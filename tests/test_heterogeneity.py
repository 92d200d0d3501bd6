"""Heterogeneity of a local fit beyond the model's own noise (``run.local_checks.heterogeneity``).

References: a loop over instruments with the residual variance computed from the per-sample
effects directly, and the rejection rate in simulations with known truth (homogeneous instruments
with paired model noise: about the nominal 5%; a pleiotropic cluster: nearly always).
"""

import numpy as np
import pytest
from scipy import stats

from deepmr_kipoi.run.local_checks import heterogeneity


def _simulate(rng, n_cells, k, theta=1.5, s=8, pleiotropic=0, noise=0.05):
    """Per-sample paired effects of k instruments and one more draw as the reported effects.

    The model's noise is what its samples show: each sample is the true effect plus paired noise
    (the outcome follows the exposure within a sample, d_y = theta d_x + own noise), and the
    reported effects carry one such error (calibrated SEs are the samples' SD, a predictive
    spread, not an SE of their mean). Homogeneous: true_y = theta true_x; pleiotropic instruments
    add a direct effect on the outcome.
    """
    true_x = rng.uniform(0.5, 2.0, (n_cells, k))
    true_y = theta * true_x
    true_y[:, :pleiotropic] += rng.uniform(1.0, 2.0, (n_cells, pleiotropic))
    ex = rng.normal(0, noise * 4, (s + 1, n_cells, k))  # the model's uncertainty about X
    ey = theta * ex + rng.normal(0, noise, (s + 1, n_cells, k))
    dx, dy = true_x + ex, true_y + ey
    return dx[1:], dy[1:], dx[0], dy[0]


def _as_cells(dx, dy, bx, by):
    n = bx.shape[0]
    shape = (n, 1, 1, -1)
    sx, sy = dx.std(0, ddof=1), dy.std(0, ddof=1)
    return (
        bx.reshape(shape),
        by.reshape(shape),
        sx.reshape(shape),
        sy.reshape(shape),
        dx.reshape((dx.shape[0], *shape)),
        dy.reshape((dy.shape[0], *shape)),
    )


def test_q_is_the_sum_of_residuals_over_their_paired_variance():
    rng = np.random.default_rng(0)
    dx, dy, bx, by = _simulate(rng, 3, 6, pleiotropic=2)
    bx, by, sx, sy, samples_x, samples_y = _as_cells(dx, dy, bx, by)
    mask = np.ones(bx.shape, dtype=bool)
    mask[1, ..., 4] = False
    q, p, spread = heterogeneity(bx, by, sx, sy, mask, samples_x, samples_y)
    for c in range(3):
        keep = mask[c, 0, 0]
        x, y, w = bx[c, 0, 0, keep], by[c, 0, 0, keep], 1 / sy[c, 0, 0, keep] ** 2
        theta = (w * x * y).sum() / (w * x * x).sum()
        resid_samples = samples_y[:, c, 0, 0, keep] - theta * samples_x[:, c, 0, 0, keep]
        expected = ((y - theta * x) ** 2 / resid_samples.var(axis=0, ddof=1)).sum()
        assert q[c, 0, 0] == pytest.approx(expected, rel=1e-9)
        assert p[c, 0, 0] == pytest.approx(stats.chi2.sf(expected, keep.sum() - 1), rel=1e-9)
        rms = np.sqrt((w * (y - theta * x) ** 2).sum() / (w * x * x).sum())
        assert spread[c, 0, 0] == pytest.approx(rms / abs(theta), rel=1e-9)
    # without the samples the covariance term is 0
    q0, _, _ = heterogeneity(bx, by, sx, sy, mask)
    keep = mask[0, 0, 0]
    x, y, w = bx[0, 0, 0], by[0, 0, 0], 1 / sy[0, 0, 0] ** 2
    theta = (w * x * y).sum() / (w * x * x).sum()
    var = sy[0, 0, 0] ** 2 + theta**2 * sx[0, 0, 0] ** 2
    assert q0[0, 0, 0] == pytest.approx((((y - theta * x) ** 2) / var)[keep].sum(), rel=1e-9)


def test_homogeneous_instruments_reject_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    dx, dy, bx, by = _simulate(rng, 4000, 10, s=30)
    bx, by, sx, sy, samples_x, samples_y = _as_cells(dx, dy, bx, by)
    _, p, _ = heterogeneity(bx, by, sx, sy, np.ones(bx.shape, bool), samples_x, samples_y)
    rate = np.mean(p < 0.05)
    # 30 samples: the variance is estimated, so slightly above 5%; binomial SD 0.0034
    assert 0.04 <= rate <= 0.08, rate
    # ignoring the pairing (Y follows X within every sample) calls the same data heterogeneous
    _, p_unpaired, _ = heterogeneity(bx, by, sx, sy, np.ones(bx.shape, bool))
    assert np.mean(p_unpaired < 0.05) < rate  # the unpaired variance is larger here: conservative


def test_a_pleiotropic_cluster_is_detected():
    rng = np.random.default_rng(2)
    dx, dy, bx, by = _simulate(rng, 500, 10, s=10, pleiotropic=4)
    bx, by, sx, sy, samples_x, samples_y = _as_cells(dx, dy, bx, by)
    _, p, _ = heterogeneity(bx, by, sx, sy, np.ones(bx.shape, bool), samples_x, samples_y)
    assert np.mean(p < 0.05) > 0.95


def test_cells_with_fewer_than_two_instruments_are_nan():
    bx = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    mask = np.array([True, False, False]).reshape(1, 1, 1, 3)
    q, p, spread = heterogeneity(bx, 2 * bx, np.full_like(bx, 0.1), np.full_like(bx, 0.1), mask)
    assert np.isnan(q).all() and np.isnan(p).all() and np.isnan(spread).all()
