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

__all__ = ["ALT_BASES", "ISMEffects", "saturation_effects", "window_bases"]

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
    outside : numpy.ndarray, shape (W, F), bool, or None
        Model panels (:class:`~deepmr_kipoi.predictive.panel.ModelPanel`): window positions outside
        the window of the member that predicts a feature. Those mutants were not run through that
        member and their effects on its features are NaN (not seen); None for a single model.
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
    outside: np.ndarray | None = None

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
    member_engines=None,
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
    member_engines : sequence, optional
        Model panels only: one object per member (or None for the plain engine) with
        ``effects(model, onehot, window, batch_size, progress)`` (this function's result with
        ``per_sample=True``) and ``reference(model, onehot, batch_size)`` (``(S, N, F)``), through
        which that member's effects are obtained (the run's effects cache,
        :mod:`deepmr_kipoi.run.effects_cache`).

    Returns
    -------
    ISMEffects
        ``mean``/``se`` of shape ``(N, W, 3, F)``, ``reference`` ``(S, N, F)``, ``samples``
        ``(S, N, W, 3, F)`` or None.

    Notes
    -----
    The reference is predicted once per sample. With ``model.fast_ism`` True the mutants of each
    reference go to ``model.predict_mutants(reference, mutants)`` in chunks of at most ``batch_size``;
    otherwise mutant batches span references and go to ``model.predict_samples``. Differences in the
    model's own precision (float64 kept); mean and SD over samples in float64, stored as float32.
    """
    x = sequences.check_onehot(onehot)
    batch_size = validation.positive_int(batch_size, "batch_size")
    length = x.shape[1]
    _check_length(model, length)
    start, end = validation.window(window, length)
    if hasattr(model, "spans") and hasattr(model, "models"):
        engines = member_engines or [None] * len(model.models)
        return _panel_effects(model, x, (start, end), batch_size, progress, per_sample, engines)
    return _model_effects(model, x, (start, end), batch_size, progress, per_sample)


def _model_effects(model, x, window, batch_size, progress, per_sample) -> ISMEffects:
    """Saturation ISM of one model (not a panel) on checked input ``x`` (n, L, 4)."""
    n_seq, (start, end) = x.shape[0], window
    positions = np.arange(start, end, dtype=np.int64)
    feature_names = tuple(model.feature_names)
    is_n, ref_bases, alt_bases = window_bases(x, start, end)
    reference = _reference(model, x, batch_size, len(feature_names))
    out = _Moments(reference.shape[0], (n_seq, end - start, 3, len(feature_names)), per_sample)
    mutants = _Mutants(x, positions, alt_bases, is_n)
    fast = bool(getattr(model, "fast_ism", False))
    bar = tqdm(total=mutants.n, unit="mut", desc="ISM", disable=not progress)
    try:
        for lo, hi in _chunks(mutants.valid, mutants.n, n_seq, end - start, batch_size, fast):
            seq, rows_out, batch = mutants.batch(lo, hi)
            pred = model.predict_mutants(x[seq[0]], batch) if fast else model.predict_samples(batch)
            out.add(
                rows_out,
                _checked(pred, reference.shape[0], hi - lo, len(feature_names))
                - reference[:, seq, :],
            )
            bar.update(hi - lo)
    finally:
        bar.close()
    return ISMEffects(
        mean=out.mean,
        se=out.se,
        reference=reference,
        positions=positions,
        alt_bases=alt_bases,
        ref_bases=ref_bases,
        is_n=is_n,
        feature_names=feature_names,
        n_samples=int(reference.shape[0]),
        samples=out.samples,
    )


def _panel_effects(panel, x, window, batch_size, progress, per_sample, engines) -> ISMEffects:
    """Saturation ISM of a model panel: each member on the mutants inside its own window.

    A member sees the centred window ``panel.spans(L)`` of the common sequence; the ISM window's
    positions inside it are mutated through that member alone (so a panel costs the sum of its
    members' ISMs), the others are NaN for its features (``ISMEffects.outside``). Each member's
    first ``panel.n_samples`` samples are kept; ``mean``/``se`` are taken over those. ``engines``:
    one engine or None per member (``member_engines`` of :func:`saturation_effects`).
    """
    start, end = window
    n_seq, width, n_feat, s = x.shape[0], end - start, len(panel.feature_names), panel.n_samples
    is_n, ref_bases, alt_bases = window_bases(x, start, end)
    samples = np.full((s, n_seq, width, 3, n_feat), np.nan, dtype=np.float32)
    reference = np.empty((s, n_seq, n_feat), dtype=np.float32)
    outside = np.ones((width, n_feat), dtype=bool)
    for label, model, (a, b), cols, engine in zip(
        panel.labels, panel.models, panel.spans(x.shape[1]), panel.feature_slices(), engines
    ):
        lo, hi = max(a, start), min(b, end)
        if hi <= lo:  # no mutated position reaches this member: its reference only
            if engine is not None:
                ref = engine.reference(model, x[:, a:b], batch_size)
            else:
                ref = _reference(model, x[:, a:b], batch_size, cols.stop - cols.start)
            reference[..., cols] = ref[:s]
            continue
        if progress:
            logger.info("ISM of panel member %s: positions %d-%d", label, lo, hi)
        if engine is not None:
            part = engine.effects(model, x[:, a:b], (lo - a, hi - a), batch_size, progress)
        else:
            part = saturation_effects(
                model, x[:, a:b], (lo - a, hi - a), batch_size, progress, per_sample=True
            )
        samples[:, :, lo - start : hi - start, :, cols] = part.samples[:s]
        reference[..., cols] = part.reference[:s]
        outside[lo - start : hi - start, cols] = False
    with np.errstate(invalid="ignore"):
        mean = samples.mean(axis=0, dtype=np.float64)
        se = samples.std(axis=0, ddof=1, dtype=np.float64) if s > 1 else np.full_like(mean, np.nan)
    return ISMEffects(
        mean=mean.astype(np.float32),
        se=se.astype(np.float32),
        reference=reference,
        positions=np.arange(start, end, dtype=np.int64),
        alt_bases=alt_bases,
        ref_bases=ref_bases,
        is_n=is_n,
        feature_names=tuple(panel.feature_names),
        n_samples=s,
        samples=samples if per_sample else None,
        outside=outside,
    )


def _check_length(model, length: int) -> None:
    seq_len = getattr(model, "sequence_length", None)
    if seq_len is not None and length != seq_len:
        raise DeepMRInputError(
            f"sequences have length {length} but the model takes {seq_len}; resize them "
            "(sequences.resize_center)"
        )


def window_bases(x: np.ndarray, start: int, end: int):
    """N positions, reference bases and alternative bases of an ISM window.

    Parameters
    ----------
    x : ndarray, shape (n, L, 4)
        ACGT one-hot.
    start, end : int
        The half-open window.

    Returns
    -------
    is_n : ndarray of bool, shape (n, W)
    ref_bases : ndarray of uint8, shape (n, W)
        Codes into ``"ACGT"``; 4 at N positions.
    alt_bases : ndarray of uint8, shape (n, W, 3)
    """
    cols = x[:, start:end]
    is_n = ~cols.any(-1)
    ref_bases = np.where(is_n, 4, cols.argmax(-1)).astype(np.uint8)
    if is_n.any():
        logger.info(
            "%d of %d window positions hold N and are not mutated", int(is_n.sum()), is_n.size
        )
    return is_n, ref_bases, ALT_BASES[ref_bases]


def _reference(model, x: np.ndarray, batch_size: int, n_feat: int) -> np.ndarray:
    """Reference predictions per sample, (S, N, F), in the model's precision (float64 kept)."""
    reference = np.asarray(model.predict_samples(x, batch_size=batch_size))
    reference = reference.astype(
        np.float64 if reference.dtype == np.float64 else np.float32, copy=False
    )
    expected = (int(model.n_samples), x.shape[0], n_feat)
    if reference.shape != expected:
        raise ValueError(
            f"model.predict_samples returned shape {reference.shape}, expected (S, N, F) = {expected}"
        )
    return reference


def _checked(pred, n_samples: int, n: int, n_feat: int) -> np.ndarray:
    pred = np.asarray(pred)
    if pred.shape != (n_samples, n, n_feat):
        raise ValueError(
            f"the model returned mutant predictions of shape {pred.shape}, expected "
            f"{(n_samples, n, n_feat)}"
        )
    return pred


class _Mutants:
    """The mutants of a window: mutant ``t`` is valid (sequence, position) pair ``t // 3`` (row-major
    over pairs that are not N) with alternative base ``t % 3``."""

    def __init__(self, x: np.ndarray, positions: np.ndarray, alt_bases: np.ndarray, is_n):
        self.x, self.positions, self.width = x, positions, positions.size
        self.alt = alt_bases.reshape(-1, 3)
        self.valid = np.flatnonzero(~is_n.ravel())
        self.n = 3 * self.valid.size

    def batch(self, lo: int, hi: int):
        """Mutants ``lo:hi``: their sequence indices, output rows and one-hot batch."""
        t = np.arange(lo, hi)
        pair = self.valid[t // 3]
        seq = pair // self.width
        w = pair % self.width
        batch = self.x[seq]
        rows = np.arange(t.size)
        batch[rows, self.positions[w], :] = 0.0
        batch[rows, self.positions[w], self.alt[pair, t % 3]] = 1.0
        return seq, pair * 3 + t % 3, batch


class _Moments:
    """Mean and SD over samples of the paired differences (float64 sums, float32 results), and
    optionally every sample's differences; NaN where nothing was added (N positions)."""

    def __init__(self, n_samples: int, shape: tuple[int, int, int, int], per_sample: bool):
        n_feat = shape[-1]
        self.n_samples = n_samples
        self.mean = np.full(shape, np.nan, dtype=np.float32)
        self.se = np.full_like(self.mean, np.nan)
        self._mean, self._se = self.mean.reshape(-1, n_feat), self.se.reshape(-1, n_feat)
        self.samples = None
        if per_sample:
            self.samples = np.full((n_samples, *shape), np.nan, dtype=np.float32)
            self._samples = self.samples.reshape(n_samples, -1, n_feat)

    def add(self, rows: np.ndarray, d: np.ndarray) -> None:
        """Differences ``d`` (S, n, F) of the mutants at flat output rows ``rows``."""
        self._mean[rows] = d.mean(axis=0, dtype=np.float64)
        if self.n_samples > 1:
            self._se[rows] = d.std(axis=0, ddof=1, dtype=np.float64)
        if self.samples is not None:
            self._samples[:, rows] = d


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
