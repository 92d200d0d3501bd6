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
