"""Calibration on the effect scale (aleatoric variance removed) and cross-fitted metrics."""

import numpy as np
import pytest

from deepmr_kipoi import calibration
from deepmr_kipoi.errors import DeepMRInputError


def _data(n=40000, seed=0, under=2.0, noise=1.0):
    # truth: y = mu + epistemic error (sd_epi) + label noise (variance `noise`); the model
    # reports sd_epi / under, i.e. its spread is `under` times too small
    rng = np.random.default_rng(seed)
    sd_epi = rng.uniform(0.5, 2.0, (n, 2))
    mu = rng.normal(0, 3, (n, 2))
    y = mu + rng.normal(0, sd_epi) + rng.normal(0, np.sqrt(noise), (n, 2))
    return mu, sd_epi / under, y


def test_sigma_scaling_without_aleatoric_noise_overstates_the_effect_scale():
    mu, sd, y = _data()
    naive = calibration.fit(mu, sd, y, method="sigma")
    effect = calibration.fit(mu, sd, y, method="sigma", aleatoric_variance=1.0)
    # the true epistemic scale factor is `under` = 2; the label noise adds E[1 / sd^2] to s2
    assert effect.se_scale == pytest.approx([2.0, 2.0], rel=0.03)
    assert np.all(naive.se_scale > 2.4)
    # the predictive distribution of labels includes the noise: intervals still cover
    lo, hi = effect.interval(mu, sd, 0.9)
    assert np.mean((lo <= y) & (y <= hi)) == pytest.approx(0.9, abs=0.01)


def test_aleatoric_round_trip_and_quantile_refusal(tmp_path):
    mu, sd, y = _data(n=2000)
    cal = calibration.fit(mu, sd, y, method="sigma", aleatoric_variance=[1.0, 0.5])
    cal.save(tmp_path / "c.json")
    back = calibration.load(tmp_path / "c.json")
    assert back.aleatoric_variance.tolist() == [1.0, 0.5]
    assert np.allclose(back.cdf(mu, sd, y), cal.cdf(mu, sd, y))
    with pytest.raises(DeepMRInputError, match="sigma"):
        calibration.fit(mu, sd, y, method="quantile", aleatoric_variance=1.0)


def test_cross_fitted_metrics_are_not_optimistic():
    rng = np.random.default_rng(4)
    n = 300
    mu, sd = rng.normal(0, 1, (n, 1)), np.ones((n, 1))
    y = mu + rng.normal(0, 1, (n, 1))  # already calibrated
    cal = calibration.fit(mu, sd, y, method="quantile")
    in_sample = calibration.metrics(mu, sd, y, calibrator=cal).quantile_area_overall
    crossed = calibration.cross_fitted_metrics(mu, sd, y, "quantile", folds=2, seed=1)
    # the isotonic map reproduces its own data's empirical CDF almost exactly
    assert in_sample < 0.01
    assert crossed.quantile_area_overall > 2 * in_sample


def test_cross_fitted_metrics_recover_calibration_of_miscalibrated_data():
    mu, sd, y = _data(n=8000, noise=0.0)
    before = calibration.metrics(mu, sd, y)
    after = calibration.cross_fitted_metrics(mu, sd, y, "sigma", folds=2)
    assert before.interval_area_overall > 0.15
    assert after.interval_area_overall < 0.02
    assert after.coverage_overall[list(after.levels).index(0.95)] == pytest.approx(0.95, abs=0.01)
    with pytest.raises(DeepMRInputError, match="folds"):
        calibration.cross_fitted_metrics(mu[:3], sd[:3], y[:3], folds=2)


def test_replicate_noise_variance_by_hand_and_on_gaussian_replicates():
    # by hand: differences (-1, 0, -2) and (0, 2, 0); sums of squares 5 and 4 over 2 n = 6
    first = np.array([[1.0, 3.0], [2.0, 1.0], [3.0, 7.0]])
    second = np.array([[2.0, 3.0], [2.0, 3.0], [5.0, 7.0]])
    assert calibration.replicate_noise_variance(first, second) == pytest.approx([5 / 6, 4 / 6])
    # a missing label (NaN) drops that sequence for its feature only: (0 + 4) / 4
    first[0, 0] = np.nan
    assert calibration.replicate_noise_variance(first, second) == pytest.approx([4 / 4, 4 / 6])
    # two measurements of the same signal with noise variances 0.5 and 2: unbiased for each
    rng = np.random.default_rng(3)
    signal = rng.normal(0, 5, (200_000, 2))
    sd = np.sqrt([0.5, 2.0])
    a = calibration.replicate_noise_variance(
        signal + rng.normal(0, sd, signal.shape), signal + rng.normal(0, sd, signal.shape)
    )
    assert a == pytest.approx([0.5, 2.0], rel=0.01)
    # the estimate removes exactly the noise sigma scaling should not explain (see _data)
    mu, sd_model, y = _data(noise=1.7)
    noise = calibration.replicate_noise_variance(
        y, y + rng.normal(0, np.sqrt(1.7), y.shape) - rng.normal(0, np.sqrt(1.7), y.shape)
    )
    fit = calibration.fit(mu, sd_model, y, method="sigma", aleatoric_variance=noise)
    assert fit.se_scale == pytest.approx([2.0, 2.0], rel=0.05)


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        (np.zeros((3, 2)), np.zeros((3, 1)), "shapes"),
        (np.zeros((1, 2)), np.zeros((1, 2)), "n >= 2"),
        (np.array([1.0, np.nan]), np.zeros(2), "n >= 2"),
        (np.array([1.0, np.inf, 2.0]), np.zeros(3), "infinite"),
    ],
)
def test_replicate_noise_variance_refuses_bad_input(first, second, message):
    with pytest.raises(DeepMRInputError, match=message):
        calibration.replicate_noise_variance(first, second)
