"""Stage 3, local: instruments and local MR of every (sequence, exposure, outcome, method).

The local step of a chunk (:func:`local_step`) calibrates the effect SEs, selects the instruments of
every (sequence, exposure) -- significance ``|b/se| >= z``, a floor on noise-level effects, one
allele per position -- and of every pair (the directionality check, ``instruments.directional``),
and runs MR of every exposure on every outcome per sequence
(:func:`~deepmr_kipoi.run.local_fit.local_mr`). Its result is a
:class:`~deepmr_kipoi.run.local_fit.LocalEstimates` of arrays of shape (n, E, O, M) (sequences,
exposures, outcomes, methods), with the checks of every fit
(:mod:`deepmr_kipoi.run.local_checks`), which :func:`local_table` flattens into the rows users
read, with how many instruments each rule removed. The per-sample local estimates the aggregate
stage reads are in :mod:`deepmr_kipoi.run.local_samples`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepmr_kipoi import instruments
from deepmr_kipoi.run.config import RunConfig
from deepmr_kipoi.run.local_checks import STEIGER_FIELDS, steiger_sums
from deepmr_kipoi.run.local_fit import (
    HETEROGENEITY_FIELDS,
    INSTRUMENT_COUNTS,
    LOCAL_FIELDS,
    POOLED_FIELDS,
    DirectionCheck,
    LocalEstimates,
    LocalFitSettings,
    MutantEffects,
    local_mr,
)


@dataclass(frozen=True)
class LocalStep:
    """What the local step of a chunk gives.

    Attributes
    ----------
    estimates : LocalEstimates
    selection : InstrumentSelection
        Instruments per exposure, ``mask`` of shape (n, W, 3, E) (before the directionality check,
        which is applied per pair inside ``local_fit.local_mr``).
    se : ndarray of float64, shape (n, W, 3, F)
        The effect SEs MR used (calibrated where the run calibrates).
    direction : DirectionCheck or None
        The directionality check, when it is on.
    """

    estimates: LocalEstimates
    selection: instruments.InstrumentSelection
    se: np.ndarray
    direction: DirectionCheck | None = None


def chunk_seed(seed: int, chunk: int) -> int:
    """The bootstrap seed of chunk ``chunk`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1)[0])


@dataclass(frozen=True)
class FeatureContext:
    """What the run knows about each of the F features beyond a chunk's effects.

    Attributes
    ----------
    se_scale : ndarray, shape (F,), optional
        Calibration factor on the SEs (None: uncalibrated).
    spread : ndarray, shape (F,), optional
        Every feature's spread over the run's reference sequences (``instruments.feature_spread``):
        the unit of the floor (skipped without it) and, with ``direction_scale="reference"``, of
        the directionality check.
    groups : sequence of int, length F, optional
        The model of every feature (model panels; :attr:`LocalFitSettings.feature_groups`); None:
        one model.
    """

    se_scale: np.ndarray | None = None
    spread: np.ndarray | None = None
    groups: Sequence[int] | None = None


def local_step(
    effects: MutantEffects,
    exposures: Sequence[int],
    outcomes: Sequence[int],
    config: RunConfig,
    *,
    chunk: int = 0,
    features: FeatureContext | None = None,
    selection: MutantEffects | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> LocalStep:
    """Calibration, instrument selection and local MR of a chunk's effects.

    Parameters
    ----------
    effects : MutantEffects
        Effect means and raw SDs over the model's samples (those MR estimates from), shape
        (n, W, 3, F), and optionally the calibrated per-sample effects (S, n, W, 3, F)
        (``local_samples.calibrated_samples``) for the heterogeneity test.
    exposures, outcomes : sequence of int
        Feature indices, lengths E and O.
    config : RunConfig
        Instrument (``z``, ``instrument_rule``, ``floor``, ``one_per_position``, ``directional``,
        ``direction_scale``, ``direction_z``, ``min_instruments``) and MR (``methods``,
        ``n_boot``, ``level``, ``seed``) settings.
    chunk : int
        Chunk index (the bootstrap seed is derived from ``config.seed`` and it).
    features : FeatureContext, optional
        The features' SE calibration factors, spreads and models (default: none of them).
    selection : MutantEffects, optional
        Effect means and raw SDs (n, W, 3, F) to select instruments on instead of ``effects``
        (sample splitting: selection on one half of the samples, estimation on the other).
    on_progress : callable, optional
        Called with the share of the local MR done (``local_fit.local_mr``).

    Returns
    -------
    LocalStep
    """
    features = features or FeatureContext()
    se = np.asarray(effects.se, dtype=np.float64)
    sel_mean, sel_se = (effects.mean, se) if selection is None else (selection.mean, selection.se)
    sel_se = np.asarray(sel_se, dtype=np.float64)
    if features.se_scale is not None:
        se = se * features.se_scale
        sel_se = sel_se * features.se_scale
    ex, oc = list(exposures), list(outcomes)
    sel = _select_instruments(config, sel_mean[..., ex], sel_se[..., ex], features.spread, ex)
    direction = _direction_check(config, sel_mean, sel_se, features.spread)
    groups = None if features.groups is None else tuple(map(int, features.groups))
    est = local_mr(
        MutantEffects(effects.mean, se, effects.samples),
        ex,
        oc,
        sel,
        config.methods,
        settings=dataclasses.replace(mr_settings(config, chunk), feature_groups=groups),
        direction=direction,
        on_progress=on_progress,
    )
    shape = est.estimate.shape
    for name, value in steiger_sums(sel_mean, sel.mask, ex, oc).items():
        est.fields[name] = np.broadcast_to(value[..., None], shape)
    return LocalStep(est, sel, se, direction)


def _select_instruments(config: RunConfig, mean, se, spread, ex) -> instruments.InstrumentSelection:
    """The instruments of every (sequence, exposure) by the run's rules, from the exposures'
    effects and SEs (n, W, 3, E); the floor is in units of each exposure's ``spread`` (none
    without it)."""
    floor = None
    if spread is not None and config.floor > 0:
        floor = np.nan_to_num(config.floor * np.asarray(spread)[ex], nan=0.0)
    return instruments.select(
        mean,
        se,
        z=config.z,
        rule=config.instrument_rule,
        one_per_position=config.one_per_position,
        min_count=config.min_instruments,
        floor=floor,
    )


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
