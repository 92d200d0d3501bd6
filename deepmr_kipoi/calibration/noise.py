"""Label noise variance from replicate measurements, for sigma scaling's aleatoric term.

Sigma scaling (``recalibration.fit(..., aleatoric_variance=a)``) removes from the labels' residual
variance the part ``a`` that no sequence model can predict, because it cancels in a
mutant-minus-reference difference. Assuming ``a`` (for example 1 for Anscombe-transformed Poisson
counts) is right only when the counting noise is all there is; anything else that varies between
measurements of the same sequence (a batch, a cell state, a sequence-independent confounder) is
then read as model error and inflates every effect SE. Two measurements of the same sequences
estimate ``a`` directly, as an assay's technical noise is estimated from replicates.
"""

from __future__ import annotations

import numpy as np

from deepmr_kipoi.errors import DeepMRInputError


def replicate_noise_variance(first, second) -> np.ndarray:
    """Per-feature noise variance from two replicate labels of the same sequences.

    ``a_f = sum_i (y1_if - y2_if)^2 / (2 n)``: for independent replicates with equal noise
    variance given the sequence, ``E[(y1 - y2)^2] = 2 a``, so the estimator is unbiased (the
    sequence's own signal cancels in the difference). Approximation, named: the noise variance is
    taken as the same for every sequence (its average over the replicated sequences); labels whose
    noise depends on their level (raw counts) should be variance-stabilised first (Anscombe).

    Parameters
    ----------
    first, second : array_like, shape (n, F) or (n,)
        The two replicate labels of ``n`` sequences (same order); 1-d inputs are one feature.
        NaN marks a missing label: a sequence counts for a feature where both replicates are
        there.

    Returns
    -------
    ndarray, shape (F,)

    Raises
    ------
    DeepMRInputError
        On different shapes, infinite labels or fewer than 2 complete pairs for a feature.
    """
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape:
        raise DeepMRInputError(
            f"replicate labels have shapes {a.shape} and {b.shape}; give the same sequences "
            "and features in both"
        )
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.ndim != 2:
        raise DeepMRInputError(f"replicate labels must be shaped (n, n_features), got {a.shape}")
    if np.any(np.isinf(a)) or np.any(np.isinf(b)):
        raise DeepMRInputError("replicate labels contain infinite values; drop those rows")
    diff = a - b
    pairs = np.sum(~np.isnan(diff), axis=0)
    if np.any(pairs < 2):
        raise DeepMRInputError(
            f"{int(pairs.min())} sequence(s) with both replicate labels for a feature; "
            "give at least 2 per feature (n >= 2)"
        )
    return np.nansum(diff * diff, axis=0) / (2.0 * pairs)
