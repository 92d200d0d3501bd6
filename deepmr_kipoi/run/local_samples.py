"""Per-sample local estimates: the local MR repeated on each model sample's own effects.

:func:`sample_estimates` (a :class:`SampleEstimates` of shape (S, n, E, O, M)) repeats the local
MR on each model sample's own paired effects ``d_s`` (ensemble member or MC-dropout mask), with
the instruments of the local step and the ensemble's SEs as weights: the spread of these estimates
over samples is the model's uncertainty about each local effect, and the aggregate stage's
crossed inference reads them. :func:`calibrated_samples` applies the run's calibration to the
samples first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi.mr.methods import METHOD_TABLE
from deepmr_kipoi.run.config import SAMPLE_N_BOOT, RunConfig
from deepmr_kipoi.run.local import LocalStep, mr_settings
from deepmr_kipoi.run.local_fit import (
    MutantEffects,
    closed_sample_fits,
    local_mr,
    pair_rule,
    pair_side,
)


@dataclass(frozen=True)
class SampleEstimates:
    """Local estimates recomputed per sample s of the model.

    Attributes
    ----------
    methods : tuple of str, length M
    estimate : ndarray of float64, shape (S, n, E, O, M)
        The local MR estimate of each sample's own effects (same instruments, the ensemble's SEs as
        weights); NaN where the cell's MR failed.
    """

    methods: tuple[str, ...]
    estimate: np.ndarray

    @property
    def n_samples(self) -> int:
        """S."""
        return int(self.estimate.shape[0])

    @staticmethod
    def concatenate(parts: Sequence[SampleEstimates]) -> SampleEstimates:
        """Join chunks along the sequence axis (axis 1)."""
        return SampleEstimates(
            parts[0].methods, np.concatenate([p.estimate for p in parts], axis=1)
        )


def calibrated_samples(
    samples: np.ndarray, mean: np.ndarray, se_scale: np.ndarray | None
) -> np.ndarray:
    """The model samples' effects widened (or narrowed) about their mean by the calibration, in place.

    Sigma scaling says the samples' spread understates (factor > 1) or overstates (< 1) the error of
    the model's outputs by ``se_scale``. The calibrated samples keep the mean and scale every
    sample's deviation from it by its feature's factor, ``mean + k_f (d_s - mean)``, so that the
    between-sample part of the headline inference carries the calibration as the effect SEs do.
    Approximation: the calibrated posterior is the samples' own, rescaled per feature (shape and
    correlation between features unchanged).

    Parameters
    ----------
    samples : ndarray, shape (S, n, W, 3, F)
        Paired differences per model sample; overwritten (no second copy of what can be the
        largest array of a run).
    mean : ndarray, shape (n, W, 3, F)
        Their mean over samples.
    se_scale : ndarray, shape (F,), or None
        The calibration's factor per feature; None (no calibration) returns ``samples`` as they are.

    Returns
    -------
    ndarray, shape (S, n, W, 3, F)
        ``samples`` itself, in its dtype.
    """
    if se_scale is None:
        return samples
    mean = np.asarray(mean, dtype=samples.dtype)
    samples -= mean
    samples *= np.asarray(se_scale, dtype=samples.dtype)
    samples += mean
    return samples


def sample_estimates(
    samples: np.ndarray,
    step: LocalStep,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    config: RunConfig,
    *,
    chunk: int = 0,
    on_progress: Callable[[float], None] | None = None,
    feature_groups: Sequence[int] | None = None,
) -> SampleEstimates:
    """Local MR of every model sample's own effects, with the ensemble's instruments and SEs.

    For sample s the local estimate of a cell is the MR estimate computed from ``d_s`` (the
    sample's paired differences) for both exposure and outcome, weighted by the calibrated effect
    SEs of the whole model, over the instruments the local step chose. For IVW that is
    ``sum_k w_k d_s,x,k d_s,y,k / sum_k w_k d_s,x,k^2`` with ``w_k = 1 / se_y,k^2``. IVW and
    MR-Egger of all samples come from one compiled pass over the cells (``mr.pairmask``): the
    local step's own pass when it was given the per-sample effects (then ``samples`` must be
    those, and its estimates are taken as they are), else a pass of their own; the
    sorting methods run their bootstrap with :data:`~deepmr_kipoi.run.config.SAMPLE_N_BOOT`
    replicates: only their point estimates are used.

    Pairs across the models of a panel (``feature_groups`` differ) weigh every instrument of a
    fit alike: each feature's SEs are replaced by their pooled value over the sequence's mutants
    (:func:`pooled_se`), so that for IVW ``w_k`` is constant and the estimate is the per-sample
    least-squares slope through the origin. Per-instrument weights ``1 / se_y,k^2`` estimated from
    the same few samples as ``d_s`` favour the instruments whose samples happen to agree, and the
    spread of the per-sample estimates then understates their variance (a null cross-model pair's
    95% interval covered 0 in 83% of simulated replicates with them, 95% without; the method
    page gives the figures). Pairs within one model keep ``1 / se_y,k^2``.

    Parameters
    ----------
    samples : ndarray, shape (S, n, W, 3, F)
        Paired differences per sample (those estimation uses).
    step : LocalStep
        The chunk's local step (instruments, calibrated SEs, directionality spreads).
    exposures, outcomes : sequence of int
    config : RunConfig
    chunk : int
    on_progress : callable, optional
        Called with the share of the work done after each exposure block.
    feature_groups : sequence of int, length F, optional
        The model of every feature (model panels); None: one model.

    Returns
    -------
    SampleEstimates
        Arrays (S, n, E, O, M) over ``config.methods``; NaN where a sample's fit failed.
    """
    ex, oc = list(exposures), list(outcomes)
    cross = np.zeros((len(ex), len(oc)), dtype=bool)
    if feature_groups is not None:
        groups = np.asarray(feature_groups)
        cross = groups[ex][:, None] != groups[oc][None, :]
    if not cross.any():
        return _sample_estimates(samples, step, (ex, oc), config, chunk, on_progress)
    share = cross.mean() if (~cross).any() else 1.0
    # the local step's own per-sample estimates weigh by 1 / se_y,k^2: cross pairs need their own
    pooled = dataclasses.replace(
        step,
        se=pooled_se(step.se),
        estimates=dataclasses.replace(step.estimates, closed_samples=None),
    )
    out = _sample_estimates(samples, pooled, (ex, oc), config, chunk, _scaled(on_progress, share))
    if (~cross).any():
        within = _sample_estimates(
            samples, step, (ex, oc), config, chunk, _scaled(on_progress, 1.0 - share)
        )
        out = SampleEstimates(
            out.methods, np.where(cross[None, None, :, :, None], out.estimate, within.estimate)
        )
    return out


def _scaled(on_progress, share: float):
    return None if on_progress is None else (lambda done: on_progress(share * done))


def pooled_se(se: np.ndarray) -> np.ndarray:
    """Every usable SE replaced by the root-mean-square of its feature's usable SEs in the sequence.

    Parameters
    ----------
    se : ndarray, shape (n, W, 3, F)

    Returns
    -------
    ndarray of float64, shape (n, W, 3, F)
        ``sqrt(mean_k se_k^2)`` over the (position, base) cells of each (sequence, feature) where
        the SE is finite and positive; other cells keep their value (NaN, 0), so the same
        instruments stay usable.
    """
    se = np.asarray(se, dtype=np.float64)
    usable = np.isfinite(se) & (se > 0)
    sq = np.where(usable, se * se, 0.0)
    count = usable.sum(axis=(1, 2), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rms = np.sqrt(sq.sum(axis=(1, 2), keepdims=True) / count)
    return np.where(usable, rms, se)


def _sample_estimates(samples, step, pairs, config, chunk, on_progress) -> SampleEstimates:
    """:func:`sample_estimates` with the SEs of ``step`` as the weights of every pair."""
    methods = tuple(config.methods)
    settings = mr_settings(config, chunk, n_boot=SAMPLE_N_BOOT)
    ex, oc = pairs
    n_s, n = samples.shape[0], samples.shape[1]
    closed = [mi for mi, m in enumerate(methods) if METHOD_TABLE[m].closed_form]
    others = [mi for mi, m in enumerate(methods) if not METHOD_TABLE[m].closed_form]
    share = len(closed) / len(methods)
    out = step.estimates.closed_samples
    if out is not None:  # the closed-form methods came from the local step's own pass
        if on_progress is not None:
            on_progress(share)
    else:
        out = np.full((n_s, n, len(ex), len(oc), len(methods)), np.nan)
    if closed and step.estimates.closed_samples is None:
        report = None if on_progress is None else (lambda done: on_progress(share * done))
        _closed_sample_estimates(samples, step, (ex, oc), settings, out, report)
    for s, d in enumerate(samples if others else ()):
        est = local_mr(
            MutantEffects(np.asarray(d, dtype=np.float64), step.se),
            ex,
            oc,
            step.selection,
            [methods[mi] for mi in others],
            settings=settings,
            direction=step.direction,
        )
        out[s][..., others] = np.where(est.reason == 0, est.estimate, np.nan)
        if on_progress is not None:
            on_progress((1.0 - share) / n_s)
    return SampleEstimates(methods, out)


def _closed_sample_estimates(samples, step, pairs, settings, out, on_progress):
    """IVW / MR-Egger estimates of every sample into ``out`` (S, n, E, O, M) over the methods
    of ``settings``, exposure block by block: one ``mr.pairmask.pair_sums`` pass gives every
    sample's sums (``pairs``: the exposure and outcome indices)."""
    from deepmr_kipoi.mr import pairmask

    ex, oc = pairs
    methods = step.estimates.methods
    closed = [(mi, m) for mi, m in enumerate(methods) if METHOD_TABLE[m].closed_form]
    n_s, n = samples.shape[0], samples.shape[1]
    mask_x = step.selection.mask.reshape(n, -1, len(ex)).transpose(0, 2, 1)
    zero = np.zeros_like(step.se)  # the per-sample sums read no ensemble effect
    ys = pair_side(zero, step.se, oc, step.direction, samples=samples)
    rule = pair_rule(step.direction)
    block = max(1, int(settings.block_cells) // max(1, n * len(oc) * n_s))
    for start in range(0, len(ex), block):
        sl = slice(start, min(len(ex), start + block))
        xs = pair_side(zero, step.se, ex[sl], step.direction, samples=samples)
        sums = pairmask.pair_sums(xs, ys, mask_x[:, sl], **rule, what=("samples",))
        closed_sample_fits(sums["samples"], out, sl, closed, settings)
        if on_progress is not None:
            on_progress((sl.stop - start) / len(ex))
