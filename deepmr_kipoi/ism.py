"""Exact saturation in-silico mutagenesis (ISM) with paired effects and their standard errors.

For every reference sequence, every position of a window and each of the 3 alternative bases, one
mutant is predicted by every sample s of a :class:`~deepmr_kipoi.predictive.PredictiveModel`, and the
paired difference ``d_s = f_s(mutant) - f_s(reference)`` is taken under the same sample (same ensemble
member, same dropout mask). The effect is ``mean_s d_s`` and its standard error the sample standard
deviation of ``d_s`` (ddof = 1) -- the spread of the model's belief about the effect, not a standard
error of the mean. With ``per_sample=True`` the paired differences ``d_s`` themselves are kept
(``ISMEffects.samples``), for statistics that need each sample's effects (leave-one-member-out
jackknife, per-sample local estimates).

Exact: every mutant's prediction is the model's prediction for that sequence; nothing is
approximated. Models whose members cache the reference (``model.fast_ism``: PyTorch members with
receptive-field caching, see :func:`deepmr_kipoi.predictive.from_torch`) get each reference's mutants
together and recompute only what a mutation can reach; other models get full forward passes, with
mutants of several references batched together so that every pass is full. The one caveat is
floating point: a backend (BLAS, oneDNN) may round the same sequence differently in batches of
different sizes or over shorter stretches, so an effect that is zero in exact arithmetic can come
out at float32 rounding level (~1e-7 relative) instead of 0. Memory is bounded by ``batch_size``
apart from the output arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from deepmr_kipoi import sequences, validation
from deepmr_kipoi.errors import DeepMRInputError

logger = logging.getLogger(__name__)

__all__ = ["ALT_BASES", "ISMEffects", "saturation_effects"]

#: ``ALT_BASES[r]``: the 3 alternative base codes (ACGT order) for reference base code ``r``; row 4
#: (an N position, never mutated) is ``(0, 1, 2)`` so the array stays a valid code everywhere
ALT_BASES = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2], [0, 1, 2]], dtype=np.uint8)


@dataclass(frozen=True)
class ISMEffects:
    """Paired saturation-ISM effects.

    Attributes
    ----------
    mean : numpy.ndarray, shape (N, W, 3, F), float32
        Effect ``mean_s [f_s(mutant) - f_s(reference)]`` per sequence, window position, alternative base
        and feature; NaN at N positions. float64 where the run took it from ``samples``
        (:func:`deepmr_kipoi.run.effects.chunk_effects`), not rounded.
    se : numpy.ndarray, shape (N, W, 3, F), float32
        Sample SD over s of the paired differences (ddof = 1); NaN at N positions and when S = 1
        (float64 as ``mean``).
    reference : numpy.ndarray, shape (S, N, F), float32
        Reference predictions per sample.
    positions : numpy.ndarray, shape (W,), int64
        Sequence positions (0-based) of the window.
    alt_bases : numpy.ndarray, shape (N, W, 3), uint8
        Codes into ``"ACGT"`` of each mutant's base (ACGT order minus the reference base).
    ref_bases : numpy.ndarray, shape (N, W), uint8
        Reference base codes into ``"ACGT"``; 4 at N positions.
    is_n : numpy.ndarray, shape (N, W), bool
        N positions: not mutated, effects NaN.
    feature_names : tuple of str, length F
    n_samples : int
        S.
    samples : numpy.ndarray, shape (S, N, W, 3, F), float32, or None
        The paired differences ``d_s`` per sample (NaN at N positions); only with
        ``saturation_effects(..., per_sample=True)``. ``mean``/``se`` are their mean and SD over the
        first axis, rounded to float32.
    """

    mean: np.ndarray
    se: np.ndarray
    reference: np.ndarray
    positions: np.ndarray
    alt_bases: np.ndarray
    ref_bases: np.ndarray
    is_n: np.ndarray
    feature_names: tuple[str, ...]
    n_samples: int
    samples: np.ndarray | None = None

    @property
    def n_masked(self) -> int:
        """Number of (sequence, position) pairs skipped because the reference holds N."""
        return int(self.is_n.sum())

    @property
    def n_mutants(self) -> int:
        """Number of mutants predicted."""
        return 3 * int((~self.is_n).sum())


def saturation_effects(
    model,
    onehot,
    window: tuple[int, int] | None = None,
    batch_size: int = 1024,
    progress: bool = True,
    per_sample: bool = False,
) -> ISMEffects:
    """Paired saturation-ISM effects of every single-base substitution.

    Parameters
    ----------
    model : PredictiveModel
        S deterministic samples (:class:`~deepmr_kipoi.predictive.DeepEnsemble`,
        :class:`~deepmr_kipoi.predictive.MCDropout`, ...).
    onehot : array_like, shape (N, L, 4)
        ACGT one-hot references; N bases as all-zero columns (never mutated, reported in ``is_n``).
    window : (start, end), optional
        Half-open range of positions to mutate; default the whole sequence.
    batch_size : int
        Sequences per forward pass (mutants of several references share a batch). Peak memory of the
        engine is O(batch_size * L) plus the output arrays.
    progress : bool
        Show a tqdm progress bar over mutants.
    per_sample : bool
        Also keep every sample's paired differences, ``samples`` of shape ``(S, N, W, 3, F)``
        (S times the memory of ``mean``); ``mean`` and ``se`` are the same either way.

    Returns
    -------
    ISMEffects
        ``mean``/``se`` of shape ``(N, W, 3, F)``, ``reference`` ``(S, N, F)``, ``samples``
        ``(S, N, W, 3, F)`` or None.

    Notes
    -----
    The reference is predicted once per sample. With ``model.fast_ism`` True the mutants of each
    reference go to ``model.predict_mutants(reference, mutants)`` in chunks of at most ``batch_size``;
    otherwise mutant batches span references and go to ``model.predict_samples``. Differences are
    taken in float32; their mean and SD over samples are accumulated in float64.
    """
    x = sequences.check_onehot(onehot)
    batch_size = validation.positive_int(batch_size, "batch_size")
    n_seq, length, _ = x.shape
    seq_len = getattr(model, "sequence_length", None)
    if seq_len is not None and length != seq_len:
        raise DeepMRInputError(
            f"sequences have length {length} but the model takes {seq_len}; resize them (sequences.resize_center)"
        )
    start, end = validation.window(window, length)
    positions = np.arange(start, end, dtype=np.int64)
    width = end - start
    feature_names = tuple(model.feature_names)
    n_feat = len(feature_names)
    n_samples = int(model.n_samples)

    cols = x[:, start:end]
    is_n = ~cols.any(-1)
    ref_bases = np.where(is_n, 4, cols.argmax(-1)).astype(np.uint8)
    alt_bases = ALT_BASES[ref_bases]
    if is_n.any():
        logger.info(
            "%d of %d window positions hold N and are not mutated", int(is_n.sum()), is_n.size
        )

    reference = np.asarray(model.predict_samples(x, batch_size=batch_size), dtype=np.float32)
    if reference.shape != (n_samples, n_seq, n_feat):
        raise ValueError(
            f"model.predict_samples returned shape {reference.shape}, expected (S, N, F) = "
            f"{(n_samples, n_seq, n_feat)}"
        )
    mean = np.full((n_seq, width, 3, n_feat), np.nan, dtype=np.float32)
    se = np.full_like(mean, np.nan)
    flat_mean = mean.reshape(-1, n_feat)
    flat_se = se.reshape(-1, n_feat)
    samples = None
    if per_sample:
        samples = np.full((n_samples, *mean.shape), np.nan, dtype=np.float32)
        flat_samples = samples.reshape(n_samples, -1, n_feat)

    # valid (sequence, window-position) pairs in row-major order; mutant t is pair t // 3, alt t % 3
    valid = np.flatnonzero(~is_n.ravel())
    n_mut = 3 * valid.size
    fast = bool(getattr(model, "fast_ism", False))
    bar = tqdm(total=n_mut, unit="mut", desc="ISM", disable=not progress)
    try:
        for lo, hi in _chunks(valid, n_mut, n_seq, width, batch_size, fast):
            t = np.arange(lo, hi)
            pair = valid[t // 3]
            seq = pair // width
            w = pair % width
            alt = alt_bases.reshape(-1, 3)[pair, t % 3]
            batch = x[seq]
            rows = np.arange(t.size)
            batch[rows, positions[w], :] = 0.0
            batch[rows, positions[w], alt] = 1.0
            if fast:
                pred = model.predict_mutants(x[seq[0]], batch)
            else:
                pred = model.predict_samples(batch)
            pred = np.asarray(pred)
            if pred.shape != (n_samples, t.size, n_feat):
                raise ValueError(
                    f"the model returned mutant predictions of shape {pred.shape}, expected "
                    f"{(n_samples, t.size, n_feat)}"
                )
            d = pred - reference[:, seq, :]
            rows_out = pair * 3 + t % 3
            flat_mean[rows_out] = d.mean(axis=0, dtype=np.float64)
            if n_samples > 1:
                flat_se[rows_out] = d.std(axis=0, ddof=1, dtype=np.float64)
            if samples is not None:
                flat_samples[:, rows_out] = d
            bar.update(t.size)
    finally:
        bar.close()
    return ISMEffects(
        mean=mean,
        se=se,
        reference=reference,
        positions=positions,
        alt_bases=alt_bases,
        ref_bases=ref_bases,
        is_n=is_n,
        feature_names=feature_names,
        n_samples=n_samples,
        samples=samples,
    )


def _chunks(
    valid: np.ndarray, n_mut: int, n_seq: int, width: int, batch_size: int, per_reference: bool
):
    """Yield half-open mutant-index ranges: full batches across references, or within one reference."""
    if not per_reference:
        for lo in range(0, n_mut, batch_size):
            yield lo, min(lo + batch_size, n_mut)
        return
    seq_of_mutant_start = np.searchsorted(valid // width, np.arange(n_seq + 1)) * 3
    for i in range(n_seq):
        a, b = int(seq_of_mutant_start[i]), int(seq_of_mutant_start[i + 1])
        for lo in range(a, b, batch_size):
            yield lo, min(lo + batch_size, b)
