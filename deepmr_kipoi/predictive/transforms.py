"""Per-feature output transforms, applied to member predictions before effects are differenced.

A transform puts a feature on the scale on which additive effects are meaningful: ``"logit"`` for
probabilities (sigmoid outputs), ``"log1p"`` for counts, ``"identity"`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError

#: transform names
TRANSFORMS = ("identity", "logit", "log1p")

#: probabilities are clipped to [LOGIT_EPS, 1 - LOGIT_EPS] before the logit, so that a saturated
#: sigmoid gives a large finite value (about +-16.1) instead of +-inf
LOGIT_EPS = 1e-7

__all__ = ["LOGIT_EPS", "TRANSFORMS", "apply_transforms", "resolve_transforms"]


def resolve_transforms(transforms, feature_names: Sequence[str]) -> tuple[str, ...]:
    """Expand a transform specification to one transform name per feature.

    Parameters
    ----------
    transforms : None, str, mapping or sequence
        None or ``"identity"`` for no transform; one name for every feature; a mapping
        ``{feature_name: name}`` (features not named stay identity); or a sequence of F names.
    feature_names : sequence of str, length F

    Returns
    -------
    tuple of str, length F
    """
    names = list(feature_names)
    if transforms is None:
        out = ["identity"] * len(names)
    elif isinstance(transforms, str):
        out = [transforms] * len(names)
    elif isinstance(transforms, Mapping):
        unknown = [k for k in transforms if k not in names]
        if unknown:
            raise DeepMRInputError(
                f"transforms name features {unknown[:3]} that the model does not have; use names from feature_names"
            )
        out = [transforms.get(f, "identity") for f in names]
    else:
        out = list(transforms)
        if len(out) != len(names):
            raise DeepMRInputError(
                f"transforms has {len(out)} entries but the model has {len(names)} features; give one per feature or a dict"
            )
    bad = sorted({t for t in out if t not in TRANSFORMS})
    if bad:
        raise DeepMRInputError(f"unknown transform(s) {bad}; choose from {', '.join(TRANSFORMS)}")
    return tuple(out)


def apply_transforms(pred: np.ndarray, transforms: Sequence[str]) -> np.ndarray:
    """Apply per-feature transforms.

    Parameters
    ----------
    pred : numpy.ndarray, shape (N, F)
        Raw member predictions.
    transforms : sequence of str, length F
        From :func:`resolve_transforms`.

    Returns
    -------
    numpy.ndarray, shape (N, F), float32 (float64 for float64 predictions)
        ``logit``: ``log(p / (1 - p))`` of ``p`` clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]`` (computed in
        float64); ``log1p``: ``log(1 + x)`` of ``x`` clipped below at 0 (a count head's small negative
        rounding is treated as zero counts).
    """
    pred = np.asarray(pred)
    pred = pred.astype(np.float64 if pred.dtype == np.float64 else np.float32, copy=False)
    if all(t == "identity" for t in transforms):
        return pred
    out = pred.copy()
    kinds = np.asarray(transforms)
    for kind in ("logit", "log1p"):
        cols = np.flatnonzero(kinds == kind)
        if not len(cols):
            continue
        v = pred[:, cols].astype(np.float64)
        if kind == "logit":
            v = np.clip(v, LOGIT_EPS, 1.0 - LOGIT_EPS)
            out[:, cols] = np.log(v) - np.log1p(-v)
        else:
            out[:, cols] = np.log1p(np.maximum(v, 0.0))
    return out
