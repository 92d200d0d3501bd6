"""Calibration metrics of Gaussian predictive distributions, before and after recalibration.

Metrics compare expected and observed frequencies of the (recalibrated) CDF values ``u``: the
observed coverage of the central interval at level ``c`` is the fraction with
``|u - 1/2| <= c / 2``, of the one-sided quantile at level ``q`` the fraction with ``u <= q``. A
miscalibration area is the mean absolute difference between observed and expected on a grid of
``n_grid`` levels at the bin midpoints ``(j + 1/2) / n_grid`` — the midpoint rule for
``int_0^1 |observed(c) - c| dc``. Gaussian data whose predicted sd is twice the truth has interval
area ``int_0^1 |2 Phi(2 Phi^{-1}((1 + c) / 2)) - 1 - c| dc = 0.2048`` and quantile area 0.1024.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from deepmr_kipoi import validation
from deepmr_kipoi.calibration.recalibration import (
    COVERAGE_LEVELS,
    Calibrator,
    _check_predictions,
    fit,
)
from deepmr_kipoi.errors import DeepMRInputError


@dataclass(frozen=True, eq=False)
class CalibrationCurve:
    """Expected vs observed frequencies for a calibration plot.

    Attributes
    ----------
    kind : {"interval", "quantile"}
        Central intervals (expected = nominal coverage) or one-sided quantiles.
    expected : ndarray, shape (m,)
        Levels at the bin midpoints ``(j + 1/2) / m``.
    observed : ndarray, shape (F, m)
        Observed frequency per feature.
    observed_overall : ndarray, shape (m,)
        Observed frequency over all features pooled.
    feature_names : tuple of str or None
    """

    kind: str
    expected: np.ndarray
    observed: np.ndarray
    observed_overall: np.ndarray
    feature_names: tuple[str, ...] | None = None


def _observed(u_sorted_stat: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of a sorted statistic <= each threshold."""
    return np.searchsorted(u_sorted_stat, thresholds, side="right") / u_sorted_stat.size


def _pit(pred_mean, pred_sd, y, calibrator: Calibrator | None) -> np.ndarray:
    if calibrator is not None:
        return calibrator.cdf(pred_mean, pred_sd, y).reshape(-1, calibrator.n_features)
    mean, sd, obs = _check_predictions(pred_mean, pred_sd, y)
    return ndtr((obs - mean) / sd).reshape(-1, mean.shape[-1])


def _curves(u: np.ndarray, kind: str, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Observed frequencies at ``levels`` per feature (F, m) and pooled (m,)."""
    if kind == "interval":
        stat, thresholds = np.abs(u - 0.5), levels / 2.0
    elif kind == "quantile":
        stat, thresholds = u, levels
    else:
        raise DeepMRInputError(f"kind={kind!r} is not supported; use 'interval' or 'quantile'.")
    stat = np.sort(stat, axis=0)
    per_feature = np.stack([_observed(stat[:, j], thresholds) for j in range(stat.shape[1])])
    pooled = _observed(np.sort(stat, axis=None), thresholds)
    return per_feature, pooled


def _feature_names(names, calibrator: Calibrator | None, n_features: int):
    if names is None:
        return calibrator.feature_names if calibrator is not None else None
    names = tuple(str(n) for n in names)
    if len(names) != n_features:
        raise DeepMRInputError(
            f"{len(names)} feature_names for {n_features} features; give one each."
        )
    return names


def _grid(n_grid: int) -> np.ndarray:
    if int(n_grid) < 1:
        raise DeepMRInputError(f"n_grid={n_grid!r} must be a positive integer, e.g. 100.")
    return (np.arange(int(n_grid)) + 0.5) / int(n_grid)


def curve(
    pred_mean,
    pred_sd,
    y,
    calibrator: Calibrator | None = None,
    *,
    kind: str = "interval",
    n_grid: int = 100,
    feature_names=None,
) -> CalibrationCurve:
    """Expected vs observed coverage on a grid of levels, for a calibration plot.

    Parameters
    ----------
    pred_mean, pred_sd, y : array_like, shape (n, F)
        Predictions and labels (1-d: one feature).
    calibrator : Calibrator, optional
        Apply this recalibration first; None evaluates the raw Gaussian predictions.
    kind : {"interval", "quantile"}
        Central intervals or one-sided quantiles.
    n_grid : int
        Number of levels m, at the bin midpoints ``(j + 1/2) / m``.
    feature_names : sequence of str, optional
        Names of the F features; default: the calibrator's.

    Returns
    -------
    CalibrationCurve
    """
    u = _pit(pred_mean, pred_sd, y, calibrator)
    levels = _grid(n_grid)
    observed, pooled = _curves(u, kind, levels)
    names = _feature_names(feature_names, calibrator, observed.shape[0])
    return CalibrationCurve(kind, levels, observed, pooled, names)


@dataclass(frozen=True, eq=False)
class CalibrationMetrics:
    """Calibration of predictive distributions on labelled data, per feature and overall.

    Attributes
    ----------
    interval_area, quantile_area : ndarray, shape (F,)
        Miscalibration areas (mean |observed - expected| over the level grid) of central
        intervals and of one-sided quantiles.
    interval_area_overall, quantile_area_overall : float
        The same over all features pooled.
    levels : ndarray, shape (L,)
        Nominal coverages of the central intervals reported below (default 50/80/90/95%).
    coverage : ndarray, shape (F, L)
        Observed coverage of those intervals per feature.
    coverage_overall : ndarray, shape (L,)
        Observed coverage over all features pooled.
    n : int
        Number of labelled examples per feature.
    calibrated : bool
        Whether a recalibration was applied.
    feature_names : tuple of str or None
    """

    interval_area: np.ndarray
    quantile_area: np.ndarray
    interval_area_overall: float
    quantile_area_overall: float
    levels: np.ndarray
    coverage: np.ndarray
    coverage_overall: np.ndarray
    n: int
    calibrated: bool
    feature_names: tuple[str, ...] | None = None

    def table(self):
        """Per-feature rows plus an ``"overall"`` row, as a pandas DataFrame."""
        import pandas as pd

        names = self.feature_names or tuple(str(j) for j in range(self.interval_area.size))
        cols = {
            f"coverage_{round(100 * c, 6):g}": self.coverage[:, i]
            for i, c in enumerate(self.levels)
        }
        frame = pd.DataFrame(
            {
                "feature": list(names),
                "interval_area": self.interval_area,
                "quantile_area": self.quantile_area,
                **cols,
            }
        )
        overall = {
            "feature": "overall",
            "interval_area": self.interval_area_overall,
            "quantile_area": self.quantile_area_overall,
            **{key: self.coverage_overall[i] for i, key in enumerate(cols)},
        }
        return pd.concat([frame, pd.DataFrame([overall])], ignore_index=True)


def metrics(
    pred_mean,
    pred_sd,
    y,
    calibrator: Calibrator | None = None,
    *,
    levels=COVERAGE_LEVELS,
    n_grid: int = 100,
    feature_names=None,
) -> CalibrationMetrics:
    """Miscalibration areas and interval coverages, before or after recalibration.

    Parameters
    ----------
    pred_mean, pred_sd, y : array_like, shape (n, F)
        Predictions and labels on held-out data (1-d: one feature).
    calibrator : Calibrator, optional
        Apply this recalibration first; None evaluates the raw Gaussian predictions.
    levels : sequence of float
        Nominal coverages of the central intervals to report, in (0, 1).
    n_grid : int
        Number of levels of the grid on which the miscalibration areas are computed.
    feature_names : sequence of str, optional
        Names of the F features; default: the calibrator's.

    Returns
    -------
    CalibrationMetrics
    """
    if np.ndim(levels) != 1:
        raise DeepMRInputError(f"levels must be a sequence of confidence levels, got {levels!r}")
    lv = np.array([validation.level(v, "each of levels") for v in levels], dtype=np.float64)
    u = _pit(pred_mean, pred_sd, y, calibrator)
    names = _feature_names(feature_names, calibrator, u.shape[1])
    return _metrics_from_pit(u, lv, n_grid, calibrated=calibrator is not None, names=names)


def _metrics_from_pit(
    u: np.ndarray, lv: np.ndarray, n_grid: int, *, calibrated: bool, names
) -> CalibrationMetrics:
    grid = _grid(n_grid)
    interval, interval_pooled = _curves(u, "interval", grid)
    quantile, quantile_pooled = _curves(u, "quantile", grid)
    coverage, coverage_pooled = _curves(u, "interval", lv)
    return CalibrationMetrics(
        interval_area=np.abs(interval - grid).mean(axis=1),
        quantile_area=np.abs(quantile - grid).mean(axis=1),
        interval_area_overall=float(np.abs(interval_pooled - grid).mean()),
        quantile_area_overall=float(np.abs(quantile_pooled - grid).mean()),
        levels=lv,
        coverage=coverage,
        coverage_overall=coverage_pooled,
        n=int(u.shape[0]),
        calibrated=calibrated,
        feature_names=names,
    )


def cross_fitted_metrics(
    pred_mean,
    pred_sd,
    y,
    method: str = "quantile",
    *,
    folds: int = 2,
    seed: int = 0,
    levels=COVERAGE_LEVELS,
    n_grid: int = 100,
    **fit_options,
) -> CalibrationMetrics:
    """Calibration metrics after recalibration, each example scored by a map it was not fitted on.

    Metrics of a recalibration computed on the data it was fitted on are optimistic (an isotonic
    map fitted to n points reproduces their empirical CDF). Here the examples are split at random
    into ``folds`` parts; each part's recalibrated CDF values come from a calibrator fitted on the
    other parts, and the metrics pool them.

    Parameters
    ----------
    pred_mean, pred_sd, y : array_like, shape (n, F)
        Predictions and labels on held-out data.
    method : {"quantile", "sigma"}
    folds : int
        Number of folds (>= 2, at most n / 2).
    seed : int
        Seed of the random split.
    levels, n_grid
        As in :func:`metrics`.
    **fit_options
        Passed to :func:`fit` (e.g. ``aleatoric_variance``); its ``feature_names`` also name the
        metrics' features, as in :func:`metrics`.

    Returns
    -------
    CalibrationMetrics
        With ``calibrated=True``.
    """
    mean, sd, obs = _check_predictions(pred_mean, pred_sd, y)
    if mean.ndim == 1:
        mean, sd, obs = mean[:, None], sd[:, None], obs[:, None]
    n = mean.shape[0]
    folds = int(folds)
    if folds < 2 or 2 * folds > n:
        raise DeepMRInputError(f"folds must be between 2 and n / 2 = {n // 2}, got {folds}")
    part = np.random.default_rng(seed).permutation(n) % folds
    u = np.empty_like(mean)
    for k in range(folds):
        cal = fit(mean[part != k], sd[part != k], obs[part != k], method=method, **fit_options)
        u[part == k] = cal.cdf(mean[part == k], sd[part == k], obs[part == k])
    return _metrics_from_pit(
        u,
        np.asarray(levels, dtype=np.float64),
        n_grid,
        calibrated=True,
        names=_feature_names(fit_options.get("feature_names"), None, u.shape[1]),
    )
