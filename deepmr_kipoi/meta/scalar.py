"""One random-effects meta-analysis (:func:`random_effects`), on the batched solver of
:mod:`deepmr_kipoi.meta.batched`; the model, estimators and special cases are described in
:mod:`deepmr_kipoi.meta`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.meta.batched import (
    _FLOAT_FIELDS,
    _NOT_CONVERGED,
    _SINGLE,
    REASONS,
    random_effects_batched,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetaResult:
    """Random-effects meta-analysis of one set of estimates (scalar fields).

    Attributes
    ----------
    estimate, se : float
        Pooled effect ``mu_hat`` and its standard error (Knapp-Hartung scaled for ``test="knha"``).
    ci_low, ci_high : float
        Confidence interval at ``level``.
    pvalue : float
        Two-sided p-value of ``mu = 0`` (normal, or t with ``k - 1`` df for ``test="knha"``).
    statistic : float
        ``estimate / se``.
    tau2, tau2_se : float
        Between-study variance and its standard error (metafor's formula for the method;
        NaN for ``k = 1``).
    i2 : float
        I^2 in percent (metafor's definition through the typical within-study variance).
    h2 : float
        H^2.
    q, q_df, q_pvalue : float, int, float
        Cochran's Q (fixed-effect weights), its degrees of freedom ``k - 1`` and chi-square p-value.
    pi_low, pi_high : float
        Prediction interval for the effect in a new study, ``estimate +- crit * sqrt(se**2 + tau2)``.
    k : int
        Number of studies.
    method, test : str
        Estimator of tau2 and the test actually used (``"z"`` when ``k = 1``).
    level : float
        Confidence level.
    converged : bool
        False when the tau2 iteration hit ``maxiter`` (tau2 is then the DerSimonian-Laird value).
    message : str
        ``"ok"`` or a plain-words note on a special case (see the module docstring).
    """

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    pvalue: float
    statistic: float
    tau2: float
    tau2_se: float
    i2: float
    h2: float
    q: float
    q_df: int
    q_pvalue: float
    pi_low: float
    pi_high: float
    k: int
    method: str
    test: str
    level: float
    converged: bool
    message: str


def random_effects(
    estimates,
    ses,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    *,
    tol: float = 1e-12,
    maxiter: int = 1000,
) -> MetaResult:
    """Random-effects meta-analysis of one set of studies, as ``metafor::rma(yi, sei=ses)``.

    Parameters
    ----------
    estimates : array_like, shape (k,)
        Study estimates.
    ses : array_like, shape (k,)
        Their standard errors, finite and positive.
    method : {"REML", "DL", "PM"}
        Estimator of tau2 (see the module docstring).
    test : {"z", "knha"}
        Wald z test, or Knapp-Hartung adjusted SE with t(k - 1) critical values and p-values.
    level : float
        Confidence level in (0, 1).
    tol, maxiter : float, int
        Convergence tolerance and iteration limit, see :func:`random_effects_batched`.

    Returns
    -------
    MetaResult

    Raises
    ------
    DeepMRInputError
        On shape mismatch, no studies, non-finite estimates, or non-finite or non-positive SEs.
    """
    y = np.asarray(estimates, dtype=np.float64)
    s = np.asarray(ses, dtype=np.float64)
    if y.ndim != 1 or s.shape != y.shape:
        raise DeepMRInputError(
            f"estimates {y.shape} and ses {s.shape} must be 1-d of equal length; "
            "use random_effects_batched for arrays."
        )
    if y.size == 0:
        raise DeepMRInputError("no studies: estimates and ses are empty; give at least one study.")
    if not np.all(np.isfinite(y)):
        raise DeepMRInputError(
            "estimates contain NaN or infinite values; drop those studies first."
        )
    if not np.all(np.isfinite(s) & (s > 0.0)):
        raise DeepMRInputError(
            "ses must be finite and positive; drop studies with zero or missing SEs."
        )
    b = random_effects_batched(
        y[None], s[None], method=method, test=test, level=level, tol=tol, maxiter=maxiter
    )
    code = int(b.reason[0])
    if code == _NOT_CONVERGED:
        logger.warning("meta-analysis (%s): %s", b.method, REASONS[code])
    return MetaResult(
        **{name: float(getattr(b, name)[0]) for name in _FLOAT_FIELDS},
        q_df=int(b.q_df[0]),
        k=int(b.k[0]),
        method=b.method,
        test="z" if code == _SINGLE else b.test,
        level=b.level,
        converged=bool(b.converged[0]),
        message=REASONS[code],
    )
