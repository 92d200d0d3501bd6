"""Frozen result records of the MR estimators (one instrument set, and arrays of many)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

_BASE_FIELDS = (
    "method",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "pvalue",
    "n_instruments",
    "level",
)


@dataclass(frozen=True)
class MRResult:
    """Causal estimate from one instrument set.

    Attributes
    ----------
    method : str
        Name in ``mr.METHODS``.
    estimate, se : float
        Causal effect estimate and its standard error.
    ci_low, ci_high : float
        ``level`` confidence interval (distribution per method: see ``deepmr_kipoi.mr``).
    pvalue : float
        Two-sided p-value of ``estimate = 0``.
    n_instruments : int
        Number of instruments used (K).
    level : float
        Confidence level of the interval.
    """

    method: str
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pvalue: float
    n_instruments: int
    level: float

    @property
    def diagnostics(self) -> dict:
        """Method-specific fields (everything beyond the common ones) as a dict."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _BASE_FIELDS}

    def to_dict(self) -> dict:
        """All fields as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class IVWResult(MRResult):
    """Inverse-variance weighted estimate (``ivw``: multiplicative random effects; ``ivw_fe``).

    Attributes
    ----------
    q, q_df, q_pvalue : float, int, float
        Cochran's Q of the weighted regression through the origin, ``K - 1`` df, chi-square p.
    residual_se : float
        ``sqrt(q / q_df)``, the residual standard error (``sigma`` of R's ``lm``).
    se_fixed : float
        Fixed-effect SE ``1 / sqrt(sum b_x**2 / se_y**2)``; ``ivw``'s ``se`` is
        ``se_fixed * max(1, residual_se)``.
    """

    q: float
    q_df: int
    q_pvalue: float
    residual_se: float
    se_fixed: float


@dataclass(frozen=True)
class EggerResult(MRResult):
    """MR-Egger regression estimate.

    Attributes
    ----------
    intercept, intercept_se : float
        Pleiotropy intercept (after orienting ``b_x > 0``) and its SE (``max(1, sigma)`` rule).
    intercept_ci_low, intercept_ci_high, intercept_pvalue : float
        Its interval and p-value (t, ``K - 2`` df).
    q, q_df, q_pvalue : float, int, float
        Rucker's Q (weighted residual sum of squares about the Egger line), ``K - 2`` df.
    residual_se : float
        ``sqrt(q / q_df)``.
    i2_gx : float
        I^2_GX in percent (Bowden et al. 2016, weighted form as in MendelianRandomization):
        ``100 * max(0, (Q_gx - (K - 1)) / Q_gx)``, ``Q_gx`` the heterogeneity of
        ``|b_x| / se_y`` with standard errors ``se_x / se_y``.
    """

    intercept: float
    intercept_se: float
    intercept_ci_low: float
    intercept_ci_high: float
    intercept_pvalue: float
    q: float
    q_df: int
    q_pvalue: float
    residual_se: float
    i2_gx: float


@dataclass(frozen=True)
class MedianResult(MRResult):
    """Weighted or simple median estimate with a parametric-bootstrap SE.

    Attributes
    ----------
    weights : str
        ``"second"``, ``"first"`` (weighted median) or ``"simple"`` (equal weights).
    n_boot : int
        Bootstrap replicates behind ``se``.
    """

    weights: str
    n_boot: int


@dataclass(frozen=True)
class ModeResult(MRResult):
    """Weighted mode (mode-based estimate) with a bootstrap SE.

    Attributes
    ----------
    bandwidth : float
        Kernel bandwidth ``h`` used for the point estimate.
    phi : float
        Bandwidth multiplier.
    n_boot : int
        Bootstrap replicates behind ``se``.
    """

    bandwidth: float
    phi: float
    n_boot: int


#: Float fields of :class:`MRBatchResult` that are NaN where a method does not define them.
BATCH_FLOAT_FIELDS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "pvalue",
    "q",
    "q_df",
    "q_pvalue",
    "residual_se",
    "intercept",
    "intercept_se",
    "intercept_pvalue",
    "i2_gx",
)


@dataclass(frozen=True)
class MRBatchResult:
    """One MR method run over many instrument sets; every array has the broadcast leading shape.

    Attributes
    ----------
    method : str
    level : float
    estimate, se, ci_low, ci_high, pvalue : ndarray of float64, shape (...)
        As in :class:`MRResult`; NaN where ``reason != 0``.
    q, q_df, q_pvalue, residual_se : ndarray of float64, shape (...)
        Heterogeneity (IVW, IVW-FE, Egger); NaN for the other methods.
    intercept, intercept_se, intercept_pvalue, i2_gx : ndarray of float64, shape (...)
        MR-Egger diagnostics (``i2_gx`` in percent); NaN for the other methods.
    n_instruments : ndarray of int64, shape (...)
        Selected instruments per cell (after ``drop_invalid``, if given).
    reason : ndarray of int8, shape (...)
        Code into ``mr.REASONS`` (0 = ok).
    """

    method: str
    level: float
    estimate: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    pvalue: np.ndarray
    q: np.ndarray
    q_df: np.ndarray
    q_pvalue: np.ndarray
    residual_se: np.ndarray
    intercept: np.ndarray
    intercept_se: np.ndarray
    intercept_pvalue: np.ndarray
    i2_gx: np.ndarray
    n_instruments: np.ndarray
    reason: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """The leading shape of every array."""
        return self.estimate.shape

    @property
    def ok(self) -> np.ndarray:
        """Boolean array: True where the cell has a result (``reason == 0``)."""
        return self.reason == 0
