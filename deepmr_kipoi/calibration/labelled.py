"""The calibration of a model's effect SEs, fitted on labelled held-out sequences.

A run (and the simulation) scales the SE of every model feature by the factor a recalibration
(:func:`~deepmr_kipoi.calibration.fit`) finds on sequences with observed labels; the metrics and
curves before and after it are kept for the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.calibration.coverage import cross_fitted_metrics, curve, metrics
from deepmr_kipoi.calibration.recalibration import fit


@dataclass(frozen=True)
class Calibration:
    """The calibration a run applies to its effect SEs.

    Attributes
    ----------
    se_scale : ndarray, shape (F,)
        Factor on the SE of every model feature (1 where not calibrated).
    features : tuple of str
        The features actually calibrated.
    metrics_before, metrics_after : CalibrationMetrics or None
        Calibration metrics on the calibration table (fitted here only).
    curve_before, curve_after : CalibrationCurve or None
        Calibration curves on the calibration table (fitted here only).
    source : str
        The calibrator file or calibration table.
    feature_names : tuple of str, length F
    """

    se_scale: np.ndarray
    features: tuple[str, ...]
    metrics_before: object | None
    metrics_after: object | None
    curve_before: object | None
    curve_after: object | None
    source: str
    feature_names: tuple[str, ...] = ()

    def scale_items(self) -> list[tuple[str, float]]:
        """(feature, SE scale) of the calibrated features."""
        names = list(self.feature_names)
        return [(f, float(self.se_scale[names.index(f)])) for f in self.features]


@dataclass(frozen=True, eq=False)
class LabelledSequences:
    """Held-out sequences with observed labels of some model features.

    Attributes
    ----------
    onehot : ndarray, shape (n, L, 4)
        The sequences (ACGT one-hot).
    labels : ndarray, shape (n, C)
        Observed labels of the features named in ``columns``.
    columns : tuple of str, length C
        Feature names of the label columns.
    source : str
        Where the labels came from, for the record.
    """

    onehot: np.ndarray
    labels: np.ndarray
    columns: tuple[str, ...]
    source: str = "labelled sequences"


def fit_calibration(
    model,
    labelled: LabelledSequences,
    feature_names: Sequence[str],
    *,
    method: str = "quantile",
    batch_size: int = 512,
    aleatoric_variance=0.0,
    seed: int = 0,
) -> Calibration:
    """Fit the calibration of some model features on labelled sequences.

    Parameters
    ----------
    model : PredictiveModel
        Predicts the labelled sequences (``predict_samples``).
    labelled : LabelledSequences
        The sequences, their labels and the features the labels are of.
    feature_names : sequence of str, length F
        All the model's features.
    method : {"quantile", "sigma"}
    batch_size : int
    aleatoric_variance : float or array_like, shape (len(labelled.columns),)
        Label noise variance removed by sigma scaling (``calibration.fit``), one for all labelled
        features or one each (e.g. ``calibration.replicate_noise_variance``).
    seed : int
        Seed of the folds of the cross-fitted "after" metrics.

    Returns
    -------
    Calibration
        ``metrics_after`` are cross-fitted (``calibration.cross_fitted_metrics``, 2 folds): each
        labelled sequence is scored by a map fitted on the others, so they are not optimistic.
    """
    cols, names = list(labelled.columns), list(feature_names)
    samples = np.asarray(model.predict_samples(labelled.onehot, batch_size=batch_size))
    idx = [names.index(c) for c in cols]
    pred_mean = samples.mean(axis=0)[:, idx]
    pred_sd = samples.std(axis=0, ddof=1)[:, idx]
    y = np.asarray(labelled.labels, dtype=np.float64)
    noisy = np.any(np.asarray(aleatoric_variance, dtype=np.float64) != 0)
    options = {"aleatoric_variance": aleatoric_variance} if noisy else {}
    cal = fit(pred_mean, pred_sd, y, method=method, feature_names=cols, **options)
    after = (
        cross_fitted_metrics(
            pred_mean, pred_sd, y, method, seed=seed, feature_names=cols, **options
        )
        if len(y) >= 4
        else metrics(pred_mean, pred_sd, y, calibrator=cal)
    )
    full = np.ones(len(names))
    full[idx] = np.asarray(cal.se_scale, dtype=np.float64)
    return Calibration(
        se_scale=full,
        features=tuple(cols),
        metrics_before=metrics(pred_mean, pred_sd, y),
        metrics_after=after,
        curve_before=curve(pred_mean, pred_sd, y),
        curve_after=curve(pred_mean, pred_sd, y, calibrator=cal),
        source=labelled.source,
        feature_names=tuple(names),
    )
