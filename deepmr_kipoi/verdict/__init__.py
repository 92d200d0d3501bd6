"""One verdict per ordered feature pair: causal, not causal or undetermined, with its reason.

A run gives every ordered pair (X, Y) several estimators (IVW, MR-Egger, medians, mode), each with
its headline inference over sequences and model samples. Users need one decision. The rule reads
the global table only, so it is the same on every method row of a pair. Effects are judged
against a **smallest effect of interest** ``delta`` on a standardized scale: the effect times
``sd_X / sd_Y`` (``effect_scale``; ``sd`` is each feature's spread over the reference sequences),
i.e. the change of Y, in its SDs, per SD of X. In raw units the margin of a pair is
``delta / effect_scale`` (``min_effect``); without spreads it is 0.

1. **Estimable.** The primary estimator (IVW when it was run, else the first method) needs a
   local fit in at least ``min_sequences`` sequences: the between-sequence variation, which the
   population statement rests on, cannot be judged from fewer. Otherwise ``undetermined`` ("too
   few sequences with a local fit"). Such a pair enters no multiple-testing adjustment and is
   never ``significant``.
2. **Minimum-effect test, an intersection-union test, Benjamini-Hochberg over pairs.** For each
   estimator the p-value of ``H0: |beta| <= margin`` is ``2 P(t_df > (|estimate| - margin) /
   se)`` (capped at 1): it is below ``1 - level`` exactly when the headline interval excludes the
   whole band ``[-margin, margin]``. The pair's p-value (``pair_pvalue``) is the largest of those
   of IVW and MR-Egger (those run), 1 when their estimates differ in sign: the p-value of the
   intersection-union test "both exclude the band, on the same side" (Berger 1982), valid
   without any assumption on how the two estimators depend on each other. ``pair_qvalue`` is its
   Benjamini-Hochberg adjustment over the estimable ordered pairs. A claim needs ``pair_qvalue
   < 1 - level``. IVW assumes every instrument valid, MR-Egger allows directional pleiotropy
   (InSIDE); a claim rests on both.
3. **No claim.** A pair that fails step 2 is ``not causal`` only where an equivalence holds: the
   primary estimator's headline interval, standardized, lies inside ``(-delta, delta)`` (two
   one-sided tests at ``(1 - level) / 2`` each; per pair, not adjusted for multiplicity).
   Otherwise it is ``undetermined`` with what was and was not found ("no effect beyond +-delta
   found; effects up to ... not excluded"), or, where one estimator excludes the band and the
   other does not, "... finds an effect that ... does not: invalid instruments cannot be ruled
   out".
4. **Sign agreement.** An estimator whose interval excludes the band with the opposite sign makes
   the pair ``undetermined`` ("estimators disagree in sign").
5. **Heterogeneity beyond model noise.** Within a sequence, valid instruments of one causal effect
   agree up to the model's own noise (``run.local_checks.heterogeneity``: Cochran's Q against the
   paired, calibrated noise of each instrument's residual; a fit counts when the test rejects and
   its instruments' slopes vary by at least ``HETEROGENEITY_SPREAD`` of the estimate). Where
   clearly more sequences reject homogeneity than chance explains (a one-sided binomial test of
   the share against ``1 - level``, and a share of at least ``HETEROGENEITY_SHARE``), instruments
   of different kinds are mixed: ``undetermined``.
6. **Instrument strength (pair-level Steiger, Hemani et al. 2017).** Over the exposure's
   instruments, each feature's squared mutation effects in units of its own spread of effects in
   the sequence (``r2_exposure``, ``r2_outcome``, ``r2_other``: summed over instruments and fitted
   sequences). If X causes Y and the instruments act on Y only through X, Y's spread holds X's
   times ``|beta|`` plus Y's own, so the instruments explain less of Y than of X
   (``steiger_ratio = r2_outcome / r2_exposure < 1``), and less of any feature downstream of X
   than of X. A pair whose instruments explain at least as much of the outcome
   (``steiger_ratio >= 1``: reverse causation, a shared driver, or an outcome that is a copy of
   the exposure), or clearly more of another feature of the run (``other_ratio >=
   OTHER_RATIO``: the instruments are that feature's, a shared driver), is ``undetermined``.
   So is a pair whose instruments move that other feature in one fixed ratio to the exposure
   (``other_r2``, the squared cosine of the two features' standardized instrument effects, pooled
   over the fitted sequences, at least ``OTHER_R2``): the instruments then cannot separate the
   exposure from that feature, and a shared driver acting on the outcome directly (a pleiotropic
   site: the exposure's own sites were not learned, the instruments are the shared sites) gives
   the same data as a true effect. The threshold is a heuristic, not a test; its cost is that a
   true effect whose exposure moves a third feature in lockstep (a chain through it, or a copy
   of the exposure) is ``undetermined`` too: the instruments carry no evidence of which of the
   two acts.
7. **Direction.** The reverse direction must have been tested and not supported: the reverse
   pair (Y, X) analysed and estimable (step 1) and failing steps 2-6. If the reverse pair also
   passes steps 2-6, neither direction is claimed: both are ``undetermined`` (feedback, or a
   shared driver that the checks did not separate). A reverse pair with too few local fits
   (Y's own instruments are often weak: one or two per sequence, below ``min_instruments``) is
   tested by pooling its instruments over all sequences (``pooled_*`` columns: one IVW slope
   over every sequence's instruments with a cluster-robust SE over sequences,
   ``run.aggregate.pooled_ivw``) where at least ``min_sequences`` sequences have instruments:
   it counts as supported when that interval excludes the reverse pair's band ``[-margin,
   margin]`` (the minimum-effect p-value below ``1 - level``, per pair and unadjusted, so that
   the check errs towards finding the reverse effect) and its instruments move their exposure
   more than their outcome (``pooled_steiger_ratio < 1``, as in step 6: otherwise they are the
   forward exposure's own sites leaking into the reverse pair), and the forward pair is then
   ``undetermined``. With fewer sequences with instruments the reverse direction could not be
   tested and the forward pair is ``undetermined`` ("reverse direction could not be tested (k
   of N sequences with a local fit, m with instruments)").

Otherwise the pair is ``causal``. The claimed set is a subset of the Benjamini-Hochberg set of
step 2: under the conditions of Benjamini & Hochberg (1995) (independent or positively dependent
pair p-values) that set has a false-discovery rate of "effects beyond the margin" of at most
``1 - level``; steps 3-7 only remove pairs from it, so the expected number of false claims is at
most ``(1 - level)`` times the expected size of the BH set.

The per-unordered-pair ``direction`` column summarises the two verdicts: ``"X -> Y"`` when one
direction is causal, ``"both"`` when both directions passed steps 1-6, ``"neither"`` when both
are not causal, ``"undetermined"`` otherwise.

The verdict is about the model: a causal verdict says the model's outcome responds to mutations
through its exposure, beyond the smallest effect of interest, robustly to invalid instruments of
the kinds above; it is not proof of a biological mechanism.

The rule's code: :mod:`~deepmr_kipoi.verdict.significance` (the tests of steps 1, 2 and 5),
:mod:`~deepmr_kipoi.verdict.rule` (steps 1-6, one function per gate, and :func:`verdicts`) and
:mod:`~deepmr_kipoi.verdict.direction` (step 7 and the ``direction`` column).
"""

from deepmr_kipoi.verdict.rule import (
    HETEROGENEITY_SPREAD,
    NON_IVW_METHODS,
    OPTIONAL_COLUMNS,
    OTHER_R2,
    OTHER_RATIO,
    POOLED_COLUMNS,
    REQUIRED_COLUMNS,
    ROBUST_METHODS,
    VERDICT_STATISTICS,
    VERDICTS,
    robust_disagreement,
    verdicts,
)
from deepmr_kipoi.verdict.significance import (
    AGREEMENT_METHODS,
    HETEROGENEITY_SHARE,
    MIN_EFFECT,
    benjamini_hochberg,
    heterogeneity_excess,
    min_effect_pvalue,
    statistics,
)

__all__ = [
    "AGREEMENT_METHODS",
    "HETEROGENEITY_SHARE",
    "HETEROGENEITY_SPREAD",
    "MIN_EFFECT",
    "NON_IVW_METHODS",
    "OPTIONAL_COLUMNS",
    "OTHER_R2",
    "OTHER_RATIO",
    "POOLED_COLUMNS",
    "REQUIRED_COLUMNS",
    "ROBUST_METHODS",
    "VERDICTS",
    "VERDICT_STATISTICS",
    "benjamini_hochberg",
    "heterogeneity_excess",
    "min_effect_pvalue",
    "robust_disagreement",
    "statistics",
    "verdicts",
]
