"""Instrument selection: which in-silico mutations are strong instruments for an exposure.

Every saturation-ISM mutant of a reference sequence is a candidate instrument. For each sequence and
exposure feature the selection keeps the mutants whose effect on the exposure is clearly non-zero:

* ``rule="wald"`` (default): ``|b_x / se_x| >= z`` with the paired effect SE of the mutant;
* ``rule="pooled"``: the rule of the paper's reference code (``filter_variants_by_score``), kept for
  parity: the exposure effects are standardised with the mean and SD pooled over *all* mutants of
  *all* sequences given (``|(b_x - mean) / sd| >= z``); the per-mutant SE plays no role.

Optionally only one allele per position is kept (the one with the largest score among the selected
ones), so that the three mutants of a position do not enter one MR fit as three instruments: they
share the lost reference base, so their effects are strongly correlated, and three copies of one
instrument shrink an IVW standard error by about sqrt(3).

Two validity rules guard the causal reading of an estimate:

* a *floor* (``floor``): an exposure effect below a fixed size (by default a small fraction of the
  exposure's spread over the reference sequences, :func:`feature_spread`) is noise however small its
  SE, and such mutants pass ``|b/se| >= z`` by chance while carrying their direct effects on the
  outcome into the estimate;
* *directionality* (:func:`directional`, Steiger's logic per instrument, Hemani et al. 2017): an
  instrument counts for X -> Y only where it moves X clearly more than Y, each effect measured in
  units of that feature's spread, ``|b_x| / s_x`` against ``|b_y| / s_y``, the difference tested
  against its calibrated standard error with a one-sided threshold (0: the plain comparison). If X
  causes Y (``b_y = beta b_x`` for a mutation acting on X), Y's spread holds X's times ``|beta|``
  plus Y's own, so a mutation acting on X moves X more in these units, and one acting on Y moves Y
  more: the first counts for X -> Y only, the second for Y -> X only. Two spreads are offered. The
  *spread of the feature's mutation effects within each reference sequence* (:func:`effect_spread`,
  the default) is the local analog of Steiger's variance explained: every mutation of the sequence
  is one draw. The *spread of its predictions over the reference sequences* (:func:`feature_spread`)
  is closer to Steiger's population variance, but where the analysed sequences all carry the same
  motifs, Y's own variation over them is small and mutations of X's motif sit on the boundary
  (measured in the simulation). Approximation, either way: a mutation acting on both features counts
  for the one it moves clearly more, and a feature without variation of its own cannot be told from
  a pure copy.

Mutations at ``N`` positions (NaN effects) and mutants with a zero or non-finite SE are never
instruments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

RULES = ("wald", "pooled")
#: Relative tolerance of the plain directionality comparison (``z = 0``): standardized effects
#: equal to within it (one feature an exact copy of the other, up to scale) count for both
#: directions.
DIRECTION_TIE = 1e-6
#: Default one-sided threshold of the directionality test (:func:`directional`), in standard errors.
DIRECTION_Z = 0.0


@dataclass(frozen=True)
class InstrumentSelection:
    """Instruments per (sequence, position, allele, exposure).

    Attributes
    ----------
    mask : ndarray of bool, shape (N, W, 3, E)
        True where the mutant is an instrument for that exposure.
    score : ndarray of float, shape (N, W, 3, E)
        The statistic the rule thresholds (|b/se| or the pooled |z|); NaN where undefined.
    counts : ndarray of int, shape (N, E)
        Number of instruments per sequence and exposure.
    enough : ndarray of bool, shape (N, E)
        ``counts >= min_count``.
    rule, z, one_per_position, min_count
        The settings that produced the selection.
    n_significant : ndarray of int, shape (N, E)
        Mutants that pass the threshold ``z`` (before the floor and the one-allele rule).
    removed_floor, removed_allele : ndarray of int, shape (N, E)
        Of those, how many the floor and then the one-allele-per-position rule removed.
    """

    mask: np.ndarray
    score: np.ndarray
    counts: np.ndarray
    enough: np.ndarray
    rule: str
    z: float
    one_per_position: bool
    min_count: int
    n_significant: np.ndarray | None = None
    removed_floor: np.ndarray | None = None
    removed_allele: np.ndarray | None = None


def select(
    bx: np.ndarray,
    se_bx: np.ndarray,
    *,
    z: float = 1.96,
    rule: str = "wald",
    one_per_position: bool = False,
    min_count: int = 3,
    floor=None,
) -> InstrumentSelection:
    """Select the instruments of every (sequence, exposure).

    Parameters
    ----------
    bx : array_like, shape (N, W, 3, E)
        Paired ISM effects on the exposure features (``ism.ISMEffects.mean[..., exposures]``).
    se_bx : array_like, shape (N, W, 3, E)
        Their standard errors (after calibration, when used).
    z : float
        Threshold on the rule's statistic (1.96: two-sided 5% for ``"wald"``; the reference code
        used 2.0 with ``"pooled"``).
    rule : {"wald", "pooled"}
        ``"wald"``: ``|bx / se_bx| >= z`` per mutant. ``"pooled"``: the reference code's rule,
        ``|(bx - m) / s| >= z`` with m, s the mean and SD (ddof=0) of ``bx`` pooled over all
        sequences, positions and alleles of each exposure. Approximation: it treats the effects as
        one normal sample and ignores the per-mutant SE; the pooled statistics depend on which
        sequences are passed together.
    one_per_position : bool
        Keep at most one allele per position: the selected allele with the largest statistic.
    min_count : int
        Minimum number of instruments for an MR fit (``enough``); Egger needs 3.
    floor : array_like, shape (E,), optional
        Drop mutants with ``|bx| < floor`` (per exposure), applied before ``one_per_position``.

    Returns
    -------
    InstrumentSelection
    """
    bx = np.asarray(bx, dtype=np.float64)
    se_bx = np.asarray(se_bx, dtype=np.float64)
    _check_selection(bx, se_bx, z, rule, min_count)
    score = _scores(bx, se_bx, rule)
    mask = score >= z  # NaN compares False
    n_significant = mask.sum(axis=(1, 2)).astype(np.int64)
    if floor is not None:
        floor = np.broadcast_to(np.asarray(floor, dtype=np.float64), bx.shape[-1:])
        mask &= np.abs(bx) >= floor
    after_floor = mask.sum(axis=(1, 2)).astype(np.int64)

    if one_per_position:
        ranked = np.where(mask, score, -np.inf)
        best = np.argmax(ranked, axis=2)  # (N, W, E)
        keep = np.zeros_like(mask)
        np.put_along_axis(keep, best[:, :, None, :], True, axis=2)
        mask &= keep

    counts = mask.sum(axis=(1, 2)).astype(np.int64)
    return InstrumentSelection(
        mask=mask,
        score=score,
        counts=counts,
        enough=counts >= int(min_count),
        rule=rule,
        z=float(z),
        one_per_position=bool(one_per_position),
        min_count=int(min_count),
        n_significant=n_significant,
        removed_floor=n_significant - after_floor,
        removed_allele=after_floor - counts,
    )


def _check_selection(bx: np.ndarray, se_bx: np.ndarray, z: float, rule: str, min_count) -> None:
    """The arguments of :func:`select`, refused in one line each."""
    if bx.ndim != 4 or bx.shape[2] != 3:
        raise DeepMRInputError(
            f"bx must have shape (N, W, 3, E), got {bx.shape}; pass ism effects sliced to exposures"
        )
    if se_bx.shape != bx.shape:
        raise DeepMRInputError(f"se_bx shape {se_bx.shape} differs from bx shape {bx.shape}")
    if rule not in RULES:
        raise DeepMRInputError(f"unknown instrument rule {rule!r}; use one of {', '.join(RULES)}")
    if not np.isfinite(z) or z < 0:
        raise DeepMRInputError(f"instrument threshold z must be a finite number >= 0, got {z}")
    if int(min_count) < 1:
        raise DeepMRInputError(f"min_count must be >= 1, got {min_count}")


def _scores(bx: np.ndarray, se_bx: np.ndarray, rule: str) -> np.ndarray:
    """The instrument statistic of every mutant, shape (N, W, 3, E); NaN where the effect or its
    SE is not usable (see :func:`select` for the rules)."""
    valid = np.isfinite(bx) & np.isfinite(se_bx) & (se_bx > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule == "wald":
            score = np.abs(bx / se_bx)
        else:
            pooled = np.where(valid, bx, np.nan)
            mean = np.nanmean(pooled, axis=(0, 1, 2), keepdims=True)
            sd = np.nanstd(pooled, axis=(0, 1, 2), keepdims=True)
            score = np.abs((bx - mean) / sd)
    return np.where(valid & np.isfinite(score), score, np.nan)


def feature_spread(reference) -> np.ndarray:
    """Spread of every feature over the reference sequences: the scale of the validity rules.

    Parameters
    ----------
    reference : array_like, shape (S, N, F)
        Reference predictions of every model sample (``ism.ISMEffects.reference``).

    Returns
    -------
    ndarray, shape (F,)
        Standard deviation (ddof = 1) over sequences of the sample-mean prediction; NaN with fewer
        than two sequences.
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 3:
        raise DeepMRInputError(f"reference must have shape (S, N, F), got {reference.shape}")
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite outputs are checked elsewhere
        mean = reference.mean(axis=0)
        if mean.shape[0] < 2:
            return np.full(mean.shape[1], np.nan)
        return mean.std(axis=0, ddof=1)


def effect_spread(effects) -> np.ndarray:
    """Spread of every feature's mutation effects within each reference sequence.

    Parameters
    ----------
    effects : array_like, shape (N, W, 3, F)
        Paired ISM effects (NaN at N positions, ignored).

    Returns
    -------
    ndarray, shape (N, F)
        Root mean square of the effects over the sequence's 3 W mutants (the SD about 0, the
        effect of no mutation); NaN where a sequence has no mutant.
    """
    effects = np.asarray(effects, dtype=np.float64)
    if effects.ndim != 4:
        raise DeepMRInputError(f"effects must have shape (N, W, 3, F), got {effects.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        sq = np.where(np.isfinite(effects), effects * effects, np.nan)
        count = np.isfinite(sq).sum(axis=(1, 2))
        return np.sqrt(np.nansum(sq, axis=(1, 2)) / np.where(count > 0, count, np.nan))


def directional(bx, by, se_x, se_y, spread_x, spread_y, *, z: float = DIRECTION_Z) -> np.ndarray:
    """Directionality check: which instruments move the exposure clearly more than the outcome.

    Steiger's logic per instrument: a mutation that acts on X, where X causes Y, moves X more than
    Y once each effect is put in units of its feature's spread (Y's spread holds X's times
    ``|beta|`` plus Y's own), and a mutation that acts on Y moves Y more. The standardized effects
    ``t_x = |b_x| / s_x`` and ``t_y = |b_y| / s_y`` are compared with their (calibrated) standard
    errors: the instrument counts for X -> Y when

        (t_x - t_y) / sqrt((se_x / s_x)^2 + (se_y / s_y)^2) >= z.

    A mutation whose standardized effects are indistinguishable (the outcome a copy of the
    exposure in that sequence, the reverse-causation case the plain comparison let through, or a
    mutation acting on both features alike) counts for neither direction. ``z = 0`` is the plain
    comparison ``t_x >= t_y``. Approximation: the covariance of the paired errors of ``b_x`` and
    ``b_y`` is ignored; it is positive where the outcome follows the exposure within the model's
    samples, which makes the test conservative (fewer instruments), never anti-conservative.

    Parameters
    ----------
    bx, se_x : array_like, broadcastable, e.g. shape (N, E, 1, K)
        Exposure effects of the candidate instruments and their (calibrated) standard errors.
    by, se_y : array_like, broadcastable, e.g. shape (N, 1, O, K)
        Outcome effects and standard errors.
    spread_x, spread_y : array_like, broadcastable, e.g. shape (N, E, 1, 1) and (N, 1, O, 1)
        Each feature's spread (:func:`effect_spread` or :func:`feature_spread`).
    z : float
        One-sided threshold on the standardized difference (default :data:`DIRECTION_Z`).

    Returns
    -------
    ndarray of bool, the broadcast shape
        True where the instrument passes. False where an effect or SE is not finite. Where a spread
        is zero or not finite (a constant feature, a single sequence) the check cannot be made and
        every instrument with finite effects passes.
    """
    bx, by, se_x, se_y, spread_x, spread_y = (
        np.asarray(a, dtype=np.float64) for a in (bx, by, se_x, se_y, spread_x, spread_y)
    )
    if not np.isfinite(z) or z < 0:
        raise DeepMRInputError(f"direction threshold z must be a finite number >= 0, got {z}")
    usable = np.isfinite(spread_x) & (spread_x > 0) & np.isfinite(spread_y) & (spread_y > 0)
    finite = np.isfinite(bx) & np.isfinite(by)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx, ty = np.abs(bx) / spread_x, np.abs(by) / spread_y
        if z > 0:
            sd = np.sqrt((se_x / spread_x) ** 2 + (se_y / spread_y) ** 2)
            passes = (tx - ty) >= z * np.where(np.isfinite(sd), sd, np.inf)
        else:
            passes = tx >= ty * (1.0 - DIRECTION_TIE)
    return finite & np.where(usable, passes, True)
