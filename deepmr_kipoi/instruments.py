"""Instrument selection: which in-silico mutations are strong instruments for an exposure.

Every saturation-ISM mutant of a reference sequence is a candidate instrument. For each sequence and
exposure feature the selection keeps the mutants whose effect on the exposure is clearly non-zero:

* ``rule="wald"`` (default): ``|b_x / se_x| >= z`` with the paired effect SE of the mutant;
* ``rule="pooled"``: the rule of the paper's reference code (``filter_variants_by_score``), kept for
  parity: the exposure effects are standardised with the mean and SD pooled over *all* mutants of
  *all* sequences given (``|(b_x - mean) / sd| >= z``); the per-mutant SE plays no role.

Optionally only one allele per position is kept (the one with the largest score among the selected
ones), so that the three mutants of a position do not enter one MR fit as three instruments.
Mutations at ``N`` positions (NaN effects) and mutants with a zero or non-finite SE are never
instruments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

RULES = ("wald", "pooled")


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
    """

    mask: np.ndarray
    score: np.ndarray
    counts: np.ndarray
    enough: np.ndarray
    rule: str
    z: float
    one_per_position: bool
    min_count: int


def select(
    bx: np.ndarray,
    se_bx: np.ndarray,
    *,
    z: float = 1.96,
    rule: str = "wald",
    one_per_position: bool = False,
    min_count: int = 3,
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

    Returns
    -------
    InstrumentSelection
    """
    bx = np.asarray(bx, dtype=np.float64)
    se_bx = np.asarray(se_bx, dtype=np.float64)
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

    valid = np.isfinite(bx) & np.isfinite(se_bx) & (se_bx > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule == "wald":
            score = np.abs(bx / se_bx)
        else:
            pooled = np.where(valid, bx, np.nan)
            mean = np.nanmean(pooled, axis=(0, 1, 2), keepdims=True)
            sd = np.nanstd(pooled, axis=(0, 1, 2), keepdims=True)
            score = np.abs((bx - mean) / sd)
    score = np.where(valid & np.isfinite(score), score, np.nan)
    mask = score >= z  # NaN compares False

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
    )
