"""Recalibration and calibration metrics against analytic references and brute-force counts."""

import json

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from scipy.special import ndtr, ndtri

from deepmr_kipoi import calibration


def _interval_area_sd_twice_truth():
    """int_0^1 |2 Phi(2 Phi^-1((1 + c) / 2)) - 1 - c| dc: predicted sd twice the true sd."""
    return integrate.quad(lambda c: abs(2 * ndtr(2 * ndtri((1 + c) / 2)) - 1 - c), 0, 1)[0]


def _quantile_area_sd_twice_truth():
    return integrate.quad(lambda q: abs(ndtr(2 * ndtri(q)) - q), 0, 1)[0]


def _gaussian(rng, n, n_features, sd_factor=1.0, shift=0.0):
    """Labels from N(mu, true_sd); predictions (mu - shift * sd, sd_factor * true_sd)."""
    mu = rng.normal(0.0, 3.0, (n, n_features))
    true_sd = rng.uniform(0.2, 2.0, (n, n_features))
    y = rng.normal(mu, true_sd)
    return mu - shift * true_sd, sd_factor * true_sd, y


@pytest.fixture(scope="module")
def sd_twice_truth():
    return _gaussian(np.random.default_rng(0), 40_000, 2, sd_factor=2.0)


def test_reference_area_of_the_issue():
    assert _interval_area_sd_twice_truth() == pytest.approx(0.2048, abs=5e-5)
    assert _quantile_area_sd_twice_truth() == pytest.approx(0.1024, abs=5e-5)


def test_sd_twice_truth_has_the_analytic_miscalibration(sd_twice_truth):
    m = calibration.metrics(*sd_twice_truth)
    ref_interval, ref_quantile = _interval_area_sd_twice_truth(), _quantile_area_sd_twice_truth()
    np.testing.assert_allclose(m.interval_area, ref_interval, atol=6e-3)
    np.testing.assert_allclose(m.quantile_area, ref_quantile, atol=6e-3)
    assert m.interval_area_overall == pytest.approx(ref_interval, abs=4e-3)
    assert m.quantile_area_overall == pytest.approx(ref_quantile, abs=4e-3)
    expected_cov = 2 * ndtr(2 * ndtri((1 + np.array([0.5, 0.8, 0.9, 0.95])) / 2)) - 1
    np.testing.assert_allclose(m.levels, [0.5, 0.8, 0.9, 0.95])
    np.testing.assert_allclose(m.coverage, np.tile(expected_cov, (2, 1)), atol=8e-3)
    np.testing.assert_allclose(m.coverage_overall, expected_cov, atol=6e-3)
    assert m.n == 40_000 and not m.calibrated


@pytest.mark.parametrize("method", ["quantile", "sigma"])
def test_recalibration_on_one_half_fixes_the_other_half(sd_twice_truth, method):
    mean, sd, y = sd_twice_truth
    half = mean.shape[0] // 2
    cal = calibration.fit(mean[:half], sd[:half], y[:half], method=method)
    after = calibration.metrics(mean[half:], sd[half:], y[half:], cal)
    before = calibration.metrics(mean[half:], sd[half:], y[half:])
    assert after.calibrated and np.all(before.interval_area > 0.19)
    assert np.all(after.interval_area < 0.02) and np.all(after.quantile_area < 0.02)
    np.testing.assert_allclose(after.coverage, np.tile([0.5, 0.8, 0.9, 0.95], (2, 1)), atol=0.015)
    # A pure scale error: both methods recover the factor 1/2 of the predictive SD.
    np.testing.assert_allclose(cal.se_scale, 0.5, rtol=0.03)


def test_both_methods_agree_on_the_scale_factor_of_a_pure_scale_error():
    mean, sd, y = _gaussian(np.random.default_rng(1), 20_000, 3, sd_factor=np.array([0.5, 1, 3]))
    q = calibration.fit(mean, sd, y, "quantile")
    s = calibration.fit(mean, sd, y, "sigma")
    np.testing.assert_allclose(s.se_scale, [2.0, 1.0, 1 / 3], rtol=0.03)
    np.testing.assert_allclose(q.se_scale, s.se_scale, rtol=0.04)
    q68 = calibration.fit(mean, sd, y, "quantile", se_level=0.6827)
    np.testing.assert_allclose(q68.se_scale, s.se_scale, rtol=0.04)


def test_sigma_scaling_is_the_maximum_likelihood_variance_factor():
    rng = np.random.default_rng(2)
    mean, sd, y = _gaussian(rng, 500, 2, sd_factor=1.7)
    cal = calibration.fit(mean, sd, y, "sigma")
    for j in range(2):

        def nll(log_s2, j=j):
            return -np.sum(stats.norm.logpdf(y[:, j], mean[:, j], sd[:, j] * np.exp(log_s2 / 2)))

        best = optimize.minimize_scalar(
            nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10}
        )
        assert cal.variance_factor[j] == pytest.approx(np.exp(best.x), rel=1e-6)
    assert cal.se_scale == pytest.approx(np.sqrt(cal.variance_factor), rel=1e-15)


def test_quantile_recalibration_also_fixes_a_location_shift_sigma_scaling_cannot():
    mean, sd, y = _gaussian(np.random.default_rng(3), 20_000, 1, shift=0.8)
    half = 10_000
    q = calibration.fit(mean[:half], sd[:half], y[:half], "quantile")
    s = calibration.fit(mean[:half], sd[:half], y[:half], "sigma")
    after_q = calibration.metrics(mean[half:], sd[half:], y[half:], q)
    after_s = calibration.metrics(mean[half:], sd[half:], y[half:], s)
    assert after_q.quantile_area[0] < 0.02
    assert after_s.quantile_area[0] > 0.1


def test_metrics_count_coverage_exactly_on_known_pit_values():
    u = np.array([0.04, 0.3, 0.65, 0.97, 0.52])
    mean, sd = np.zeros(5), np.ones(5)
    y = ndtri(u)  # y = Phi^-1(u), so the PIT values are u
    m = calibration.metrics(mean, sd, y, n_grid=20)
    # |u - 1/2| = 0.46, 0.2, 0.15, 0.47, 0.02
    np.testing.assert_allclose(m.coverage[0], [3 / 5, 3 / 5, 3 / 5, 5 / 5])
    grid = (np.arange(20) + 0.5) / 20
    interval = [np.mean(np.abs(u - 0.5) <= c / 2) for c in grid]
    quantile = [np.mean(u <= q) for q in grid]
    assert m.interval_area[0] == pytest.approx(np.mean(np.abs(np.array(interval) - grid)))
    assert m.quantile_area[0] == pytest.approx(np.mean(np.abs(np.array(quantile) - grid)))
    c = calibration.curve(mean, sd, y, kind="quantile", n_grid=20)
    np.testing.assert_allclose(c.expected, grid)
    np.testing.assert_allclose(c.observed[0], quantile)


def test_curve_pools_features_and_is_monotone(sd_twice_truth):
    c = calibration.curve(*sd_twice_truth, kind="interval", n_grid=50, feature_names=["a", "b"])
    assert c.observed.shape == (2, 50) and c.observed_overall.shape == (50,)
    assert c.feature_names == ("a", "b") and c.kind == "interval"
    assert np.all(np.diff(c.observed, axis=1) >= 0)
    # Equal n per feature: the pooled frequency is the mean of the per-feature frequencies.
    np.testing.assert_allclose(c.observed_overall, c.observed.mean(axis=0), atol=1e-15)
    assert calibration.metrics(*sd_twice_truth, feature_names=["a", "b"]).table().shape == (3, 7)


def test_quantile_map_is_a_proper_cdf_map_and_ppf_inverts_cdf():
    mean, sd, y = _gaussian(np.random.default_rng(4), 3_000, 2, sd_factor=0.6)
    cal = calibration.fit(mean, sd, y, "quantile", feature_names=["x", "y"])
    for kx, ky in cal.knots:
        assert (kx[0], ky[0], kx[-1], ky[-1]) == (0.0, 0.0, 1.0, 1.0)
        assert np.all(np.diff(kx) > 0) and np.all(np.diff(ky) >= 0)
    q = np.linspace(0.02, 0.98, 25)[:, None]
    qs = cal.ppf(mean[:25], sd[:25], q)
    np.testing.assert_allclose(
        cal.cdf(mean[:25], sd[:25], qs), np.broadcast_to(q, (25, 2)), atol=1e-9
    )
    lo, hi = cal.interval(mean, sd, 0.9)
    np.testing.assert_allclose(np.mean((y >= lo) & (y <= hi), axis=0), 0.9, atol=2e-3)


def test_knot_thinning_moves_the_map_by_at_most_about_one_over_max_knots():
    mean, sd, y = _gaussian(np.random.default_rng(5), 5_000, 1, sd_factor=1.5)
    full = calibration.fit(mean, sd, y, "quantile", max_knots=10_000)
    thin = calibration.fit(mean, sd, y, "quantile", max_knots=100)
    assert full.knots[0][0].size > 4_000 and thin.knots[0][0].size <= 102
    diff = np.abs(full.cdf(mean, sd, y) - thin.cdf(mean, sd, y)).max()
    assert diff <= 1.5 / 100


@pytest.mark.parametrize("method", ["quantile", "sigma"])
def test_save_and_load_round_trip_exactly(tmp_path, method):
    mean, sd, y = _gaussian(np.random.default_rng(6), 800, 3, sd_factor=1.3)
    cal = calibration.fit(mean, sd, y, method, feature_names=["f0", "f1", "f2"], se_level=0.9)
    path = tmp_path / "calibration.json"
    cal.save(path)
    d = json.loads(path.read_text())
    assert d["method"] == method and d["feature_names"] == ["f0", "f1", "f2"] and d["n_fit"] == 800
    back = calibration.load(path)
    assert back.method == method and back.feature_names == cal.feature_names
    assert back.se_level == 0.9 and back.n_fit == 800
    np.testing.assert_array_equal(back.se_scale, cal.se_scale)
    np.testing.assert_array_equal(back.cdf(mean, sd, y), cal.cdf(mean, sd, y))
    again = calibration.Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.ppf(mean, sd, 0.3), cal.ppf(mean, sd, 0.3))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: calibration.fit(np.zeros((5, 2)), np.ones((5, 2)), np.zeros((5, 3))), "shape"),
        (lambda: calibration.fit(np.zeros((5, 2)), np.ones((4, 2)), np.zeros((5, 2))), "shape"),
        (lambda: calibration.fit(np.zeros(5), np.r_[1, 1, 0, 1, 1.0], np.zeros(5)), "positive"),
        (lambda: calibration.fit(np.zeros(5), -np.ones(5), np.zeros(5)), "positive"),
        (lambda: calibration.fit(np.zeros(5), np.ones(5), np.r_[0, np.nan, 0, 0, 0]), "NaN"),
        (lambda: calibration.fit(np.zeros(5), np.ones(5), np.zeros(5), "isotonic"), "method"),
        (lambda: calibration.fit(np.zeros(1), np.ones(1), np.zeros(1)), "at least 2"),
        (
            lambda: calibration.fit(
                np.zeros((5, 2)), np.ones((5, 2)), np.zeros((5, 2)), feature_names=["a"]
            ),
            "feature_names",
        ),
        (lambda: calibration.metrics(np.zeros(5), np.ones(5), np.zeros(5), levels=[95]), "levels"),
        (lambda: calibration.curve(np.zeros(5), np.ones(5), np.zeros(5), kind="pit"), "kind"),
        (lambda: calibration.Calibrator.from_dict({"method": "sigma"}), "format"),
    ],
)
def test_bad_input_raises_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def test_applying_a_calibrator_to_the_wrong_number_of_features_raises(tmp_path):
    cal = calibration.fit(
        np.zeros((10, 2)), np.ones((10, 2)), np.linspace(-1, 1, 20).reshape(10, 2)
    )
    with pytest.raises(ValueError, match="fitted on 2"):
        cal.cdf(np.zeros((4, 3)), np.ones((4, 3)), np.zeros((4, 3)))
    d = cal.to_dict()
    d["knots"][0]["y"][-1] = 0.5
    with pytest.raises(ValueError, match="knots of feature 0"):
        calibration.Calibrator.from_dict(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        calibration.load(bad)
