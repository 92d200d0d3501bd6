"""Stage 2, effects: saturation-ISM effects of a chunk of reference sequences, through the engine.

``chunk_effects`` calls :func:`deepmr_kipoi.ism.saturation_effects` a few sequences at a time (so
progress moves with an ETA; the effects are exact per sequence, so splitting changes nothing) and
returns the chunk's effects on the features the run uses: every model sample's paired differences
``d_s`` (the per-sample local estimates need them) and their mean and SD taken in float64. Keeping
only the used features per engine call bounds memory for models with hundreds of outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi import ism


@dataclass(frozen=True)
class ChunkEffects:
    """The ISM effects of a chunk of n reference sequences.

    Attributes
    ----------
    mean, se : ndarray of float64, shape (n, W, 3, U)
        Paired effect means and SDs (ddof = 1) over the model's samples (uncalibrated), for the U
        features asked for.
    samples : ndarray of float32, shape (S, n, W, 3, U)
        Every sample's paired differences.
    reference : ndarray of float32, shape (S, n, U)
        Reference predictions per sample.
    alt_bases : ndarray of uint8, shape (n, W, 3)
    is_n : ndarray of bool, shape (n, W)
        N positions (not mutated).
    positions : ndarray of int64, shape (W,)
    """

    mean: np.ndarray
    se: np.ndarray
    samples: np.ndarray
    reference: np.ndarray
    alt_bases: np.ndarray
    is_n: np.ndarray
    positions: np.ndarray

    @property
    def n_masked(self) -> int:
        """Number of (sequence, position) pairs holding N."""
        return int(self.is_n.sum())


def chunk_effects(
    model,
    onehot: np.ndarray,
    window: tuple[int, int],
    *,
    batch_size: int = 512,
    features=None,
    on_progress: Callable[[int], None] | None = None,
) -> ChunkEffects:
    """Saturation-ISM effects of a chunk of reference sequences.

    Parameters
    ----------
    model : PredictiveModel
        S >= 2 samples.
    onehot : ndarray, shape (n, L, 4)
        ACGT one-hot reference sequences.
    window : (int, int)
        Half-open ISM window (``(0, L)``: the whole sequence).
    batch_size : int
        Mutants per forward pass.
    features : sequence of int, optional
        Model features to keep (default: all).
    on_progress : callable, optional
        Called with the number of sequences done after each engine call.

    Returns
    -------
    ChunkEffects

    Notes
    -----
    Each engine call gets enough sequences to fill about four mutant batches.
    """
    n, length = onehot.shape[:2]
    width = window[1] - window[0]
    step = max(1, -(-4 * int(batch_size) // (3 * width)))
    kwargs = {"window": None if tuple(window) == (0, length) else window,
              "batch_size": int(batch_size), "progress": False, "per_sample": True}  # fmt: skip
    keep = slice(None) if features is None else list(features)
    samples, reference, alt_bases, is_n, positions = [], [], [], [], None
    for i in range(0, n, step):
        part = ism.saturation_effects(model, onehot[i : i + step], **kwargs)
        samples.append(part.samples[..., keep])
        reference.append(np.asarray(part.reference)[..., keep])
        alt_bases.append(np.asarray(part.alt_bases))
        is_n.append(np.asarray(part.is_n))
        positions = np.asarray(part.positions)
        if on_progress is not None:
            on_progress(min(step, n - i))
    samples = np.concatenate(samples, axis=1)
    return ChunkEffects(
        mean=samples.mean(axis=0, dtype=np.float64),
        se=samples.std(axis=0, ddof=1, dtype=np.float64),
        samples=samples,
        reference=np.concatenate(reference, axis=1),
        alt_bases=np.concatenate(alt_bases),
        is_n=np.concatenate(is_n),
        positions=positions,
    )
