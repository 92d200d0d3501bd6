"""Stage 3, local: instruments and local MR of every (sequence, exposure, outcome, method).

The local step of a chunk (:func:`local_step`) calibrates the effect SEs, selects the instruments of
every (sequence, exposure) -- significance ``|b/se| >= z``, a floor on noise-level effects, one
allele per position -- and of every pair (the directionality check, ``instruments.directional``),
and runs MR of every exposure on every outcome per sequence. Its result is a :class:`LocalEstimates`
of arrays of shape (n, E, O, M) (sequences, exposures, outcomes, methods), which :func:`local_table`
flattens into the rows users read, with how many instruments each rule removed.

Per-sample local estimates (:func:`sample_estimates`, a :class:`SampleEstimates` of shape
(S, n, E, O, M)) repeat the local MR on each model sample's own paired effects ``d_s`` (ensemble
member or MC-dropout mask), with the same instruments and the ensemble's SEs as weights: the spread
of these estimates over samples is the model's uncertainty about each local effect, and the
aggregate stage's crossed inference reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepmr_kipoi import instruments
from deepmr_kipoi.mr.methods import METHOD_TABLE
from deepmr_kipoi.run.config import SAMPLE_N_BOOT, RunConfig

#: MR fields copied from ``mr.run_batched`` results into the local table (NaN where not defined).
LOCAL_FIELDS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "pvalue",
    "q",
    "q_pvalue",
    "residual_se",
    "intercept",
    "intercept_se",
    "intercept_pvalue",
    "i2_gx",
)
#: Cells (sequences x exposures x outcomes) per ``mr.run_batched`` call: bounds the memory of its
#: result arrays; ``run_batched`` itself never materialises cells x instruments (matrix products for
#: IVW/Egger, chunked gathers for the sorting methods), and few large calls beat many small ones.
MR_BLOCK_CELLS = 2_000_000
#: With the directionality check the instrument mask is per pair: bound on n x E_block x O x K mask
#: entries per block.
PAIR_MASK_ENTRIES = 50_000_000
#: Instrument counts per local fit, in the order the rules apply (local-table columns).
INSTRUMENT_COUNTS = ("n_significant", "removed_floor", "removed_allele", "removed_direction")
#: Reason code of ``mr.REASONS`` for cells with too few instruments.
TOO_FEW = 1
#: Per-cell heterogeneity beyond the model's own noise (:func:`heterogeneity`), local-table columns.
HETEROGENEITY_FIELDS = ("heterogeneity_q", "heterogeneity_pvalue", "heterogeneity_spread")
#: Per-cell instrument strength on each feature (:func:`steiger_sums`), local-table columns.
STEIGER_FIELDS = ("r2_exposure", "r2_outcome", "r2_other", "cross_other")
#: Per-cell IVW sums over the pair's instruments, ``sum w bx by`` and ``sum w bx^2`` (``w = 1 /
#: se_y^2``), kept for every cell with instruments, with or without a local fit: the pooled test
#: over sequences (``run.aggregate``) adds them up. Local-table columns, equal on every method.
POOLED_FIELDS = ("pooled_sxy", "pooled_sxx")


@dataclass(frozen=True)
class LocalFitSettings:
    """How :func:`local_mr` runs the estimators.

    Attributes
    ----------
    n_boot, seed, level
        Passed to ``mr.run_batched`` (bootstrap replicates, root seed, confidence level).
    min_instruments : int
        Cells with fewer usable instruments (after dropping unusable outcome effects) are NaN with
        reason "too few instruments", on top of each method's own minimum.
    block_cells : int
        Bound on n x E_block x O cells per ``mr.run_batched`` call.
    heterogeneity : bool
        Compute the heterogeneity test of every cell (not needed for per-sample estimates).
    feature_groups : tuple of int, optional
        The model of every feature along the effects' feature axis (model panels): a pair of
        features of two models has independent errors, so its heterogeneity test takes their
        covariance as 0 instead of estimating it from the samples' pairing. None: one model.
    """

    n_boot: int = 1000
    seed: int = 0
    level: float = 0.95
    min_instruments: int = 3
    block_cells: int = MR_BLOCK_CELLS
    heterogeneity: bool = True
    feature_groups: tuple[int, ...] | None = None


@dataclass(frozen=True)
class LocalEstimates:
    """Local MR results of n sequences as arrays.

    Attributes
    ----------
    methods : tuple of str, length M
    fields : mapping of str to ndarray, shape (n, E, O, M)
        The fields of :data:`LOCAL_FIELDS` (float64, NaN where a method does not define them or the
        cell failed) plus ``n_instruments`` and ``reason`` (int64, codes of ``mr.REASONS``). Cells
        with exposure == outcome are computed like any other; :func:`local_table` drops them.
    closed_samples : ndarray of float64, shape (S, n, E, O, M), optional
        Every model sample's local estimate of the closed-form methods (IVW, MR-Egger; NaN in
        the other methods' slots), computed in the same compiled pass as the fields when
        :func:`local_mr` is given the per-sample effects; :func:`sample_estimates` reads them.
    """

    methods: tuple[str, ...]
    fields: Mapping[str, np.ndarray]
    closed_samples: np.ndarray | None = None

    @property
    def estimate(self) -> np.ndarray:
        """Local estimates, shape (n, E, O, M)."""
        return self.fields["estimate"]

    @property
    def se(self) -> np.ndarray:
        """Their standard errors, shape (n, E, O, M)."""
        return self.fields["se"]

    @property
    def pvalue(self) -> np.ndarray:
        """Their p-values, shape (n, E, O, M)."""
        return self.fields["pvalue"]

    @property
    def n_instruments(self) -> np.ndarray:
        """Usable instruments per cell, shape (n, E, O, M)."""
        return self.fields["n_instruments"]

    @property
    def reason(self) -> np.ndarray:
        """``mr.REASONS`` code per cell (0: ok), shape (n, E, O, M)."""
        return self.fields["reason"]


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


@dataclass(frozen=True)
class DirectionCheck:
    """What the directionality check of every pair compares (``instruments.directional``).

    Attributes
    ----------
    spread : ndarray, shape (F,) or (n, F)
        Every feature's spread (per sequence with the effect spread).
    effects, se : ndarray, shape (n, W, 3, F)
        The effects the check compares and their calibrated SEs (the selection half of the
        samples under sample splitting).
    z : float
        One-sided threshold of the standardized difference.
    """

    spread: np.ndarray
    effects: np.ndarray
    se: np.ndarray
    z: float = instruments.DIRECTION_Z


@dataclass(frozen=True)
class LocalStep:
    """What the local step of a chunk gives.

    Attributes
    ----------
    estimates : LocalEstimates
    selection : InstrumentSelection
        Instruments per exposure, ``mask`` of shape (n, W, 3, E) (before the directionality check,
        which is applied per pair inside :func:`local_mr`).
    se : ndarray of float64, shape (n, W, 3, F)
        The effect SEs MR used (calibrated where the run calibrates).
    direction : DirectionCheck or None
        The directionality check, when it is on.
    """

    estimates: LocalEstimates
    selection: instruments.InstrumentSelection
    se: np.ndarray
    direction: DirectionCheck | None = None


def _flat(a: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """(n, W, 3, F) -> (n, len(idx), 3 W): one row of candidate instruments per feature."""
    n = a.shape[0]
    return np.ascontiguousarray(a[..., idx].reshape(n, -1, len(idx)).transpose(0, 2, 1))


def _pair_masks(mask_x, direction, ex, oc, sl):
    """Instrument masks (n, E_block, O, K) of a block of exposures, and what direction removed."""
    mask = mask_x[:, sl, None, :]
    if direction is None:
        return mask, None
    n = mask_x.shape[0]
    spread = np.asarray(direction.spread, dtype=np.float64)
    spread = np.broadcast_to(spread, (n, spread.shape[-1]))
    eb = ex[sl]
    passes = instruments.directional(
        _flat(direction.effects, eb)[:, :, None, :],
        _flat(direction.effects, oc)[:, None, :, :],
        _flat(direction.se, eb)[:, :, None, :],
        _flat(direction.se, oc)[:, None, :, :],
        spread[:, eb][:, :, None, None],
        spread[:, oc][:, None, :, None],
        z=direction.z,
    )
    pair_mask = mask & passes
    return pair_mask, mask.sum(axis=-1) - pair_mask.sum(axis=-1)


def heterogeneity(bx, by, sx, sy, mask, samples_x=None, samples_y=None, paired=None):
    """Cochran's Q of every cell against the model's own noise, with its chi-square p-value.

    Under a homogeneous local effect ``theta`` every instrument's residual ``b_y - theta b_x`` is
    model noise only. Its variance over the model's samples is
    ``var_s(d_y - theta d_x) = se_y^2 + theta^2 se_x^2 - 2 theta cov_s(d_x, d_y)``: both effects
    are uncertain, and paired (a sample that moves the exposure more moves an outcome that follows
    it more). ``Q = sum_k (b_y - theta b_x)^2 / var_k`` with ``theta`` the first-order IVW
    estimate of the cell is referred to chi-square with ``K - 1`` df: the calibrated SEs are the
    model's predictive spread of each effect, so the test asks whether the instruments disagree
    more than the model's own (calibrated) uncertainty about each of them allows. It is
    conservative: the same residuals against the noise of the samples' *mean* (``var_k / S``)
    would be far more sensitive, but then the few samples of a deep ensemble, the selection of
    instruments on those samples and the structure that sequences share through the model
    (measured on linear toy ensembles with valid instruments) make valid pairs look
    heterogeneous. Approximations, named: ``theta`` is treated as known (its estimation is what
    the lost df stands for), model noise as Gaussian; without per-sample effects the covariance
    term is taken as 0.

    Parameters
    ----------
    bx, sx : ndarray, shape (n, E, 1, K)
        Exposure effects and calibrated SEs.
    by, sy : ndarray, shape (n, 1, O, K)
        Outcome effects and calibrated SEs.
    mask : ndarray of bool, shape (n, E, O, K)
        The cell's instruments.
    samples_x, samples_y : ndarray, shapes (S, n, E, 1, K) and (S, n, 1, O, K), optional
        Calibrated per-sample effects (for the covariance term).
    paired : ndarray of bool, shape (E, O), optional
        Whether exposure and outcome come from one model (their samples paired); default all
        True. Features of two models of a panel have independent errors: covariance 0, the
        two-sample ``var_k = se_y^2 + theta^2 se_x^2``.

    Returns
    -------
    q, pvalue : ndarray, shape (n, E, O)
        NaN where a cell has fewer than 2 usable instruments.
    spread : ndarray, shape (n, E, O)
        The weighted root-mean-square deviation of the instruments' slopes from ``theta``,
        ``sqrt(sum_k w_k (b_y - theta b_x)^2 / sum_k w_k b_x^2)`` with ``w_k = 1 / se_y^2``,
        divided by ``|theta|``: the practical size of the disagreement (inf where theta is 0).
    """
    from scipy import special

    # in float64: squares of float32 effects overflow (or vanish) at output scales beyond 1e+-19
    bx, sx, by, sy = (np.asarray(a, dtype=np.float64) for a in (bx, sx, by, sy))
    ok = mask & np.isfinite(bx) & np.isfinite(by) & (sy > 0) & np.isfinite(sy) & np.isfinite(sx)
    w = np.where(ok, 1.0 / np.where(ok, sy, 1.0) ** 2, 0.0)
    bxz, byz = np.where(ok, bx, 0.0), np.where(ok, by, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = (w * bxz * byz).sum(-1) / (w * bxz * bxz).sum(-1)
        t = theta[..., None]
        var = sy**2 + t**2 * sx**2
        if samples_x is not None:
            s = samples_x.shape[0]
            samples_x, samples_y = (np.asarray(a, np.float64) for a in (samples_x, samples_y))
            cx = samples_x - samples_x.mean(axis=0)
            cy = samples_y - samples_y.mean(axis=0)
            cov = np.einsum("snexk,snxok->neok", cx, cy) / max(s - 1, 1)
            if paired is not None:  # features of two models: independent errors
                cov = cov * np.asarray(paired, dtype=np.float64)[None, :, :, None]
            var = var - 2.0 * t * cov
        # an outcome that is an exact function of the exposure in every sample leaves no noise
        var = np.maximum(var, np.finfo(np.float64).tiny)
        q = np.where(ok, (byz - t * bxz) ** 2 / np.where(ok, var, 1.0), 0.0).sum(-1)
        # how much the instruments' slopes vary, relative to the slope: a practical size next to
        # the test, which on a model with tiny noise also rejects a mildly nonlinear response
        spread = np.sqrt((w * (byz - t * bxz) ** 2).sum(-1) / (w * bxz * bxz).sum(-1)) / np.abs(
            theta
        )
    k = ok.sum(-1)
    q = np.where((k >= 2) & np.isfinite(theta), q, np.nan)
    p = np.where(np.isfinite(q), special.chdtrc(np.maximum(k - 1, 1), q), np.nan)
    return q, p, np.where(np.isfinite(q), spread, np.nan)


def steiger_sums(effects, mask, exposures, outcomes):
    """How strongly the exposure's instruments act on each feature, in units of its own spread.

    For every sequence, exposure ``e`` and feature ``f`` of the run, ``A[e, f] = sum_k (b_f,k /
    s_f)^2`` over the exposure's instruments ``k`` (selected on the exposure, before the
    directionality check), with ``s_f`` the root-mean-square effect of ``f`` over the sequence's
    mutants (``instruments.effect_spread``): the share of the feature's mutational variation the
    instruments carry, times the number of mutants (the local analog of Steiger's variance
    explained, Hemani et al. 2017). If the exposure causes the outcome and the instruments act on
    it only through the exposure, ``A[e, outcome] < A[e, e]``; the verdict reads the ratios.
    ``C[e, f] = sum_k (b_e,k / s_e) (b_f,k / s_f)`` is the signed cross-product of the same
    standardized effects: pooled over sequences, ``C^2 / (A[e, e] A[e, f])`` is the share of the
    exposure's instrument effects that a fixed ratio to ``f`` explains (their collinearity).

    Parameters
    ----------
    effects : ndarray, shape (n, W, 3, U)
        Effect means of every used feature (NaN at N positions).
    mask : ndarray of bool, shape (n, W, 3, E)
        Instruments of every exposure.
    exposures, outcomes : sequence of int
        Feature indices (into U) of the E exposures and O outcomes.

    Returns
    -------
    dict of str to ndarray, shape (n, E, O)
        ``r2_exposure`` (``A[e, e]``), ``r2_outcome`` (``A[e, o]``), ``r2_other`` (the largest
        ``A[e, f]`` over the other features, NaN without one), ``cross_other`` (``C[e, f]`` of
        that feature, NaN without one) and ``other_feature`` (its index into U, -1 without one,
        int64).
    """
    effects = np.asarray(effects, dtype=np.float64)
    n, u = effects.shape[0], effects.shape[-1]
    ex, oc = np.asarray(exposures, dtype=np.int64), np.asarray(outcomes, dtype=np.int64)
    shape = (n, len(ex), len(oc))
    spread = instruments.effect_spread(effects)  # (n, U)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = effects / spread[:, None, None, :]
    t = np.where(np.isfinite(t), t, 0.0).reshape(n, -1, u)
    cand = np.asarray(mask, dtype=np.float64).reshape(n, -1, len(ex)).transpose(0, 2, 1)
    strength = np.matmul(cand, t * t)  # (n, E, U): one BLAS product per sequence
    own = np.take_along_axis(strength, ex[None, :, None], axis=2)  # (n, E, 1)
    fields = {"r2_exposure": np.broadcast_to(own, shape).copy(), "r2_outcome": strength[:, :, oc]}
    if u < 3:  # no feature besides the exposure and the outcome
        return {
            **fields,
            "r2_other": np.full(shape, np.nan),
            "cross_other": np.full(shape, np.nan),
            "other_feature": np.full(shape, -1),
        }
    others = strength.copy()
    np.put_along_axis(others, ex[None, :, None], -np.inf, axis=2)
    # the largest and second largest other feature: the outcome itself is not "another"
    order = np.argsort(-others, axis=2)[..., :2]
    top = np.take_along_axis(others, order, axis=2)  # (n, E, 2)
    first_is_outcome = order[:, :, None, 0] == oc[None, None, :]  # (n, E, O)
    other = np.where(first_is_outcome, top[:, :, None, 1], top[:, :, None, 0])
    other_feature = np.where(first_is_outcome, order[:, :, None, 1], order[:, :, None, 0])
    none = ~np.isfinite(other)
    # signed cross-products of the exposure's own standardized effects with every feature's
    cross = np.matmul(cand * t[:, :, ex].transpose(0, 2, 1), t)  # (n, E, U)
    cross_other = np.take_along_axis(cross[:, :, None, :], other_feature[..., None], axis=3)[..., 0]
    return {
        **fields,
        "r2_other": np.where(none, np.nan, other),
        "cross_other": np.where(none, np.nan, cross_other),
        "other_feature": np.where(none, -1, other_feature).astype(np.int64),
    }


def local_mr(
    mean: np.ndarray,
    se: np.ndarray,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    selection: instruments.InstrumentSelection,
    methods: Sequence[str],
    *,
    settings: LocalFitSettings | None = None,
    direction: DirectionCheck | None = None,
    samples: np.ndarray | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> LocalEstimates:
    """Local MR of every (sequence, exposure, outcome) for each method, as array code.

    IVW, IVW-FE and MR-Egger, the instrument counts and the heterogeneity test come from one
    compiled pass over the cells (``mr.pairmask.pair_sums``): per (sequence, exposure) the
    exposure's instruments are gathered, and per outcome the directionality check is evaluated
    instrument by instrument and every sum accumulated, so the pair-dependent instrument sets
    are never formed as an array and memory stays that of the results. The sorting methods
    (medians, mode) run on ``mr.run_batched`` with the explicit pair mask of each exposure
    block. Results equal, to rounding, those of ``mr.run_batched`` over the explicit masks and
    :func:`heterogeneity`, which define them.

    Parameters
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Paired ISM effects and (calibrated) SEs.
    exposures, outcomes : sequence of int
        Feature indices, lengths E and O.
    selection : InstrumentSelection
        Instruments with ``mask`` of shape (n, W, 3, E); instruments whose outcome effect or SE
        is unusable (non-finite, SE 0) are dropped per cell (``drop_invalid=True``).
    methods : sequence of str, length M
        Names in ``mr.METHODS``.
    settings : LocalFitSettings, optional
        Bootstrap size, seed, level, minimum instruments and block size (defaults:
        ``LocalFitSettings()``); each exposure block gets its own seed derived from ``settings.seed``.
    direction : DirectionCheck, optional
        Apply the directionality check (``instruments.directional``) per pair on top of
        ``selection``.
    samples : ndarray, shape (S, n, W, 3, F), optional
        Calibrated per-sample effects: the heterogeneity test (:func:`heterogeneity`) then counts
        the paired covariance of exposure and outcome noise.
    on_progress : callable, optional
        Called with the share of the exposures done after each block.

    Returns
    -------
    LocalEstimates
        Arrays of shape (n, E, O, M), with the instrument counts of :data:`INSTRUMENT_COUNTS` and
        the heterogeneity fields of :data:`HETEROGENEITY_FIELDS` and the IVW sums of
        :data:`POOLED_FIELDS` (equal on every method; the sums also where no local fit is made).
    """
    from deepmr_kipoi.mr import batched, pairmask

    settings = settings or LocalFitSettings()
    n, ex, oc, methods = mean.shape[0], list(exposures), list(outcomes), tuple(methods)
    n_e, n_o, n_m = len(ex), len(oc), len(methods)
    mask_x = selection.mask.reshape(n, -1, n_e).transpose(0, 2, 1)
    block = _exposure_block(settings.block_cells, n, n_o, mask_x.shape[-1])
    fields = _empty_fields((n, n_e, n_o, n_m), selection)
    seeds = np.random.SeedSequence(int(settings.seed)).generate_state(n_m * n_e + 1)
    cov = samples if settings.heterogeneity else None
    closed = [(mi, m) for mi, m in enumerate(methods) if METHOD_TABLE[m].closed_form]
    sample_est = None
    if cov is not None and closed:  # every sample's closed-form estimates in the same pass
        sample_est = (np.full((samples.shape[0], n, n_e, n_o, n_m), np.nan), closed)
    ys = _side(mean, se, oc, direction, centred=cov, samples=None if sample_est is None else cov)
    for start in range(0, n_e, block):
        sl = slice(start, min(n_e, start + block))
        sums = _block_sums((mean, se, ex), sl, ys, mask_x, direction, cov, settings, sample_est)
        main = dict(zip(pairmask.MAIN_SUMS, sums["main"]))
        fields["pooled_sxy"][:, sl] = main["sxy"][..., None]
        fields["pooled_sxx"][:, sl] = main["sxx"][..., None]
        if direction is not None:
            kept = np.rint(main["n_pass"]).astype(np.int64)
            fields["removed_direction"][:, sl] = (mask_x[:, sl].sum(-1)[..., None] - kept)[
                ..., None
            ]
        if settings.heterogeneity:
            het = sums["heterogeneity"]
            if settings.feature_groups is not None and cov is not None:
                het = _independent_across_models(
                    het, (mean, se, ex, oc), sl, mask_x, direction, settings
                )
            _store_heterogeneity(fields, het, sl)
        pair_mask = None
        for mi, method in enumerate(methods):
            if METHOD_TABLE[method].closed_form:
                r = batched.from_sums(method, main, main["n"], level=settings.level)
            else:
                if pair_mask is None:
                    pair_mask, _ = _pair_masks(mask_x, direction, ex, oc, sl)
                r = _sorted_fit(
                    method, mean, se, ex[sl], oc, pair_mask, settings, seeds[mi * n_e + start]
                )
            _store_block(fields, r, sl, mi)
        if on_progress is not None:
            on_progress((sl.stop - start) / n_e)
    few = (fields["reason"] == 0) & (fields["n_instruments"] < int(settings.min_instruments))
    for f in (*LOCAL_FIELDS, *HETEROGENEITY_FIELDS):
        fields[f][few] = np.nan
    fields["reason"][few] = TOO_FEW
    return LocalEstimates(methods, fields, None if sample_est is None else sample_est[0])


def _block_sums(effects, sl, ys, mask_x, direction, cov, settings, sample_est) -> dict:
    """The ``mr.pairmask.pair_sums`` of an exposure block (``effects``: mean, se, exposures),
    in one pass with every model sample's sums when ``sample_est`` is given (an array (S, n, E,
    O, M) and the closed-form methods' (position, name)): those become the samples'
    closed-form estimates there, sub-block by sub-block (their sums are S times the size of
    the block's)."""
    from deepmr_kipoi.mr import pairmask

    mean, se, ex = effects
    if sample_est is None:
        what = ("main", "heterogeneity") if settings.heterogeneity else ("main",)
        xs = _side(mean, se, ex[sl], direction, centred=cov)
        return pairmask.pair_sums(xs, ys, mask_x[:, sl], **_rule(direction), what=what)
    out, closed = sample_est
    n, n_o, n_s = mask_x.shape[0], ys.b.shape[1], out.shape[0]
    step = max(1, int(settings.block_cells) // max(1, n * n_o * n_s))
    parts = []
    for start in range(sl.start, sl.stop, step):
        sub = slice(start, min(sl.stop, start + step))
        xs = _side(mean, se, ex[sub], direction, centred=cov, samples=cov)
        sums = pairmask.pair_sums(
            xs, ys, mask_x[:, sub], **_rule(direction), what=("main", "heterogeneity", "samples")
        )
        _samples_closed(sums.pop("samples"), out, sub, closed, settings)
        parts.append(sums)
    return {k: np.concatenate([p[k] for p in parts], axis=2) for k in parts[0]}


def _samples_closed(sums: np.ndarray, out: np.ndarray, sl: slice, closed, settings) -> None:
    """Every sample's estimates of the ``closed`` methods ((position, name) pairs) into
    ``out[:, :, sl]`` ((S, n, E, O, M)) from its sums (S, 7, n, E_block, O): NaN where the
    method cannot fit or the cell has fewer than the minimum instruments."""
    from deepmr_kipoi.mr import batched, pairmask

    for s in range(sums.shape[0]):
        t = dict(zip(pairmask.SAMPLE_SUMS, sums[s]))
        for mi, method in closed:
            r = batched.from_sums(method, t, t["n"], level=settings.level, inference=False)
            ok = (r.reason == 0) & (r.n_instruments >= int(settings.min_instruments))
            out[s, :, sl, :, mi] = np.where(ok, r.estimate, np.nan)


def _exposure_block(block_cells: int, n: int, n_o: int, k: int) -> int:
    """Exposures per block: at most ``block_cells`` cells and :data:`PAIR_MASK_ENTRIES` mask
    entries (the sorting methods' explicit masks; their bootstrap seeds follow the blocks)."""
    block = max(1, int(block_cells) // max(1, n * n_o))
    return min(block, max(1, PAIR_MASK_ENTRIES // max(1, n * n_o * k)))


def _rule(direction: DirectionCheck | None) -> dict:
    """The directionality rule's settings for ``mr.pairmask.pair_sums``."""
    z = 0.0 if direction is None else float(direction.z)
    return {"direction": direction is not None, "z": z, "tie": instruments.DIRECTION_TIE}


def _side(mean, se, idx, direction, *, centred=None, samples=None):
    """One side (features ``idx``) of the cells, for ``mr.pairmask.pair_sums``: effects, SEs, the
    directionality statistic, and from per-sample effects (S, n, W, 3, F): the samples
    themselves (``samples``) and their deviations from the sample mean (``centred``, for the
    paired covariance)."""
    from deepmr_kipoi.mr import pairmask

    n = mean.shape[0]
    rule = None
    if direction is not None:
        spread = np.asarray(direction.spread, dtype=np.float64)
        spread = np.broadcast_to(spread, (n, spread.shape[-1]))[:, idx]
        rule = (_flat(direction.effects, idx), _flat(direction.se, idx), spread)
    per_sample = centred if centred is not None else samples
    stacked = deviations = None
    if per_sample is not None:
        stacked = np.stack([_flat(d, idx) for d in per_sample]).astype(np.float64, copy=False)
    if centred is not None:
        deviations = stacked - stacked.mean(axis=0)
    return pairmask.side(
        _flat(mean, idx),
        _flat(se, idx),
        rule,
        samples=stacked if samples is not None else None,
        centred=deviations,
    )


def _sorted_fit(method, mean, se, ex_block, oc, pair_mask, settings, seed):
    """A sorting method (median, mode) of an exposure block on ``mr.run_batched``."""
    from deepmr_kipoi import mr

    return mr.run_batched(
        method,
        _flat(mean, ex_block)[:, :, None, :],
        _flat(mean, oc)[:, None, :, :],
        _flat(se, ex_block)[:, :, None, :],
        _flat(se, oc)[:, None, :, :],
        mask=pair_mask,
        drop_invalid=True,
        n_boot=settings.n_boot,
        seed=int(seed),
        level=settings.level,
    )


def _independent_across_models(het, effects, sl, mask_x, direction, settings) -> np.ndarray:
    """A panel's heterogeneity sums: pairs of two models' features take their errors as
    independent (the sums without the paired covariance), pairs within a model keep theirs."""
    from deepmr_kipoi.mr import pairmask

    mean, se, ex, oc = effects
    groups = np.asarray(settings.feature_groups)
    paired = groups[list(ex[sl])][:, None] == groups[list(oc)][None, :]  # (E_block, O)
    if paired.all():
        return het
    xs, ys = _side(mean, se, ex[sl], direction), _side(mean, se, oc, direction)
    two_sample = pairmask.pair_sums(
        xs, ys, mask_x[:, sl], **_rule(direction), what=("heterogeneity",)
    )["heterogeneity"]
    return np.where(paired[None, None], het, two_sample)


def _store_heterogeneity(fields, het: np.ndarray, sl: slice) -> None:
    """The heterogeneity test of an exposure block's cells (``pair_sums`` rows theta, q, spread,
    k) into the result arrays."""
    from scipy import special

    q, spread, k = het[1], het[2], het[3]
    finite = np.isfinite(q)
    p = np.where(finite, special.chdtrc(np.maximum(k - 1, 1), q), np.nan)
    fields["heterogeneity_q"][:, sl] = q[..., None]
    fields["heterogeneity_pvalue"][:, sl] = p[..., None]
    fields["heterogeneity_spread"][:, sl] = np.where(finite, spread, np.nan)[..., None]


def _empty_fields(shape, selection) -> dict:
    """Result arrays of :func:`local_mr`, NaN / 0, with the exposure-side instrument counts."""
    fields = {
        f: np.full(shape, np.nan) for f in (*LOCAL_FIELDS, *HETEROGENEITY_FIELDS, *POOLED_FIELDS)
    }
    for f in ("n_instruments", "reason", *INSTRUMENT_COUNTS):
        fields[f] = np.zeros(shape, dtype=np.int64)
    for f in INSTRUMENT_COUNTS[:3]:
        counts = getattr(selection, f)
        if counts is not None:
            fields[f][...] = np.asarray(counts)[:, :, None, None]
    return fields


def _store_block(fields: dict, r, sl: slice, mi: int) -> None:
    """Copy one ``mr.run_batched`` result of an exposure block into the result arrays."""
    for f in LOCAL_FIELDS:
        value = getattr(r, f, None)
        if value is not None:
            target = fields[f][:, sl, :, mi]
            target[...] = np.broadcast_to(value, target.shape)
    fields["n_instruments"][:, sl, :, mi] = r.n_instruments
    fields["reason"][:, sl, :, mi] = r.reason


def chunk_seed(seed: int, chunk: int) -> int:
    """The bootstrap seed of chunk ``chunk`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1)[0])


def local_step(
    mean: np.ndarray,
    se: np.ndarray,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    config: RunConfig,
    *,
    chunk: int = 0,
    se_scale: np.ndarray | None = None,
    spread: np.ndarray | None = None,
    selection_effects: tuple[np.ndarray, np.ndarray] | None = None,
    samples: np.ndarray | None = None,
    on_progress: Callable[[float], None] | None = None,
    feature_groups: Sequence[int] | None = None,
) -> LocalStep:
    """Calibration, instrument selection and local MR of a chunk's effects.

    Parameters
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Effect means and raw SDs over the model's samples (those MR estimates from).
    exposures, outcomes : sequence of int
        Feature indices, lengths E and O.
    config : RunConfig
        Instrument (``z``, ``instrument_rule``, ``floor``, ``one_per_position``, ``directional``,
        ``direction_scale``, ``direction_z``, ``min_instruments``) and MR (``methods``,
        ``n_boot``, ``level``, ``seed``) settings.
    chunk : int
        Chunk index (the bootstrap seed is derived from ``config.seed`` and it).
    se_scale : ndarray, shape (F,), optional
        Calibration factor on the SEs.
    spread : ndarray, shape (F,), optional
        Every feature's spread over the run's reference sequences (``instruments.feature_spread``):
        the unit of the floor (skipped without it) and, with ``direction_scale="reference"``, of
        the directionality check.
    selection_effects : (ndarray, ndarray), shape (n, W, 3, F) each, optional
        Effect means and raw SDs to select instruments on instead of ``mean``/``se`` (sample
        splitting: selection on one half of the samples, estimation on the other).
    samples : ndarray, shape (S, n, W, 3, F), optional
        Calibrated per-sample effects (``calibrated_samples``) for the heterogeneity test.
    on_progress : callable, optional
        Called with the share of the local MR done (:func:`local_mr`).
    feature_groups : sequence of int, length F, optional
        The model of every feature (model panels; :attr:`LocalFitSettings.feature_groups`).

    Returns
    -------
    LocalStep
    """
    se = np.asarray(se, dtype=np.float64)
    sel_mean, sel_se = (mean, se) if selection_effects is None else selection_effects
    sel_se = np.asarray(sel_se, dtype=np.float64)
    if se_scale is not None:
        se = se * se_scale
        sel_se = sel_se * se_scale
    ex, oc = list(exposures), list(outcomes)
    floor = None
    if spread is not None and config.floor > 0:
        floor = np.nan_to_num(config.floor * np.asarray(spread)[ex], nan=0.0)
    sel = instruments.select(
        sel_mean[..., ex],
        sel_se[..., ex],
        z=config.z,
        rule=config.instrument_rule,
        one_per_position=config.one_per_position,
        min_count=config.min_instruments,
        floor=floor,
    )
    direction = _direction_check(config, sel_mean, sel_se, spread)
    est = local_mr(
        mean,
        se,
        ex,
        oc,
        sel,
        config.methods,
        settings=dataclasses.replace(
            mr_settings(config, chunk),
            feature_groups=None if feature_groups is None else tuple(map(int, feature_groups)),
        ),
        direction=direction,
        samples=samples,
        on_progress=on_progress,
    )
    shape = est.estimate.shape
    for name, value in steiger_sums(sel_mean, sel.mask, ex, oc).items():
        est.fields[name] = np.broadcast_to(value[..., None], shape)
    return LocalStep(est, sel, se, direction)


def mr_settings(config: RunConfig, chunk: int, n_boot: int | None = None) -> LocalFitSettings:
    """The MR settings of a chunk of a run (its bootstrap seed derived from the run's)."""
    return LocalFitSettings(
        n_boot=config.n_boot if n_boot is None else n_boot,
        seed=chunk_seed(config.seed, chunk),
        level=config.level,
        min_instruments=config.min_instruments,
        heterogeneity=n_boot is None,
    )


def _direction_check(config: RunConfig, effects, se, spread) -> DirectionCheck | None:
    """The run's directionality check, or None when it is off (or has no spread to use)."""
    if not config.directional:
        return None
    if config.direction_scale == "effects":
        scale = instruments.effect_spread(effects)  # (n, F)
    elif spread is not None:
        scale = np.asarray(spread, dtype=np.float64)
    else:
        return None
    return DirectionCheck(scale, effects, se, float(config.direction_z))


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
            np.asarray(d, dtype=np.float64),
            step.se,
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
    from deepmr_kipoi.mr import batched, pairmask

    ex, oc = pairs
    methods = step.estimates.methods
    n_s, n = samples.shape[0], samples.shape[1]
    mask_x = step.selection.mask.reshape(n, -1, len(ex)).transpose(0, 2, 1)
    zero = np.zeros_like(step.se)  # the per-sample sums read no ensemble effect
    ys = _side(zero, step.se, oc, step.direction, samples=samples)
    block = max(1, int(settings.block_cells) // max(1, n * len(oc) * n_s))
    for start in range(0, len(ex), block):
        sl = slice(start, min(len(ex), start + block))
        xs = _side(zero, step.se, ex[sl], step.direction, samples=samples)
        sums = pairmask.pair_sums(xs, ys, mask_x[:, sl], **_rule(step.direction), what=("samples",))
        for s in range(n_s):
            t = dict(zip(pairmask.SAMPLE_SUMS, sums["samples"][s]))
            for mi, method in enumerate(methods):
                if not METHOD_TABLE[method].closed_form:
                    continue
                r = batched.from_sums(method, t, t["n"], level=settings.level, inference=False)
                ok = (r.reason == 0) & (r.n_instruments >= int(settings.min_instruments))
                out[s, :, sl, :, mi] = np.where(ok, r.estimate, np.nan)
        if on_progress is not None:
            on_progress((sl.stop - start) / len(ex))


def local_table(
    est: LocalEstimates,
    seq_index: np.ndarray,
    all_ids: Sequence[str],
    exposures: Sequence[int],
    outcomes: Sequence[int],
    feature_names: Sequence[str],
    *,
    consume: bool = False,
) -> pd.DataFrame:
    """Local MR arrays (n, E, O, M) as rows, one per (sequence, exposure, outcome, method).

    Parameters
    ----------
    est : LocalEstimates
    seq_index : ndarray of int, shape (n,)
        Indices of the chunk's sequences among all the run's.
    all_ids : sequence of str
        Every sequence's id.
    exposures, outcomes : sequence of int
    feature_names : sequence of str
    consume : bool
        Drop every field from ``est.fields`` as soon as its column is built (the caller's last
        use of them): the arrays and the table are then never both whole in memory, which
        halves a chunk's peak at hundreds of features.

    Returns
    -------
    DataFrame
        Rows method by method, then sequence, exposure, outcome; cells with exposure == outcome
        left out. Names are categoricals (tables of 10^7 rows stay small).
    """
    methods = list(est.methods)
    n, n_e, n_o, n_m = len(seq_index), len(exposures), len(outcomes), len(methods)
    si, rest = np.divmod(np.arange(n * n_e * n_o), n_e * n_o)
    e_feat = np.asarray(exposures)[rest // n_o]
    o_feat = np.asarray(outcomes)[rest % n_o]
    keep = np.flatnonzero(e_feat != o_feat)
    cats = pd.CategoricalDtype(list(feature_names))
    # ids may repeat (FASTA records of one name): categories are the distinct ids
    distinct = list(dict.fromkeys(all_ids))
    code_of = {name: i for i, name in enumerate(distinct)}
    id_codes = np.array([code_of[all_ids[g]] for g in seq_index])

    def tiled(a):  # the cells kept, repeated for every method
        return np.tile(a[keep], n_m)

    si = si[keep]
    columns = {
        "sequence_index": np.tile(np.asarray(seq_index, dtype=np.int64)[si], n_m),
        "sequence_id": pd.Categorical.from_codes(
            np.tile(id_codes[si], n_m), dtype=pd.CategoricalDtype(distinct)
        ),
        "exposure": pd.Categorical.from_codes(tiled(e_feat), dtype=cats),
        "outcome": pd.Categorical.from_codes(tiled(o_feat), dtype=cats),
        "method": pd.Categorical.from_codes(
            np.repeat(np.arange(n_m, dtype=np.int8), len(keep)), categories=methods
        ),
    }
    fields = (*LOCAL_FIELDS, *HETEROGENEITY_FIELDS, "n_instruments", "reason", *INSTRUMENT_COUNTS)
    fields += tuple(
        f for f in (*POOLED_FIELDS, *STEIGER_FIELDS, "other_feature") if f in est.fields
    )
    for f in fields:
        cells = np.ascontiguousarray(est.fields[f]).reshape(-1, n_m)
        if consume:
            del est.fields[f]
        column = np.empty(len(keep) * n_m, dtype=cells.dtype)
        for mi in range(n_m):
            part = column[mi * len(keep) : (mi + 1) * len(keep)]
            # mode="clip": with out= and the default "raise", numpy buffers the result first
            np.take(cells[:, mi], keep, out=part, mode="clip")
        del cells
        columns[f] = column
    if "other_feature" in columns:
        columns["other_feature"] = pd.Categorical.from_codes(columns["other_feature"], dtype=cats)
    # the columns are fresh arrays: no copy, and no consolidation into 2-D blocks (a second copy)
    return pd.DataFrame(columns, copy=False)
