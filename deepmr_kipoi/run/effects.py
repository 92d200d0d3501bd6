"""Stage 2, effects: saturation-ISM effects of a chunk of reference sequences, through the engine.

``chunk_effects`` calls :func:`deepmr_kipoi.ism.saturation_effects` a few sequences at a time (so
progress moves with an ETA; the effects are exact per sequence, so splitting changes nothing) and
returns the chunk's effects. With ``per_sample=True`` (the leave-one-member-out jackknife of deep
ensembles) the engine also returns every member's paired differences ``d_s``; the effect mean and
SD are then taken over them in float64 (``ISMEffects.sample_moments``), so the leave-one-out
moments and the full ones are computed the same way.
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
    mean, se : ndarray of float64, shape (n, W, 3, F)
        Paired effect means and SDs over the model's samples (uncalibrated).
    samples : ndarray of float32, shape (S, n, W, 3, F), or None
        Every sample's paired differences (``per_sample=True`` only).
    reference : ndarray of float32, shape (S, n, F)
        Reference predictions per sample.
    alt_bases : ndarray of uint8, shape (n, W, 3)
    is_n : ndarray of bool, shape (n, W)
        N positions (not mutated).
    positions : ndarray of int64, shape (W,)
    """

    mean: np.ndarray
    se: np.ndarray
    samples: np.ndarray | None
    reference: np.ndarray
    alt_bases: np.ndarray
    is_n: np.ndarray
    positions: np.ndarray

    @property
    def n_masked(self) -> int:
        """Number of (sequence, position) pairs holding N."""
        return int(self.is_n.sum())

    def leave_one_out(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and SD (ddof = 1, float64) of the effects without sample ``s``, shape (n, W, 3, F)."""
        rest = np.delete(self.samples, int(s), axis=0)
        return rest.mean(axis=0, dtype=np.float64), rest.std(axis=0, ddof=1, dtype=np.float64)


def chunk_effects(
    model,
    onehot: np.ndarray,
    window: tuple[int, int],
    *,
    batch_size: int = 512,
    per_sample: bool = False,
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
    per_sample : bool
        Keep every sample's paired differences; mean and SD then come from them in float64.
    on_progress : callable, optional
        Called with the number of sequences done after each engine call.

    Returns
    -------
    ChunkEffects

    Notes
    -----
    Each engine call gets enough sequences to fill about four mutant batches. Without
    ``per_sample`` the engine's float32 mean and SD are used (widened to float64).
    """
    n, length = onehot.shape[:2]
    width = window[1] - window[0]
    step = max(1, -(-4 * int(batch_size) // (3 * width)))
    kwargs = {"window": None if tuple(window) == (0, length) else window,
              "batch_size": int(batch_size), "progress": False, "per_sample": per_sample}  # fmt: skip
    parts = []
    for i in range(0, n, step):
        parts.append(ism.saturation_effects(model, onehot[i : i + step], **kwargs))
        if on_progress is not None:
            on_progress(min(step, n - i))
    if per_sample:
        samples = np.concatenate([p.samples for p in parts], axis=1)
        mean = samples.mean(axis=0, dtype=np.float64)
        se = samples.std(axis=0, ddof=1, dtype=np.float64)
    else:
        samples = None
        mean = np.concatenate([p.mean for p in parts]).astype(np.float64)
        se = np.concatenate([p.se for p in parts]).astype(np.float64)
    return ChunkEffects(
        mean=mean,
        se=se,
        samples=samples,
        reference=np.concatenate([np.asarray(p.reference) for p in parts], axis=1),
        alt_bases=np.concatenate([np.asarray(p.alt_bases) for p in parts]),
        is_n=np.concatenate([np.asarray(p.is_n) for p in parts]),
        positions=np.asarray(parts[0].positions),
    )
