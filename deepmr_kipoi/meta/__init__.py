"""Random-effects meta-analysis of local causal effects, matching R's ``metafor::rma()``.

The model is the standard random-effects model ``y_i ~ N(mu, v_i + tau2)`` with known within-study
variances ``v_i = se_i**2``. Three estimators of the between-study variance ``tau2`` are provided:

* ``"DL"`` — DerSimonian-Laird method of moments,
  ``tau2 = max(0, (Q - (k - 1)) / (sum w - sum w**2 / sum w))`` with ``w = 1 / v``;
* ``"REML"`` — restricted maximum likelihood over ``tau2 >= 0``, from ``rma()``'s starting value
  (Hedges' estimator truncated at 0) by a monotone ascent that takes Newton steps where the
  restricted likelihood is concave and ``rma()``'s Fisher-scoring steps elsewhere (plain Fisher
  scoring can oscillate for small ``tau2``; the ascent reaches the same maximum and converges
  quadratically near it);
* ``"PM"`` — Paule-Mandel, the root of the generalised Q statistic
  ``Q(tau2) = sum w_i(tau2) (y_i - mu_hat(tau2))**2 = k - 1`` (``tau2 = 0`` when ``Q(0) < k - 1``).

REML and PM are solved to full precision (relative tolerance 1e-12 by default, against metafor's
defaults of 1e-5 and ``.Machine$double.eps^0.25``), so they agree with ``rma()`` run with
``control=list(threshold=1e-12)`` rather than with its default output.

Inference on ``mu`` uses either Wald z intervals (``test="z"``) or the Knapp-Hartung / Hartung-Knapp-
Sidik-Jonkman adjustment (``test="knha"``): the variance of ``mu_hat`` is multiplied by
``s2w = sum w_i (y_i - mu_hat)**2 / (k - 1)`` with ``w_i = 1 / (v_i + tau2)`` (not truncated at 1,
as in ``rma(test="knha")``; ``s2w = 0`` when the weighted residual sum of squares is below machine
epsilon, as metafor does) and the critical value and p-value come from a t distribution with
``k - 1`` degrees of freedom. The prediction interval is ``mu_hat +- crit * sqrt(se**2 + tau2)``
with the same critical value (``predict.rma()``). Heterogeneity statistics follow ``rma()``:
Cochran's ``Q`` with the fixed-effect weights, ``I2 = 100 tau2 / (s2 + tau2)`` (percent) and
``H2 = tau2 / s2 + 1``, where ``s2 = (k - 1) sum w / ((sum w)**2 - sum w**2)`` is the "typical"
within-study variance (Higgins & Thompson 2002).

Special cases, all reported rather than raised in the batched API:

* ``k = 1``: ``tau2`` is fixed at 0, the estimate is the single study, ``test="knha"`` falls back to
  the z test (as ``rma()`` does) and the heterogeneity statistics (``q``, ``q_pvalue``, ``i2``,
  ``h2``, ``tau2_se``) are NaN.
* Non-convergence of the REML (or PM) iteration within ``maxiter`` steps: ``converged`` is False and
  ``tau2`` falls back to the DerSimonian-Laird estimate, which always exists (the same fallback as
  ``rma(method=c("REML", "DL"))``); everything downstream is computed from that ``tau2``.
* REML boundary: the ascent stops at exactly ``tau2 = 0`` when the score there is not positive, and,
  as ``rma()``'s ``ll0check``, ``tau2`` is set to 0 when the restricted likelihood at 0 is higher
  than at the local maximum found.
"""

from deepmr_kipoi.meta.batched import (
    METHODS,
    REASONS,
    TESTS,
    MetaBatchResult,
    random_effects_batched,
)
from deepmr_kipoi.meta.scalar import MetaResult, random_effects

__all__ = [
    "METHODS",
    "REASONS",
    "TESTS",
    "MetaBatchResult",
    "MetaResult",
    "random_effects",
    "random_effects_batched",
]
