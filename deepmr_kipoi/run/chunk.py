"""Stages 2-3 on one chunk of sequences (:func:`compute_chunk`) and the typed chunk result.

A :class:`ChunkResult` is what one chunk gives: its local table, its per-sample local estimates, the
effects kept for figures and ``effects.h5`` (:class:`KeptEffects`) and its counts of skipped
mutants. :meth:`ChunkResult.merge` joins the chunks of a run into the run's own result, and
:meth:`ChunkResult.file_arrays` / :meth:`ChunkResult.from_file` are the chunk file's format (the
runner's chunk store writes and reads it), so that a resumed chunk is the same object as a computed
one. Executors (:mod:`deepmr_kipoi.run.executors`) call :func:`compute_chunk`, here or on a Dask
worker.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepmr_kipoi.run import checks, effects_cache, local, local_samples
from deepmr_kipoi.run.effects import chunk_effects
from deepmr_kipoi.run.local_fit import MutantEffects

#: Arrays of :class:`KeptEffects`, concatenated along the sequence axis when chunks merge.
_SEQUENCE_AXIS_FIELDS = ("sequence_index", "mean", "se", "instrument_mask", "alt_bases")


@dataclass(frozen=True, eq=False)
class KeptEffects:
    """The effects kept of k sequences of a chunk (the first ``n_examples``, or all with
    ``save_effects``), for figures and ``effects.h5``; U is the number of used features.

    Attributes
    ----------
    sequence_index : ndarray of int64, shape (k,)
        Indices into the run's sequences.
    mean, se : ndarray of float32, shape (k, W, 3, U)
        Effect means and the SEs MR used (calibrated where the run calibrates).
    instrument_mask : ndarray of bool, shape (k, W, 3, E)
    reference : ndarray of float32, shape (S, k, U)
    alt_bases : ndarray of uint8, shape (k, W, 3)
    positions : ndarray of int64, shape (W,)
    """

    sequence_index: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    instrument_mask: np.ndarray
    reference: np.ndarray
    alt_bases: np.ndarray
    positions: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays by field name (the chunk file's and the figures' keys)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def concatenate(cls, parts: Sequence[KeptEffects]) -> KeptEffects:
        """Join the kept effects of several chunks, in chunk order."""
        joined = {
            k: np.concatenate([getattr(p, k) for p in parts], axis=0) for k in _SEQUENCE_AXIS_FIELDS
        }
        reference = np.concatenate([p.reference for p in parts], axis=1)
        return cls(reference=reference, positions=parts[0].positions, **joined)


@dataclass(frozen=True, eq=False)
class ChunkResult:
    """Stages 2-3 on one chunk (or, merged, on every chunk of a run).

    Attributes
    ----------
    local : DataFrame
        The local table.
    samples : SampleEstimates
        Per-sample local estimates, arrays (S, n, E, O, M) over the chunk's sequences.
    kept : KeptEffects or None
        Effects kept for figures and ``effects.h5``; None when no sequence of the chunk is kept.
    n_masked : int
        (sequence, position) pairs holding N, not mutated.
    n_nonfinite : (int, int)
        Sequences and mutants left out for non-finite predictions (``mask_nonfinite``).
    flat : tuple of str
        Features no mutation of the window changes (left out); merged: those flat in every chunk.
    effects : dict of ndarray, optional
        A computed chunk's raw ISM effects (:func:`effects_arrays`), kept in the run folder's
        effects store so that another analysis of them needs no model; None when read back.
    cache_use : tuple of (str, int, int)
        ``(model label, sequences read from the effects cache, sequences computed and stored)``
        per cached model (:mod:`deepmr_kipoi.run.effects_cache`); empty without a cache or when
        read back; merged: summed over the chunks.
    """

    local: pd.DataFrame
    samples: local_samples.SampleEstimates
    kept: KeptEffects | None
    n_masked: int
    n_nonfinite: tuple[int, int]
    flat: tuple[str, ...] = ()
    effects: dict | None = None
    cache_use: tuple[tuple[str, int, int], ...] = ()

    def file_arrays(self) -> dict[str, np.ndarray]:
        """The arrays a chunk file keeps (read back by :meth:`from_file`)."""
        arrays = {
            "n_masked": np.asarray(self.n_masked),
            "n_nonfinite": np.asarray(self.n_nonfinite),
            "flat_features": np.asarray(self.flat, dtype=str),
        }
        if self.kept is not None:
            arrays.update(self.kept.as_dict())
        arrays["sample_estimate"] = self.samples.estimate
        return arrays

    @classmethod
    def from_file(cls, local_table: pd.DataFrame, arrays: dict | None, methods: Sequence[str]):
        """A chunk read back from its files, or None when they lack what a run needs."""
        arrays = dict(arrays or {})
        if "sample_estimate" not in arrays:
            return None
        kept = None
        if "mean" in arrays:
            kept = KeptEffects(**{k: arrays[k] for k in KeptEffects.__dataclass_fields__})
        samples = local_samples.SampleEstimates(tuple(methods), arrays["sample_estimate"])
        n_nonfinite = arrays.get("n_nonfinite", (0, 0))
        return cls(
            local_table,
            samples,
            kept,
            int(arrays.get("n_masked", 0)),
            (int(n_nonfinite[0]), int(n_nonfinite[1])),
            tuple(str(f) for f in np.asarray(arrays.get("flat_features", ())).reshape(-1)),
        )

    @classmethod
    def merge(cls, chunks: Sequence[ChunkResult], release: bool = False) -> ChunkResult:
        """The chunks of a run joined in chunk order: tables, estimates and kept effects
        concatenated, counts summed.

        With ``release`` the chunks' local tables are taken over (the caller's last use of
        them): each column is dropped from them once joined, so the run's table and its chunks'
        are never both whole in memory."""
        kept = [c.kept for c in chunks if c.kept is not None]
        return cls(
            local=_join_tables([c.local for c in chunks], release),
            samples=local_samples.SampleEstimates.concatenate([c.samples for c in chunks]),
            kept=KeptEffects.concatenate(kept) if kept else None,
            n_masked=sum(c.n_masked for c in chunks),
            n_nonfinite=tuple(int(sum(c.n_nonfinite[i] for c in chunks)) for i in (0, 1)),
            flat=tuple(f for f in chunks[0].flat if all(f in c.flat for c in chunks)),
            cache_use=effects_cache.merge_use([c.cache_use for c in chunks]),
        )

    def figure_arrays(self) -> dict:
        """The kept effects and counts as the figures read them (by name)."""
        arrays = {} if self.kept is None else self.kept.as_dict()
        arrays.update(n_masked=self.n_masked, n_nonfinite=np.asarray(self.n_nonfinite))
        return arrays


def _join_tables(tables: list[pd.DataFrame], release: bool) -> pd.DataFrame:
    """``pd.concat(tables, ignore_index=True)``; with ``release``, column by column, each column
    dropped from ``tables`` once joined (one table is returned as it is)."""
    if not release:
        return pd.concat(tables, ignore_index=True)
    if len(tables) == 1:
        return tables[0]
    columns = {}
    for name in list(tables[0].columns):
        columns[name] = pd.concat([t[name] for t in tables], ignore_index=True)
        for t in tables:
            del t[name]
    return pd.DataFrame(columns, copy=False)


def _add_time(timings: dict | None, key: str, since: float) -> None:
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - since


def _kept_effects(eff, mean, step, keep, rows) -> KeptEffects:
    """The effects of the kept sequences (``rows`` of the chunk) for figures and effects.h5."""
    return KeptEffects(
        sequence_index=keep,
        mean=mean[rows].astype(np.float32),
        se=step.se[rows].astype(np.float32),
        instrument_mask=step.selection.mask[rows],
        reference=eff.reference[:, rows].astype(np.float32),
        alt_bases=eff.alt_bases[rows],
        positions=eff.positions,
    )


def _share(on_progress, weight: float):
    """``on_progress`` called with ``weight`` times what a stage reports (None stays None)."""
    if on_progress is None:
        return None
    return lambda done: on_progress(weight * done)


def _split_samples(samples: np.ndarray):
    """Sample splitting: moments of the first half select, the second half estimates."""
    half = samples.shape[0] // 2
    chosen, samples = samples[:half], samples[half:]
    selection = MutantEffects(
        chosen.mean(axis=0, dtype=np.float64),
        chosen.std(axis=0, ddof=1, dtype=np.float64),
    )
    mean = samples.mean(axis=0, dtype=np.float64)
    se = samples.std(axis=0, ddof=1, dtype=np.float64)
    return samples, mean, se, selection


def _feature_groups(plan, used) -> np.ndarray | None:
    """The model of every used feature for a model panel (None for one model): from the panel, or
    from the run's record of its members when the run is re-analysed without its model."""
    groups = getattr(plan.model, "feature_groups", None)
    if groups is None:
        members = (plan.identity or {}).get("panel")
        if not members:
            return None
        member_of = {
            name: i for i, m in enumerate(members.values()) for name in m.get("feature_names") or []
        }
        groups = [member_of.get(name, -1) for name in plan.feature_names]
    return np.asarray(groups)[list(used)]


#: Arrays of a chunk's raw ISM effects (:func:`effects_arrays`), the ``effects_*.npz`` files' content.
EFFECT_FIELDS = ("samples", "reference", "positions", "alt_bases", "ref_bases", "is_n")


def effects_arrays(eff, features: Sequence[int], copy: bool = False) -> dict[str, np.ndarray]:
    """The arrays that rebuild a chunk's raw effects exactly (:func:`effects_from_arrays`).

    Parameters
    ----------
    eff : ISMEffects
        ``chunk_effects``'s result on the used features, with per-sample differences.
    features : sequence of int, length U
        The model feature index of each of its features.
    copy : bool
        Copy the arrays (when the analysis will change ``eff``'s in place afterwards).
    """
    take = np.array if copy else np.asarray
    out = {k: take(getattr(eff, k)) for k in EFFECT_FIELDS}
    out["features"] = np.asarray(features, dtype=np.int64)
    out["feature_names"] = np.asarray(eff.feature_names, dtype=str)
    if getattr(eff, "outside", None) is not None:  # a model panel: positions a member cannot see
        out["outside"] = np.asarray(eff.outside, dtype=bool)
    return out


def effects_from_arrays(arrays: dict[str, np.ndarray]):
    """Raw chunk effects rebuilt from stored arrays: the mean and SD over samples are recomputed in
    float64 from the float32 per-sample differences exactly as ``chunk_effects`` computes them."""
    from deepmr_kipoi import ism

    samples = arrays["samples"]
    return ism.ISMEffects(
        mean=samples.mean(axis=0, dtype=np.float64),
        se=samples.std(axis=0, ddof=1, dtype=np.float64),
        reference=arrays["reference"],
        positions=arrays["positions"],
        alt_bases=arrays["alt_bases"],
        ref_bases=arrays["ref_bases"],
        is_n=arrays["is_n"],
        feature_names=tuple(str(f) for f in arrays["feature_names"]),
        n_samples=int(samples.shape[0]),
        samples=samples,
        outside=arrays.get("outside"),
    )


def compute_chunk(
    plan,
    chunk_index: int,
    on_progress: Callable[[int], None] | None = None,
    timings: dict | None = None,
    keep_effects: bool = False,
) -> ChunkResult:
    """Effects (stage 2) and local MR (stage 3) of one chunk; writes nothing.

    Parameters
    ----------
    plan : RunPlan
    chunk_index : int
        Index into ``plan.bounds``.
    on_progress : callable, optional
        Called with the number of sequences done, fractions included: each sequence counts half
        for its ISM and half for its analysis (a quarter for the local MR and heterogeneity of
        every pair, a quarter for the per-sample estimates), so that the progress follows the
        analysis too, which dominates at hundreds of features.
    timings : dict, optional
        ``"ism"`` and ``"mr"`` seconds are added to it.
    keep_effects : bool
        Return the raw effects' arrays too (:func:`effects_arrays`, for the run's effects store;
        the executors ask for them, an in-memory caller such as the simulation need not).

    Returns
    -------
    ChunkResult
    """
    a, b = plan.bounds[chunk_index]
    tick = time.perf_counter()
    cached = effects_cache.engines(plan.config, plan.model, plan.identity, plan.inputs)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite outputs are
        # checked (and named) in analyse_chunk, so numpy's own warnings about them would only be noise
        eff = chunk_effects(
            plan.model,
            plan.onehot[a:b],
            plan.window,
            batch_size=plan.config.batch_size,
            features=list(plan.used),
            on_progress=_share(on_progress, 0.5),
            engines=cached,
        )
    _add_time(timings, "ism", tick)
    # the analysis calibrates the per-sample differences in place: what is stored must be the raw
    # differences the model gave (a reanalysis calibrates them again), so a calibrated run stores
    # a copy taken before
    stored = None
    if keep_effects:
        stored = effects_arrays(eff, plan.used, copy=plan.se_scale is not None)
    result = analyse_chunk(plan, chunk_index, eff, timings, _share(on_progress, 0.5))
    return dataclasses.replace(result, effects=stored, cache_use=effects_cache.use(cached))


def analyse_chunk(
    plan,
    chunk_index: int,
    eff,
    timings: dict | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> ChunkResult:
    """Local MR (stage 3) of one chunk from its raw effects (computed, or read from the store).

    Parameters
    ----------
    plan : RunPlan
    chunk_index : int
    eff : ISMEffects
        The chunk's effects on ``plan.used`` (in that order), with per-sample differences.
    timings : dict, optional
        ``"mr"`` seconds are added to it.
    on_progress : callable, optional
        Called with the sequences done (half for the local MR, half for the per-sample estimates).

    Returns
    -------
    ChunkResult
    """
    config = plan.config
    a, b = plan.bounds[chunk_index]
    used = list(plan.used)
    at = {f: i for i, f in enumerate(used)}
    tick = time.perf_counter()
    eff, nonfinite, flat = checks.check_outputs(
        eff,
        range(len(used)),
        [at[e] for e in plan.exposures],
        [plan.feature_names[f] for f in used],
        mask=config.mask_nonfinite,
    )
    # everything below works on the used features only (U of them)
    ex, oc = [at[e] for e in plan.exposures], [at[o] for o in plan.outcomes]
    names = [plan.feature_names[f] for f in used]
    se_scale = None if plan.se_scale is None else plan.se_scale[used]
    mean, se, samples, selection = eff.mean, eff.se, eff.samples, None
    if config.sample_split:
        samples, mean, se, selection = _split_samples(samples)
    samples = local_samples.calibrated_samples(samples, mean, se_scale)
    groups = _feature_groups(plan, used)
    step = local.local_step(
        MutantEffects(mean, se, samples),
        ex,
        oc,
        config,
        chunk=chunk_index,
        features=local.FeatureContext(se_scale, plan.spread[used], groups),
        selection=selection,
        on_progress=(half := _share(on_progress, 0.5 * (b - a))),
    )
    idx = np.arange(a, b)
    frame = local.local_table(step.estimates, idx, plan.seq_ids, ex, oc, names, consume=True)
    per_sample = local_samples.sample_estimates(
        samples, step, ex, oc, config, chunk=chunk_index, on_progress=half, feature_groups=groups
    )
    _add_time(timings, "mr", tick)
    keep = idx if plan.save_effects else idx[idx < config.n_examples]
    kept = _kept_effects(eff, mean, step, keep, keep - a) if len(keep) else None
    return ChunkResult(
        frame,
        per_sample,
        kept,
        int(eff.n_masked),
        (int(nonfinite.n_sequences), int(nonfinite.n_mutants)),
        flat,
    )
