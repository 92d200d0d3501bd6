"""Recalibration of Gaussian predictive distributions (quantile recalibration, sigma scaling).

A model with uncertainty (deep ensemble, MC dropout) predicts for every sequence and feature a
Gaussian ``N(mean, sd)``, ``sd`` being the spread over samples. On labelled held-out data the
predicted CDF values (probability integral transforms) ``p_i = Phi((y_i - mean_i) / sd_i)`` should
be uniform; usually they are not. Two recalibrations are fitted per feature:

* ``"quantile"`` — Kuleshov, Fenner & Ermon (2018), "Accurate uncertainties for deep learning using
  calibrated regression": an isotonic regression ``R`` of the empirical CDF of the ``p_i``,
  ``P_hat(p) = #{j: p_j <= p} / n``, on ``p`` (scikit-learn ``IsotonicRegression``, increasing,
  clipped to [0, 1]). The recalibrated predictive CDF is ``R(F(y))``: ``R`` is applied as a map of
  CDF values, and recalibrated quantiles are ``F^{-1}(R^{-1}(q))``. ``R`` is stored as the knots of
  its piecewise-linear interpolant, completed with ``R(0) = 0`` and ``R(1) = 1`` so that it is a
  proper CDF map on [0, 1]. With more than ``max_knots`` knots, every ``ceil(n / max_knots)``-th
  knot by rank is kept (ends included): an approximation that moves ``R`` by at most about
  ``1 / max_knots``, below the sampling error of an empirical CDF of the same data.
* ``"sigma"`` — sigma scaling: one variance factor ``s2`` per feature, ``y ~ N(mean, s2 sd^2)``,
  fitted by maximum likelihood with the means fixed, ``s2 = mean(((y - mean) / sd)^2)``.

Labels carry aleatoric noise that the model's spread (epistemic) does not and should not predict.
It cancels in a mutant-minus-reference difference, so a factor fitted to the labels' full residual
variance inflates every effect SE. With ``aleatoric_variance=a`` (e.g. 1 for Anscombe-transformed
Poisson counts, whose variance is about 1 for means above a few counts) sigma scaling models
``y ~ N(mean, s2 sd^2 + a)`` and estimates ``s2`` by the method of moments,
``s2 = mean(((y - mean)^2 - a) / sd^2)`` (not the likelihood maximum, which has no closed form);
the predictive CDF includes ``a`` and ``se_scale = sqrt(s2)`` applies to effects only. Use
:func:`deepmr_kipoi.calibration.cross_fitted_metrics` for before/after metrics on data the map was
not fitted on.

Calibrated effect SEs (``Calibrator.se_scale``): a paired ISM effect is a difference of two
predictions of the same feature, and its SE (the spread of that difference over samples) is turned
into a calibrated SE by the feature's scale factor. This assumes the miscalibration is a common
scale error of the predictive spread (exact for sigma scaling). For quantile recalibration the
factor is an approximation — the *equivalent Gaussian scale*: the width of the recalibrated central
``se_level`` interval (default 95%) in units of ``sd``, divided by the uncalibrated width
``2 Phi^{-1}((1 + se_level) / 2)``. It ignores any location shift and shape change that ``R`` also
corrects.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

METHODS = ("quantile", "sigma")
COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)
FORMAT = "deepmr_kipoi.calibration"
FORMAT_VERSION = 1


def _as_float_array(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise DeepMRInputError(f"{name} contains NaN or infinite values; drop those rows first.")
    return arr


def _check_distribution(pred_mean, pred_sd, n_features: int | None = None):
    """Validated predictive means and SDs shaped (..., F); 1-d inputs are one feature."""
    mean = _as_float_array("pred_mean", pred_mean)
    sd = _as_float_array("pred_sd", pred_sd)
    if mean.ndim == 1:
        mean, sd = mean[:, None], sd.reshape(-1, 1)
    if mean.ndim == 0 or sd.shape != mean.shape:
        raise DeepMRInputError(
            f"pred_mean {mean.shape} and pred_sd {sd.shape} must have the same shape "
            "(n, n_features)."
        )
    if not np.all(sd > 0.0):
        raise DeepMRInputError("pred_sd must be positive; a zero spread cannot be calibrated.")
    if n_features is not None and mean.shape[-1] != n_features:
        raise DeepMRInputError(
            f"predictions have {mean.shape[-1]} features (last axis) but the calibrator was "
            f"fitted on {n_features}."
        )
    return mean, sd


def _check_predictions(pred_mean, pred_sd, y, n_features: int | None = None):
    """Validated means, SDs and labels, all shaped (..., F)."""
    mean, sd = _check_distribution(pred_mean, pred_sd, n_features)
    obs = _as_float_array("y", y)
    if obs.shape != np.shape(pred_mean):
        raise DeepMRInputError(
            f"y {obs.shape} must have the shape of pred_mean {np.shape(pred_mean)}, "
            "(n, n_features)."
        )
    return mean, sd, obs.reshape(mean.shape)


def _inverse_cdf_map(q: np.ndarray, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    """Generalised inverse ``inf{p: R(p) >= q}`` of the piecewise-linear non-decreasing map R."""
    q = np.clip(q, 0.0, 1.0)
    idx = np.clip(np.searchsorted(ky, q, side="left"), 1, ky.size - 1)
    y0, y1 = ky[idx - 1], ky[idx]
    x0, x1 = kx[idx - 1], kx[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(y1 > y0, (q - y0) / (y1 - y0), 0.0)
    return np.where(q <= ky[0], kx[0], x0 + np.clip(frac, 0.0, 1.0) * (x1 - x0))


def _check_knots(kx: np.ndarray, ky: np.ndarray, feature: int) -> None:
    ok = (
        kx.ndim == 1
        and kx.shape == ky.shape
        and kx.size >= 2
        and np.all(np.isfinite(kx))
        and np.all(np.isfinite(ky))
        and kx[0] == 0.0
        and kx[-1] == 1.0
        and ky[0] == 0.0
        and ky[-1] == 1.0
        and np.all(np.diff(kx) > 0.0)
        and np.all(np.diff(ky) >= 0.0)
    )
    if not ok:
        raise DeepMRInputError(
            f"knots of feature {feature} are not an increasing map of [0, 1] onto [0, 1] "
            "with R(0) = 0 and R(1) = 1; refit the calibrator."
        )


@dataclass(frozen=True, eq=False)
class Calibrator:
    """Per-feature recalibration of Gaussian predictive distributions (see the module docstring).

    Build it with :func:`fit` or :meth:`from_dict` / :func:`load`.

    Attributes
    ----------
    method : {"quantile", "sigma"}
    variance_factor : ndarray, shape (F,), or None
        Sigma scaling: the fitted variance factors ``s2`` (None for ``"quantile"``).
    knots : tuple of (ndarray, ndarray) pairs, length F, or None
        Quantile recalibration: per feature the knots ``(x, R(x))`` of the CDF map, each
        shape (m_f,), from (0, 0) to (1, 1) (None for ``"sigma"``).
    feature_names : tuple of str or None
        Names of the F features, if given at fit time.
    se_level : float
        Central interval level that defines the equivalent Gaussian scale of a quantile map.
    n_fit : int
        Number of labelled examples the calibrator was fitted on.
    aleatoric_variance : ndarray, shape (F,), or None
        Sigma scaling: the label noise variance ``a`` added to the predictive variance (None: 0).
    se_scale : ndarray, shape (F,)
        Factor that turns an uncalibrated predictive SD or effect SE into a calibrated one:
        ``sqrt(variance_factor)`` for sigma scaling; the equivalent Gaussian scale of ``R`` at
        ``se_level`` for quantile recalibration (an approximation, see the module docstring).
    """

    method: str
    variance_factor: np.ndarray | None = None
    knots: tuple[tuple[np.ndarray, np.ndarray], ...] | None = None
    feature_names: tuple[str, ...] | None = None
    se_level: float = 0.95
    n_fit: int = 0
    aleatoric_variance: np.ndarray | None = None
    se_scale: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        if self.method not in METHODS:
            raise DeepMRInputError(
                f"method={self.method!r} is not supported; use one of {METHODS}."
            )
        validation.level(self.se_level, "se_level")
        if self.method == "sigma":
            factor = np.asarray(self.variance_factor, dtype=np.float64)
            if factor.ndim != 1 or not np.all(np.isfinite(factor) & (factor > 0.0)):
                raise DeepMRInputError(
                    "variance_factor must be a 1-d array of positive finite numbers."
                )
            object.__setattr__(self, "variance_factor", factor)
            scale = np.sqrt(factor)
            noise = (
                np.zeros_like(factor)
                if self.aleatoric_variance is None
                else np.broadcast_to(
                    np.asarray(self.aleatoric_variance, dtype=np.float64), factor.shape
                ).copy()
            )
            if not np.all(np.isfinite(noise) & (noise >= 0.0)):
                raise DeepMRInputError("aleatoric_variance must be finite and >= 0 per feature")
            object.__setattr__(self, "aleatoric_variance", noise)
        else:
            if self.aleatoric_variance is not None and np.any(
                np.asarray(self.aleatoric_variance, dtype=np.float64) != 0
            ):
                raise DeepMRInputError(
                    "aleatoric_variance applies to sigma scaling only; use method='sigma'"
                )
            object.__setattr__(self, "aleatoric_variance", None)
            if not self.knots:
                raise DeepMRInputError(
                    "quantile recalibration needs knots for at least one feature."
                )
            knots = tuple(
                (np.asarray(kx, dtype=np.float64), np.asarray(ky, dtype=np.float64))
                for kx, ky in self.knots
            )
            for j, (kx, ky) in enumerate(knots):
                _check_knots(kx, ky, j)
            object.__setattr__(self, "knots", knots)
            z = ndtri(0.5 + self.se_level / 2.0)
            lo_hi = np.array(
                [
                    _inverse_cdf_map(
                        np.array([0.5 - self.se_level / 2.0, 0.5 + self.se_level / 2.0]), kx, ky
                    )
                    for kx, ky in knots
                ]
            )
            scale = (ndtri(lo_hi[:, 1]) - ndtri(lo_hi[:, 0])) / (2.0 * z)
        if self.feature_names is not None:
            names = tuple(str(n) for n in self.feature_names)
            if len(names) != scale.size:
                raise DeepMRInputError(
                    f"{len(names)} feature_names for {scale.size} calibrated features; give one "
                    "name per feature."
                )
            object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "se_scale", scale)

    @property
    def n_features(self) -> int:
        """Number of calibrated features F."""
        return int(self.se_scale.size)

    def cdf(self, pred_mean, pred_sd, y) -> np.ndarray:
        """Recalibrated predictive CDF at the observations (recalibrated PIT values).

        Parameters
        ----------
        pred_mean, pred_sd, y : array_like, shape (..., F)
            Predicted means, predicted SDs (positive) and observed values; 1-d inputs are
            treated as one feature and returned shaped (n, 1).

        Returns
        -------
        ndarray, shape (..., F)
            ``R(Phi((y - mean) / sd))`` (quantile) or ``Phi((y - mean) / (s sd))`` (sigma).
        """
        mean, sd, obs = _check_predictions(pred_mean, pred_sd, y, self.n_features)
        if self.method == "sigma":
            return ndtr((obs - mean) / self._predictive_sd(sd))
        p = ndtr((obs - mean) / sd)
        out = np.empty_like(p)
        for j, (kx, ky) in enumerate(self.knots):
            out[..., j] = np.interp(p[..., j], kx, ky)
        return out

    def ppf(self, pred_mean, pred_sd, q) -> np.ndarray:
        """Recalibrated predictive quantiles.

        Parameters
        ----------
        pred_mean, pred_sd : array_like, shape (..., F)
        q : float or array_like broadcastable to (..., F)
            Probability levels in [0, 1].

        Returns
        -------
        ndarray, shape (..., F)
            ``mean + sd * Phi^{-1}(R^{-1}(q))`` (quantile) or ``mean + s sd Phi^{-1}(q)`` (sigma);
            -inf / +inf at levels the map sends beyond the data.
        """
        q = np.asarray(q, dtype=np.float64)
        if not np.all((q >= 0.0) & (q <= 1.0)):
            raise DeepMRInputError("q must hold probability levels in [0, 1].")
        mean, sd = _check_distribution(pred_mean, pred_sd, self.n_features)
        q = np.broadcast_to(q, mean.shape)
        if self.method == "sigma":
            return mean + self._predictive_sd(sd) * ndtri(q)
        p = np.empty_like(mean)
        for j, (kx, ky) in enumerate(self.knots):
            p[..., j] = _inverse_cdf_map(q[..., j], kx, ky)
        return mean + sd * ndtri(p)

    def _predictive_sd(self, sd: np.ndarray) -> np.ndarray:
        """Sigma scaling's predictive SD of a label, ``sqrt(s2 sd^2 + a)``."""
        return np.sqrt(self.variance_factor * sd * sd + self.aleatoric_variance)

    def interval(self, pred_mean, pred_sd, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Recalibrated central predictive interval at ``level``, two arrays shaped (..., F)."""
        level = validation.level(level)
        return (
            self.ppf(pred_mean, pred_sd, 0.5 - level / 2.0),
            self.ppf(pred_mean, pred_sd, 0.5 + level / 2.0),
        )

    def to_dict(self) -> dict:
        """JSON-serialisable parameters (floats round-trip exactly through ``json``)."""
        d = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "method": self.method,
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            "se_level": self.se_level,
            "n_fit": self.n_fit,
        }
        if self.method == "sigma":
            d["variance_factor"] = self.variance_factor.tolist()
            d["aleatoric_variance"] = self.aleatoric_variance.tolist()
        else:
            d["knots"] = [{"x": kx.tolist(), "y": ky.tolist()} for kx, ky in self.knots]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        """Rebuild a calibrator from :meth:`to_dict` output."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise DeepMRInputError(f"not a calibrator description (expected format {FORMAT!r}).")
        if d.get("version") != FORMAT_VERSION:
            raise DeepMRInputError(
                f"calibrator format version {d.get('version')!r} is not supported "
                f"(this deepmr_kipoi reads version {FORMAT_VERSION})."
            )
        try:
            method = d["method"]
            common = {
                "feature_names": d.get("feature_names"),
                "se_level": float(d["se_level"]),
                "n_fit": int(d["n_fit"]),
            }
            if method == "sigma":
                return cls(
                    method,
                    variance_factor=np.asarray(d["variance_factor"]),
                    aleatoric_variance=d.get("aleatoric_variance"),
                    **common,
                )
            knots = tuple((np.asarray(k["x"]), np.asarray(k["y"])) for k in d["knots"])
        except (KeyError, TypeError) as err:
            raise DeepMRInputError(
                f"calibrator description lacks or mangles field {err}."
            ) from None
        return cls(method, knots=knots, **common)

    def save(self, path: str | os.PathLike) -> None:
        """Write the calibrator as JSON to ``path``."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, separators=(",", ":"))


def load(path: str | os.PathLike) -> Calibrator:
    """Read a calibrator written by :meth:`Calibrator.save`."""
    with open(path, encoding="utf-8") as fh:
        try:
            d = json.load(fh)
        except json.JSONDecodeError as err:
            raise DeepMRInputError(f"{os.fspath(path)} is not valid JSON ({err.msg}).") from None
    return Calibrator.from_dict(d)


def _fit_quantile_map(p: np.ndarray, max_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots of the isotonic map of the empirical CDF of ``p`` (n,) on ``p``."""
    from sklearn.isotonic import IsotonicRegression

    ecdf = np.searchsorted(np.sort(p), p, side="right") / p.size
    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(p, ecdf)
    kx = np.asarray(iso.X_thresholds_, dtype=np.float64)
    ky = np.asarray(iso.y_thresholds_, dtype=np.float64)
    if kx.size > max_knots:
        keep = np.unique(np.round(np.linspace(0, kx.size - 1, max_knots)).astype(np.int64))
        kx, ky = kx[keep], ky[keep]
    inner = (kx > 0.0) & (kx < 1.0)
    return np.concatenate([[0.0], kx[inner], [1.0]]), np.concatenate([[0.0], ky[inner], [1.0]])


def fit(
    pred_mean,
    pred_sd,
    y,
    method: str = "quantile",
    *,
    feature_names=None,
    se_level: float = 0.95,
    max_knots: int = 1000,
    aleatoric_variance=0.0,
) -> Calibrator:
    """Fit a per-feature recalibration on labelled held-out data.

    Parameters
    ----------
    pred_mean, pred_sd : array_like, shape (n, F)
        Predictive means and SDs (SD over ensemble members / MC-dropout samples, positive).
    y : array_like, shape (n, F)
        Observed labels. 1-d inputs of length n are treated as one feature.
    method : {"quantile", "sigma"}
        Kuleshov et al. (2018) isotonic quantile recalibration, or sigma scaling.
    feature_names : sequence of str, optional
        Names of the F features, stored with the calibrator.
    se_level : float
        Central interval level that defines the equivalent Gaussian scale (``se_scale``) of a
        quantile map.
    max_knots : int
        Largest number of isotonic knots kept per feature (quantile method).
    aleatoric_variance : float or array_like, shape (F,)
        Label noise variance ``a`` that the model's spread should not explain (sigma scaling only;
        module docstring). Factors that would fall to 0 or below (labels vary less than their
        noise) are floored at 1e-6 with a warning.

    Returns
    -------
    Calibrator

    Raises
    ------
    DeepMRInputError
        On shape mismatches, NaN or infinite values, non-positive SDs, fewer than 2 rows or an
        unknown method.
    """
    if method not in METHODS:
        raise DeepMRInputError(f"method={method!r} is not supported; use one of {METHODS}.")
    if int(max_knots) < 2:
        raise DeepMRInputError(f"max_knots={max_knots!r} must be at least 2.")
    mean, sd, obs = _check_predictions(pred_mean, pred_sd, y)
    if mean.ndim != 2:
        raise DeepMRInputError(f"predictions must be shaped (n, n_features), got {mean.shape}.")
    n, n_features = mean.shape
    if n < 2:
        raise DeepMRInputError(f"{n} labelled example(s) cannot fit a calibration; give at least 2")
    z = (obs - mean) / sd
    se_level = validation.level(se_level, "se_level")
    common = {"feature_names": feature_names, "se_level": se_level, "n_fit": n}
    noise = np.broadcast_to(np.asarray(aleatoric_variance, dtype=np.float64), (n_features,))
    if method == "sigma":
        factor = np.mean(((obs - mean) ** 2 - noise) / (sd * sd), axis=0)
        if np.any(factor <= 1e-6):
            logger.warning(
                "sigma scaling: %d feature(s) vary less than their aleatoric variance; "
                "their variance factor is floored at 1e-6",
                int(np.sum(factor <= 1e-6)),
            )
            factor = np.maximum(factor, 1e-6)
        return Calibrator(
            "sigma", variance_factor=factor, aleatoric_variance=noise.copy(), **common
        )
    if np.any(noise != 0):
        raise DeepMRInputError(
            "aleatoric_variance applies to sigma scaling only; use method='sigma'"
        )
    p = ndtr(z)
    knots = tuple(_fit_quantile_map(p[:, j], int(max_knots)) for j in range(n_features))
    logger.debug("quantile recalibration: %d features, %d examples", n_features, n)
    return Calibrator("quantile", knots=knots, **common)
