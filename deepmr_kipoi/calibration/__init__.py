"""Recalibration of Gaussian predictive distributions and calibration metrics.

One import for both halves. The recalibrations (:class:`Calibrator`, :func:`fit`, :func:`load`) are
defined in :mod:`deepmr_kipoi.calibration.recalibration`, whose docstring describes the quantile and sigma maps
and the calibrated effect SEs; the metrics (:func:`curve`, :func:`metrics`,
:func:`cross_fitted_metrics`) in :mod:`deepmr_kipoi.calibration.coverage`, whose docstring defines
the coverages and miscalibration areas; a model's SE calibration fitted on labelled sequences
(:class:`Calibration`, :func:`fit_calibration`) in :mod:`deepmr_kipoi.calibration.labelled`; the
label noise variance from replicates (:func:`replicate_noise_variance`) in
:mod:`deepmr_kipoi.calibration.noise`.
"""

from deepmr_kipoi.calibration.coverage import (
    CalibrationCurve,
    CalibrationMetrics,
    cross_fitted_metrics,
    curve,
    metrics,
)
from deepmr_kipoi.calibration.labelled import Calibration, LabelledSequences, fit_calibration
from deepmr_kipoi.calibration.noise import replicate_noise_variance
from deepmr_kipoi.calibration.recalibration import (
    COVERAGE_LEVELS,
    FORMAT,
    FORMAT_VERSION,
    METHODS,
    Calibrator,
    fit,
    load,
)

__all__ = [
    "COVERAGE_LEVELS",
    "FORMAT",
    "FORMAT_VERSION",
    "METHODS",
    "Calibration",
    "CalibrationCurve",
    "CalibrationMetrics",
    "Calibrator",
    "LabelledSequences",
    "cross_fitted_metrics",
    "curve",
    "fit",
    "fit_calibration",
    "load",
    "metrics",
    "replicate_noise_variance",
]
