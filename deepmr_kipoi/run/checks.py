"""Checks of a model's outputs before local MR uses them: non-finite predictions and zero SEs.

A model that returns NaN or inf for some inputs would otherwise shift the estimates silently (the
affected fits report too few instruments); a model whose samples agree exactly gives zero effect
SEs, which no instrument threshold can fix. Both stop the run with one line naming the features,
unless non-finite outputs are explicitly masked (``mask_nonfinite``): then every mutant with a
non-finite effect on any used feature is left out (NaN), and the count is reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError


@dataclass(frozen=True)
class NonFinite:
    """Non-finite model outputs found in one chunk.

    Attributes
    ----------
    features : tuple of str
        Used features with a non-finite reference prediction or mutation effect.
    n_sequences : int
        Sequences with at least one non-finite value.
    n_mutants : int
        Mutants (sequence, position, alternative base) with a non-finite effect on a used feature.
    """

    features: tuple[str, ...]
    n_sequences: int
    n_mutants: int


def find_nonfinite(eff, used: Sequence[int], feature_names: Sequence[str]) -> NonFinite:
    """Locate non-finite outputs among the used features of a chunk's effects.

    Parameters
    ----------
    eff : ISMEffects
        ``mean``/``se`` of shape (n, W, 3, F), ``reference`` of shape (S, n, F), ``is_n`` (n, W).
    used : sequence of int
        Feature indices the run uses.
    feature_names : sequence of str, length F

    Returns
    -------
    NonFinite
    """
    used = list(used)
    bad_mut = ~(np.isfinite(eff.mean[..., used]) & np.isfinite(eff.se[..., used]))  # (n, W, 3, U)
    bad_mut &= ~np.asarray(eff.is_n, dtype=bool)[:, :, None, None]
    outside = getattr(eff, "outside", None)
    if outside is not None:  # a panel member's features are not seen outside its window
        bad_mut &= ~np.asarray(outside, dtype=bool)[None, :, None, used]
    bad_ref = ~np.isfinite(np.asarray(eff.reference)[..., used]).all(axis=0)  # (n, U)
    per_feature = bad_mut.any(axis=(0, 1, 2)) | bad_ref.any(axis=0)
    per_sequence = bad_mut.any(axis=(1, 2, 3)) | bad_ref.any(axis=1)
    return NonFinite(
        tuple(feature_names[u] for u, b in zip(used, per_feature) if b),
        int(per_sequence.sum()),
        int(bad_mut.any(axis=-1).sum()),
    )


def check_outputs(
    eff,
    used: Sequence[int],
    exposures: Sequence[int],
    feature_names: Sequence[str],
    *,
    mask: bool = False,
):
    """Refuse (or mask) non-finite outputs, leave out flat features, and refuse exposures whose
    effect SEs are all zero.

    A *flat* feature is one that no mutation of the window changes in any sample (every effect and
    every SE exactly 0: a constant output, or one that only reads outside the window). It can be
    neither an instrument's exposure nor an outcome: its effects are set to NaN (never an
    instrument, no local fit) and it is named in the result, instead of refusing the run.

    Parameters
    ----------
    eff : ISMEffects
    used, exposures : sequence of int
        Feature indices the run uses / its exposures.
    feature_names : sequence of str, length F
    mask : bool
        Set the mean and SE of every mutant with a non-finite effect on a used feature to NaN
        (never an instrument) instead of refusing.

    Returns
    -------
    eff : ISMEffects
        Unchanged, or with the non-finite mutants and flat features masked.
    found : NonFinite
    flat : tuple of str
        The flat features (names), left out.

    Raises
    ------
    DeepMRInputError
        Non-finite outputs without ``mask``; an exposure whose effect SE is zero for every mutant.
    """
    found = find_nonfinite(eff, used, feature_names)
    if found.features and not mask:
        raise DeepMRInputError(
            f"the model returned NaN or inf for feature(s) {', '.join(found.features)} "
            f"({found.n_sequences} sequences, {found.n_mutants} mutants); fix the model or its "
            "input, or pass --mask-nonfinite to leave those mutants out"
        )
    if found.features:
        finite = np.isfinite(eff.mean[..., list(used)]) & np.isfinite(eff.se[..., list(used)])
        outside = getattr(eff, "outside", None)
        if outside is not None:
            finite |= np.asarray(outside, dtype=bool)[None, :, None, list(used)]
        bad = ~finite.all(-1)
        bad |= ~np.isfinite(np.asarray(eff.reference)[..., list(used)]).all(axis=(0, 2))[
            :, None, None
        ]
        mean, se = eff.mean.copy(), eff.se.copy()
        mean[bad], se[bad] = np.nan, np.nan
        changes = {"mean": mean, "se": se}
        if getattr(eff, "samples", None) is not None:
            samples = eff.samples.copy()
            samples[:, bad] = np.nan
            changes["samples"] = samples
        eff = dataclasses.replace(eff, **changes)
    mutated = ~np.asarray(eff.is_n, dtype=bool)
    eff, flat = _mask_flat(eff, used, feature_names, mutated)
    zero = []
    for e in exposures:
        if feature_names[e] in flat:
            continue
        se = eff.se[..., e][mutated]
        se = se[np.isfinite(se)]
        if se.size and not (se > 0).any():
            zero.append(feature_names[e])
    if zero:
        raise DeepMRInputError(
            f"every mutation effect on {', '.join(zero)} has standard error 0: the model's "
            "samples agree exactly (identical ensemble members, or dropout inactive at "
            "prediction); give the model real uncertainty (this is not a --z problem)"
        )
    return eff, found, flat


def _mask_flat(eff, used: Sequence[int], feature_names: Sequence[str], mutated: np.ndarray):
    """The effects with every flat feature (see :func:`check_outputs`) set to NaN, and their names."""
    flat = []
    for u in used:
        mean, se = eff.mean[..., u][mutated], eff.se[..., u][mutated]
        ok = np.isfinite(mean) & np.isfinite(se)
        if ok.any() and not (mean[ok] != 0).any() and not (se[ok] != 0).any():
            flat.append(u)
    if not flat:
        return eff, ()
    mean, se = eff.mean.copy(), eff.se.copy()
    mean[..., flat], se[..., flat] = np.nan, np.nan
    changes = {"mean": mean, "se": se}
    if getattr(eff, "samples", None) is not None:
        samples = eff.samples.copy()
        samples[..., flat] = np.nan
        changes["samples"] = samples
    return dataclasses.replace(eff, **changes), tuple(feature_names[u] for u in flat)


def reference_predictions(
    model, onehot: np.ndarray, batch_size: int, *, mask: bool = False
) -> np.ndarray:
    """The model's predictions of the reference sequences, checked against its own declaration.

    Parameters
    ----------
    model : PredictiveModel
        Declares ``n_samples`` (S) and ``feature_names`` (F).
    onehot : ndarray, shape (N, L, 4)
    batch_size : int
    mask : bool
        Non-finite predictions are left to the masking of the chunks instead of refused.

    Returns
    -------
    ndarray of float64, shape (S, N, F)

    Raises
    ------
    DeepMRInputError
        ``predict_samples`` takes no ``batch_size``, returns no numeric array, an array of another
        shape, or NaN/inf (without ``mask``), in one line.
    """
    try:
        out = model.predict_samples(onehot, batch_size=batch_size)
    except TypeError as err:
        if "batch_size" not in str(err):
            raise
        raise DeepMRInputError(
            "the model's predict_samples does not take batch_size; define it as "
            "predict_samples(onehot, batch_size=None)"
        ) from err
    expected = (int(getattr(model, "n_samples", 0) or 0), len(onehot), len(model.feature_names))
    try:
        values = np.asarray(out, dtype=np.float64) if out is not None else None
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim == 0:
        raise DeepMRInputError(
            f"the model's predict_samples returned {type(out).__name__}, not an array of shape (S, N, F) "
            f"= {expected}; return one prediction per sample, sequence and feature"
        )
    if values.shape != expected:
        raise DeepMRInputError(
            f"the model's predict_samples returned an array of shape {values.shape} for {len(onehot)} "
            f"sequences; expected (S, N, F) = {expected} (its n_samples and feature_names)"
        )
    bad = ~np.isfinite(values).all(axis=(0, 1))
    if bad.any() and not mask:
        names = ", ".join(str(model.feature_names[i]) for i in np.flatnonzero(bad)[:5])
        raise DeepMRInputError(
            f"the model returned NaN or inf for the reference sequences (feature(s) {names}); fix the "
            "model or its input, or pass --mask-nonfinite to leave those sequences out"
        )
    return values


def numeric_columns(table, columns: Sequence[str], source: str) -> np.ndarray:
    """The columns of a labelled table as float64, shape (n, C); the first cell that is not a
    number is named in one line (blank cells read as NaN).

    Raises
    ------
    DeepMRInputError
        A cell that is not a number, or a column without any number.
    """
    import pandas as pd

    out = np.empty((len(table), len(columns)))
    for j, col in enumerate(columns):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = values.isna() & table[col].notna() & (table[col].astype(str).str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DeepMRInputError(
                f"{source}: column {col!r} holds {str(table[col].iloc[row])!r} (row {row + 1}), not a "
                "number; give numeric labels (blank for a missing one)"
            )
        if values.isna().all():
            raise DeepMRInputError(f"{source}: column {col!r} has no numbers; give numeric labels")
        out[:, j] = values.to_numpy(dtype=np.float64)
    return out
