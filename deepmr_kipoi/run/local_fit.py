"""Local MR of every (sequence, exposure, outcome, method) of a chunk, as array code.

:func:`local_mr` runs the estimators over the cells (n, E, O) of a chunk: IVW, IVW-FE and
MR-Egger, the instrument counts and the heterogeneity test in one compiled pass
(``mr.pairmask.pair_sums``), the sorting methods (medians, mode) on ``mr.run_batched`` with the
explicit pair masks of each block of exposures. The result is a :class:`LocalEstimates` of arrays
of shape (n, E, O, M). The definitions these passes compute are ``mr.run_batched`` over explicit
masks and :func:`deepmr_kipoi.run.local_checks.heterogeneity`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from deepmr_kipoi import instruments
from deepmr_kipoi.mr.methods import METHOD_TABLE

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
#: Per-cell heterogeneity beyond the model's own noise (``local_checks.heterogeneity``),
#: local-table columns.
HETEROGENEITY_FIELDS = ("heterogeneity_q", "heterogeneity_pvalue", "heterogeneity_spread")
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
        with exposure == outcome are computed like any other; ``local.local_table`` drops them.
    closed_samples : ndarray of float64, shape (S, n, E, O, M), optional
        Every model sample's local estimate of the closed-form methods (IVW, MR-Egger; NaN in
        the other methods' slots), computed in the same compiled pass as the fields when
        :func:`local_mr` is given the per-sample effects; ``local_samples.sample_estimates``
        reads them.
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
class MutantEffects:
    """The paired ISM effects of a chunk's mutants that a local fit reads.

    Attributes
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Effect means over the model's samples and their SEs (raw SDs or calibrated: the function
        that takes them says which).
    samples : ndarray, shape (S, n, W, 3, F), optional
        The calibrated per-sample effects
        (:func:`~deepmr_kipoi.run.local_samples.calibrated_samples`): with them the heterogeneity
        test counts the paired covariance of exposure and outcome noise, and :func:`local_mr`
        gives every sample's closed-form estimates from the same pass.
    """

    mean: np.ndarray
    se: np.ndarray
    samples: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class _Cells:
    """What every exposure block of :func:`local_mr` reads: effects and SEs (n, W, 3, F), the
    exposure and outcome indices, the exposures' instruments ``mask_x`` (n, E, K = 3 W), the
    directionality check and the settings."""

    mean: np.ndarray
    se: np.ndarray
    ex: list
    oc: list
    mask_x: np.ndarray
    direction: DirectionCheck | None
    settings: LocalFitSettings

    def side(self, idx, *, centred=None, samples=None):
        """:func:`pair_side` of the features ``idx``."""
        return pair_side(self.mean, self.se, idx, self.direction, centred=centred, samples=samples)


def _flat(a: np.ndarray, idx: Sequence[int]) -> np.ndarray:
    """(n, W, 3, F) -> (n, len(idx), 3 W): one row of candidate instruments per feature."""
    n = a.shape[0]
    return np.ascontiguousarray(a[..., idx].reshape(n, -1, len(idx)).transpose(0, 2, 1))


def _pair_masks(cells: _Cells, sl: slice) -> np.ndarray:
    """Instrument masks (n, E_block, O, K) of a block of exposures, after the directionality
    check."""
    mask = cells.mask_x[:, sl, None, :]
    direction = cells.direction
    if direction is None:
        return mask
    n = cells.mask_x.shape[0]
    spread = np.asarray(direction.spread, dtype=np.float64)
    spread = np.broadcast_to(spread, (n, spread.shape[-1]))
    eb, oc = cells.ex[sl], cells.oc
    passes = instruments.directional(
        _flat(direction.effects, eb)[:, :, None, :],
        _flat(direction.effects, oc)[:, None, :, :],
        _flat(direction.se, eb)[:, :, None, :],
        _flat(direction.se, oc)[:, None, :, :],
        spread[:, eb][:, :, None, None],
        spread[:, oc][:, None, :, None],
        z=direction.z,
    )
    return mask & passes


def local_mr(
    effects: MutantEffects,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    selection: instruments.InstrumentSelection,
    methods: Sequence[str],
    *,
    settings: LocalFitSettings | None = None,
    direction: DirectionCheck | None = None,
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
    ``local_checks.heterogeneity``, which define them.

    Parameters
    ----------
    effects : MutantEffects
        Paired ISM effects and (calibrated) SEs (n, W, 3, F), and optionally the calibrated
        per-sample effects (S, n, W, 3, F).
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
    on_progress : callable, optional
        Called with the share of the exposures done after each block.

    Returns
    -------
    LocalEstimates
        Arrays of shape (n, E, O, M), with the instrument counts of :data:`INSTRUMENT_COUNTS`, the
        heterogeneity fields of :data:`HETEROGENEITY_FIELDS` and the IVW sums of
        :data:`POOLED_FIELDS` (equal on every method; the sums also where no local fit is made);
        ``closed_samples`` when ``effects`` has per-sample effects.
    """
    from deepmr_kipoi.mr import pairmask

    settings = settings or LocalFitSettings()
    n, ex, oc, methods = effects.mean.shape[0], list(exposures), list(outcomes), tuple(methods)
    mask_x = selection.mask.reshape(n, -1, len(ex)).transpose(0, 2, 1)
    cells = _Cells(effects.mean, effects.se, ex, oc, mask_x, direction, settings)
    fields = _empty_fields((n, len(ex), len(oc), len(methods)), selection)
    seeds = np.random.SeedSequence(int(settings.seed)).generate_state(len(methods) * len(ex) + 1)
    cov = effects.samples if settings.heterogeneity else None
    sample_est = _sample_slots(cov, methods, fields["estimate"].shape)
    ys = cells.side(oc, centred=cov, samples=None if sample_est is None else cov)
    block = _exposure_block(settings.block_cells, n, len(oc), mask_x.shape[-1])
    for start in range(0, len(ex), block):
        sl = slice(start, min(len(ex), start + block))
        sums = _block_sums(cells, sl, ys, cov, sample_est)
        main = dict(zip(pairmask.MAIN_SUMS, sums["main"]))
        _store_sums(fields, cells, main, sl)
        if settings.heterogeneity:
            het = sums["heterogeneity"]
            if settings.feature_groups is not None and cov is not None:
                het = _independent_across_models(het, cells, sl)
            _store_heterogeneity(fields, het, sl)
        _fit_methods(fields, cells, main, sl, (methods, seeds))
        if on_progress is not None:
            on_progress((sl.stop - start) / len(ex))
    _mark_too_few(fields, settings.min_instruments)
    return LocalEstimates(methods, fields, None if sample_est is None else sample_est[0])


def _sample_slots(cov, methods, shape):
    """Where every sample's closed-form estimates go when they come from the local pass itself:
    an array (S, n, E, O, M) and the closed-form methods' (position, name); None without
    per-sample effects or closed-form methods."""
    closed = [(mi, m) for mi, m in enumerate(methods) if METHOD_TABLE[m].closed_form]
    if cov is None or not closed:
        return None
    return np.full((cov.shape[0], *shape), np.nan), closed


def _block_sums(cells: _Cells, sl: slice, ys, cov, sample_est) -> dict:
    """The ``mr.pairmask.pair_sums`` of an exposure block, in one pass with every model sample's
    sums when ``sample_est`` is given (:func:`_sample_slots`): those become the samples'
    closed-form estimates there, sub-block by sub-block (their sums are S times the size of
    the block's)."""
    from deepmr_kipoi.mr import pairmask

    rule = pair_rule(cells.direction)
    if sample_est is None:
        what = ("main", "heterogeneity") if cells.settings.heterogeneity else ("main",)
        xs = cells.side(cells.ex[sl], centred=cov)
        return pairmask.pair_sums(xs, ys, cells.mask_x[:, sl], **rule, what=what)
    out, closed = sample_est
    n, n_o, n_s = cells.mask_x.shape[0], ys.b.shape[1], out.shape[0]
    step = max(1, int(cells.settings.block_cells) // max(1, n * n_o * n_s))
    parts = []
    for start in range(sl.start, sl.stop, step):
        sub = slice(start, min(sl.stop, start + step))
        xs = cells.side(cells.ex[sub], centred=cov, samples=cov)
        sums = pairmask.pair_sums(
            xs, ys, cells.mask_x[:, sub], **rule, what=("main", "heterogeneity", "samples")
        )
        closed_sample_fits(sums.pop("samples"), out, sub, closed, cells.settings)
        parts.append(sums)
    return {k: np.concatenate([p[k] for p in parts], axis=2) for k in parts[0]}


def closed_sample_fits(sums: np.ndarray, out: np.ndarray, sl: slice, closed, settings) -> None:
    """Every model sample's closed-form estimates of a block of exposures, from its sums.

    Parameters
    ----------
    sums : ndarray, shape (S, 7, n, E_block, O)
        The per-sample sums of ``mr.pairmask.pair_sums`` (rows ``pairmask.SAMPLE_SUMS``).
    out : ndarray, shape (S, n, E, O, M)
        Written at ``out[:, :, sl, :, mi]`` for every closed-form method: its estimate, NaN where
        the method cannot fit or the cell has fewer than ``settings.min_instruments``.
    sl : slice
        The block's exposures along E.
    closed : sequence of (int, str)
        The closed-form methods' positions along M and names.
    settings : LocalFitSettings
    """
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


def pair_rule(direction: DirectionCheck | None) -> dict:
    """The directionality rule's settings for ``mr.pairmask.pair_sums``.

    Parameters
    ----------
    direction : DirectionCheck or None
        None: no directionality check.

    Returns
    -------
    dict
        The keywords ``direction`` (bool), ``z`` and ``tie`` of ``pair_sums``.
    """
    z = 0.0 if direction is None else float(direction.z)
    return {"direction": direction is not None, "z": z, "tie": instruments.DIRECTION_TIE}


def pair_side(mean, se, idx, direction, *, centred=None, samples=None):
    """One side (features ``idx``) of the cells, for ``mr.pairmask.pair_sums``.

    Parameters
    ----------
    mean, se : ndarray, shape (n, W, 3, F)
        Effects and their SEs.
    idx : sequence of int
        The side's features (exposures or outcomes), length G.
    direction : DirectionCheck or None
        The directionality check, whose statistic the side carries.
    centred, samples : ndarray, shape (S, n, W, 3, F), optional
        Per-sample effects: ``samples`` are carried as they are (every sample's sums), ``centred``
        as their deviations from the sample mean (the paired covariance).

    Returns
    -------
    pairmask side
        Arrays (n, G, 3 W) per feature row, as ``mr.pairmask.side`` builds them.
    """
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


def _fit_methods(fields: dict, cells: _Cells, main: dict, sl: slice, methods_seeds) -> None:
    """Every method's fit of an exposure block into the result arrays: the closed forms from the
    block's sums ``main``, the sorting methods on ``mr.run_batched`` over the block's explicit
    pair masks (``methods_seeds``: the methods and the bootstrap seeds, one per method and
    exposure)."""
    from deepmr_kipoi import mr
    from deepmr_kipoi.mr import batched

    methods, seeds = methods_seeds
    s, pair_mask = cells.settings, None
    for mi, method in enumerate(methods):
        if METHOD_TABLE[method].closed_form:
            r = batched.from_sums(method, main, main["n"], level=s.level)
        else:
            if pair_mask is None:
                pair_mask = _pair_masks(cells, sl)
            ex_block, oc = cells.ex[sl], cells.oc
            r = mr.run_batched(
                method,
                _flat(cells.mean, ex_block)[:, :, None, :],
                _flat(cells.mean, oc)[:, None, :, :],
                _flat(cells.se, ex_block)[:, :, None, :],
                _flat(cells.se, oc)[:, None, :, :],
                mask=pair_mask,
                drop_invalid=True,
                n_boot=s.n_boot,
                seed=int(seeds[mi * len(cells.ex) + sl.start]),
                level=s.level,
            )
        _store_block(fields, r, sl, mi)


def _independent_across_models(het, cells: _Cells, sl: slice) -> np.ndarray:
    """A panel's heterogeneity sums: pairs of two models' features take their errors as
    independent (the sums without the paired covariance), pairs within a model keep theirs."""
    from deepmr_kipoi.mr import pairmask

    groups = np.asarray(cells.settings.feature_groups)
    paired = groups[list(cells.ex[sl])][:, None] == groups[list(cells.oc)][None, :]  # (E_block, O)
    if paired.all():
        return het
    xs, ys = cells.side(cells.ex[sl]), cells.side(cells.oc)
    two_sample = pairmask.pair_sums(
        xs, ys, cells.mask_x[:, sl], **pair_rule(cells.direction), what=("heterogeneity",)
    )["heterogeneity"]
    return np.where(paired[None, None], het, two_sample)


def _store_sums(fields: dict, cells: _Cells, main: dict, sl: slice) -> None:
    """The IVW sums of the pooled test and the instruments the directionality check removed, of
    an exposure block's cells, into the result arrays (every method's slot)."""
    fields["pooled_sxy"][:, sl] = main["sxy"][..., None]
    fields["pooled_sxx"][:, sl] = main["sxx"][..., None]
    if cells.direction is not None:
        kept = np.rint(main["n_pass"]).astype(np.int64)
        removed = cells.mask_x[:, sl].sum(-1)[..., None] - kept
        fields["removed_direction"][:, sl] = removed[..., None]


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


def _mark_too_few(fields: dict, min_instruments: int) -> None:
    """Cells with fewer usable instruments than the run's minimum: NaN, reason "too few"."""
    few = (fields["reason"] == 0) & (fields["n_instruments"] < int(min_instruments))
    for f in (*LOCAL_FIELDS, *HETEROGENEITY_FIELDS):
        fields[f][few] = np.nan
    fields["reason"][few] = TOO_FEW
