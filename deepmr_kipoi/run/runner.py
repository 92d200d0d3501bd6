"""The runner: plans a run, drives the stages chunk by chunk, resumes, and writes the run folder.

:func:`make_plan` does every input check (stage 1) before a file is written and returns a
:class:`RunPlan`, the frozen object the stages share. :func:`~deepmr_kipoi.run.chunk.compute_chunk`
runs stages 2-3 on one chunk without touching disk, on the config's executor
(:mod:`deepmr_kipoi.run.executors`). :func:`run` adds the run folder
(:class:`~deepmr_kipoi.run.folder.RunFolder`: the chunk store, where a finished and verified chunk is
skipped on resume, and the stage the outputs are written to and swapped in from, whole), stage 4
and the outputs (tables, ``effects.h5``, figures, report, ``run.json`` from a
:class:`~deepmr_kipoi.run.record.RunRecord`).

Errors: any error before a chunk was computed removes what this call created (the run folder itself
when it created it); after that, the chunks already computed stay so the same call resumes, and the
folder keeps its earlier run. An exception raised in the user's own model code becomes a one-line
:class:`~deepmr_kipoi.errors.ModelCodeError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import __version__, instruments, results, validation
from deepmr_kipoi.errors import DeepMRInputError, user_code_errors
from deepmr_kipoi.run import aggregate, checks, effects_cache, executors, inputs
from deepmr_kipoi.run.chunk import (  # noqa: F401 - runner.compute_chunk stays importable
    ChunkResult,
    analyse_chunk,
    compute_chunk,
    effects_from_arrays,
)
from deepmr_kipoi.run.chunk_store import StoredChunksIncomplete
from deepmr_kipoi.run.config import (
    AUTO_EFFECTS_LIMIT,
    RunConfig,
    config_hash,
    effects_hash,
    portable_config,
    validate,
    weights_signature,
)
from deepmr_kipoi.run.fingerprint import input_fingerprint
from deepmr_kipoi.run.folder import ChunkStore, RunFolder, RunKey, stop_point
from deepmr_kipoi.run.record import ChunkInfo, FeatureSet, RunRecord, SequenceSet, versions

logger = logging.getLogger(__name__)

#: ``run.json``'s words for seeded random reference sequences (``inputs.sequence_source``).
RANDOM_SOURCE = "seeded random sequences"
#: The warning of a run on random DNA: its effects are the model's response to sequences it was
#: never trained on.
RANDOM_WARNING = (
    "The reference sequences are random DNA (no FASTA, sequences or dataloader given): the effects "
    "describe the model on sequences unlike its training data; give real sequences for biology."
)


@dataclass(frozen=True)
class RunPlan:
    """What the stages of one run share, fixed before the first chunk.

    Attributes
    ----------
    config : RunConfig
        Validated.
    model : PredictiveModel
    identity : dict
        The model's identity for ``run.json``.
    feature_names : tuple of str, length F
    exposures, outcomes : tuple of int
        Feature indices, lengths E and O.
    used : tuple of int
        Sorted union of exposures and outcomes (features kept in ``effects.h5``).
    seq_ids : tuple of str, length N
    onehot : ndarray of float32, shape (N, L, 4)
    window : (int, int)
    calibration : Calibration or None
    chunk_size : int
        Sequences per chunk (all of them under the pooled instrument rule).
    bounds : tuple of (int, int)
        Half-open sequence ranges of the chunks.
    save_effects : bool
    config_hash : str
    spread : ndarray of float64, shape (F,)
        Every feature's spread over the reference sequences (``instruments.feature_spread``), the
        unit of the instrument floor and of the directionality check.
    inputs : dict
        Content md5 per input (:func:`~deepmr_kipoi.run.fingerprint.input_fingerprint`).
    sequence_source : str
        Where the reference sequences came from, in words (for ``run.json``).
    effects_hash : str
        ``config.effects_hash``: what the ISM effects depend on (the key of the effects store).
    """

    config: RunConfig
    model: object
    identity: dict
    feature_names: tuple[str, ...]
    exposures: tuple[int, ...]
    outcomes: tuple[int, ...]
    used: tuple[int, ...]
    seq_ids: tuple[str, ...]
    onehot: np.ndarray
    window: tuple[int, int]
    calibration: inputs.Calibration | None
    chunk_size: int
    bounds: tuple[tuple[int, int], ...]
    save_effects: bool
    config_hash: str
    spread: np.ndarray
    inputs: dict = dataclasses.field(default_factory=dict)
    sequence_source: str = ""
    effects_hash: str = ""

    @property
    def n_sequences(self) -> int:
        """N."""
        return int(self.onehot.shape[0])

    @property
    def se_scale(self) -> np.ndarray | None:
        """Calibration factor on the effect SEs, shape (F,), or None."""
        return None if self.calibration is None else self.calibration.se_scale


@dataclass(frozen=True)
class DeepMRResult:
    """The outcome of ``run``.

    Attributes
    ----------
    global_effects : DataFrame
        One row per (exposure, outcome, method): the headline inference over sequences and model
        samples (estimate, se, df, ci_low, ci_high, pvalue, qvalue, significant, sequence_se,
        sample_se), the direction verdict and the IVW-versus-robust flag, the random-effects
        meta-analysis over sequences (meta_estimate, meta_se, meta_ci_low, meta_ci_high,
        meta_pvalue, tau2, i2, q, q_pvalue, pi_low, pi_high, k) and diagnostics (instrument counts
        per rule, Egger intercept and I^2_GX summaries); see ``aggregate.global_effects``.
    local_effects : DataFrame
        One row per (sequence, exposure, outcome, method): MR fields, ``n_instruments``, ``reason``.
    config : RunConfig
        The resolved config.
    record : RunRecord
        What ``run.json`` holds (versions, model identity, seeds, timings, chunks, warnings).
    warnings : tuple of str
        Plain-words warnings about the results.
    out_dir : Path or None
    """

    global_effects: pd.DataFrame
    local_effects: pd.DataFrame
    config: RunConfig
    record: RunRecord
    warnings: tuple[str, ...]
    out_dir: Path | None

    @property
    def run_info(self) -> dict:
        """The record as ``run.json``'s plain mapping."""
        return self.record.to_dict()


def make_plan(
    config: RunConfig,
    model=None,
    identity: dict | None = None,
    *,
    sequences: tuple | None = None,
    calibration: inputs.Calibration | None = None,
    sequence_source: str | None = None,
) -> RunPlan:
    """Validate a config, load its model and inputs, and fix the chunks.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel, optional
        Use this model instead of loading ``config.model``.
    identity : dict, optional
        The model's identity when ``model`` is given.
    sequences : (list of str, ndarray (N, L, 4)), optional
        Reference sequences (ids, ACGT one-hot) instead of those ``config`` names (in-memory use,
        e.g. the simulation).
    calibration : Calibration, optional
        An already fitted calibration (``inputs.fit_calibration``) instead of the config's.
    sequence_source : str, optional
        Where ``sequences`` came from, in words (``run.json``; default: from the config).

    Returns
    -------
    RunPlan

    Raises
    ------
    DeepMRInputError
        Any user mistake in the config or the inputs it names.
    """
    config = validate(config)
    model, identity = inputs.prepare_model(config, model, identity)
    feature_names = tuple(str(f) for f in model.feature_names)
    if len(feature_names) == 1:
        raise DeepMRInputError(
            f"this model has one output ({feature_names[0]}); put it in a panel with another "
            "model: --model a=... --model b=..."
        )
    s = int(getattr(model, "n_samples", 0) or 0)
    if s < 2:
        hint = getattr(model, "uncertainty_hint", None) or (
            "an ensemble (--uncertainty ensemble, several members) or MC dropout "
            "(--uncertainty mc_dropout --n-samples 30)"
        )
        raise DeepMRInputError(
            f"the model gives {s} prediction per input, so mutation effects have no standard error; "
            f"add uncertainty: {hint}"
        )
    if config.sample_split and s < 4:
        raise DeepMRInputError(
            f"sample splitting needs at least 4 model samples (2 to select, 2 to estimate), the "
            f"model has {s}; drop --sample-split or use more samples"
        )
    inputs.check_applicable(config, model)
    exposures = inputs.select_features(config.exposures, feature_names, "exposure")
    outcomes = inputs.select_features(config.outcomes, feature_names, "outcome")
    if not any(e != o for e in exposures for o in outcomes):
        raise DeepMRInputError(
            f"exposure and outcome are the same feature ({feature_names[exposures[0]]}); choose "
            "different --exposures and --outcomes"
        )
    if sequences is None:
        seq_ids, onehot = inputs.load_sequences(config, getattr(model, "sequence_length", None))
    else:
        seq_ids, onehot = list(sequences[0]), np.asarray(sequences[1], dtype=np.float32)
    n_seq, length = onehot.shape[:2]
    window = validation.window(config.window, length, "ISM window")
    cal = calibration or inputs.load_calibration(config, model, list(feature_names))
    used = tuple(sorted(set(exposures) | set(outcomes)))
    save_effects, chunk_size, bounds = chunking(config, n_seq, window, len(used))
    chash = config_hash(config.replace(chunk_size=chunk_size), identity, feature_names, n_seq)
    fingerprint = input_fingerprint(config, identity, seq_ids, onehot)
    cached = effects_cache.engines(config, model, identity, fingerprint)
    reference = checks.reference_predictions(
        model if cached is None else effects_cache.CachedReference(model, cached),
        onehot,
        config.batch_size,
        mask=config.mask_nonfinite,
    )
    spread = instruments.feature_spread(reference)
    return RunPlan(
        config,
        model,
        identity,
        feature_names,
        tuple(exposures),
        tuple(outcomes),
        used,
        tuple(seq_ids),
        onehot,
        window,
        cal,
        chunk_size,
        bounds,
        save_effects,
        chash,
        spread,
        fingerprint,
        sequence_source or inputs.sequence_source(config),
        effects_hash(config, identity, feature_names, n_seq),
    )


def chunking(config: RunConfig, n_seq: int, window, n_used: int):
    """Whether ``effects.h5`` is written, the chunk size and the chunks' half-open bounds."""
    save_effects = config.save_effects
    if save_effects == "auto":
        save_effects = n_seq * (window[1] - window[0]) * 3 * n_used <= AUTO_EFFECTS_LIMIT
    chunk_size = config.chunk_size
    if config.instrument_rule == "pooled" and chunk_size < n_seq:
        logger.info(
            "pooled instrument rule: one chunk of all %d sequences (pooled statistics)", n_seq
        )
        chunk_size = n_seq
    bounds = tuple((a, min(n_seq, a + chunk_size)) for a in range(0, n_seq, chunk_size))
    return bool(save_effects), chunk_size, bounds


def run(
    config: RunConfig,
    *,
    model=None,
    identity: dict | None = None,
    truth: pd.DataFrame | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    sequences: tuple | None = None,
    sequence_source: str | None = None,
) -> DeepMRResult:
    """Run Deep MR end to end.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel, optional
        Use this model instead of loading ``config.model`` (``identity`` then describes it).
    identity : dict, optional
        Model identity for ``run.json`` when ``model`` is given.
    truth : DataFrame, optional
        Known global effects (columns exposure, outcome, true_effect) for the report's headline
        (the demo and simulations).
    on_chunk : callable, optional
        Called as ``on_chunk(chunk_index, n_chunks)`` after each computed chunk is written.
    sequences : (list of str, ndarray (N, L, 4)), optional
        Reference sequences (ids, ACGT one-hot) given in memory instead of those ``config`` names.
    sequence_source : str, optional
        Where ``sequences`` came from, in words (for ``run.json``).

    Returns
    -------
    DeepMRResult

    Raises
    ------
    DeepMRInputError
        On bad input, with a one-line reason. When found before any chunk was computed, the files
        this call created are removed first (the run folder itself when this call created it).
    """
    started = time.time()
    tick = time.perf_counter()
    with user_code_errors():
        plan = make_plan(
            config, model, identity, sequences=sequences, sequence_source=sequence_source
        )
    timings = {"plan": time.perf_counter() - tick}
    return run_plan(
        plan,
        truth=truth,
        on_chunk=on_chunk,
        model_given=model is not None,
        timings=timings,
        started=started,
    )


def run_plan(
    plan: RunPlan,
    *,
    truth: pd.DataFrame | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    model_given: bool = False,
    effects_from: Path | None = None,
    timings: dict | None = None,
    started: float | None = None,
) -> DeepMRResult:
    """Stages 2-4 and the outputs of a planned run (:func:`run` after :func:`make_plan`).

    Chunks are taken, in this order, from the run folder's finished chunks (same key), from stored
    ISM effects (same effects key: only the analysis runs, no model), or computed by the model.

    Parameters
    ----------
    plan : RunPlan
        ``plan.model`` may be None when every chunk's effects are stored (a reanalysis).
    truth, on_chunk :
        As for :func:`run`.
    model_given : bool
        The model was handed to the run (Dask workers then get it shipped).
    effects_from : Path, optional
        Another run's chunk folder whose stored effects may be used.
    timings, started :
        Seconds already spent (``"plan"``), and ``time.time()`` when the run started.

    Returns
    -------
    DeepMRResult
    """
    started = time.time() if started is None else started
    timings = dict(timings or {})
    config = plan.config
    out_dir = Path(config.out) if config.out else None
    created: list[Path] = []
    computed: list[int] = []
    folder = None
    try:
        folder, store, reader = _stores(plan, out_dir, effects_from)
        chunks, resumed = _run_chunks(
            plan, store, reader, created, computed, on_chunk, timings, model_given
        )
        merged = ChunkResult.merge(chunks)
        local_table = merged.local
        global_table, warns = _aggregate(plan, merged, timings)
        arrays = merged.figure_arrays()
        record = _record(plan, resumed, warns, truth, started)
        n_bad_seq, n_bad_mut = merged.n_nonfinite
        record = dataclasses.replace(
            record, nonfinite={"sequences": n_bad_seq, "mutants": n_bad_mut}
        )
        if folder is not None:
            record = _write_outputs(
                plan,
                folder.stage,
                global_table,
                local_table,
                arrays,
                record,
                truth,
                timings,
                created,
                started,
            )
            folder.commit()
        else:
            timings["total"] = time.time() - started
            record = dataclasses.replace(record, timings_s=timings)
    except Exception as err:
        # a refusal leaves the folder as it was (RunFolder.close); a bug keeps its chunks for the
        # rerun, and the command line's message says how many
        refused = isinstance(err, DeepMRInputError)
        err.deepmr_chunks_kept = len(computed) if folder is not None and not refused else 0
        raise
    finally:
        if folder is not None:
            folder.close(computed=bool(computed))
    return DeepMRResult(global_table, local_table, config, record, tuple(warns), out_dir)


def _stores(plan: RunPlan, out_dir: Path | None, effects_from: Path | None):
    """The run folder (opened), the chunk store results are written to, and the store stored
    effects are read from (the folder's, or another run's without a folder)."""
    if out_dir is not None:
        # the old run stays whole until the new one is complete and swapped in
        folder = RunFolder(out_dir).open(
            run_key(plan), plan.bounds, force=plan.config.force, effects_from=effects_from
        )
        return folder, folder.store, folder.store
    if effects_from is not None:
        return None, None, ChunkStore(Path(effects_from), run_key(plan), plan.bounds)
    return None, None, None


def _progress(config, desc: str):
    """A progress bar over a stage's share of work done (``update`` takes shares of 1)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=1.0,
        desc=desc,
        disable=not config.progress,
        leave=False,
        bar_format="{l_bar}{bar}| {elapsed}<{remaining}",
    )


def global_settings(plan: RunPlan, merged: ChunkResult) -> dict:
    """The keyword arguments of ``aggregate.global_effects`` for a run's merged chunks."""
    config, names = plan.config, plan.feature_names
    return dict(
        method=config.meta_method,
        test=config.meta_test,
        level=config.level,
        samples=merged.samples,
        exposures=[names[i] for i in plan.exposures],
        outcomes=[names[i] for i in plan.outcomes],
        min_sequences=config.min_sequences,
        spread=dict(zip(names, plan.spread)),
        min_effect=config.min_effect,
    )


def _aggregate(plan: RunPlan, merged: ChunkResult, timings: dict) -> tuple[pd.DataFrame, list]:
    """Stage 4 on the merged chunks: the global table and the run's plain warnings (logged)."""
    config, local_table = plan.config, merged.local
    if not ((local_table["reason"] == 0) & np.isfinite(local_table["estimate"])).any():
        raise DeepMRInputError(
            f"no sequence had at least {config.min_instruments} instruments for any pair; "
            "lower --z, widen --window, or use more or other sequences"
        )
    tick = time.perf_counter()
    with _progress(config, "Deep MR: global effects") as bar:
        global_table = aggregate.global_effects(
            merged.local,
            plan.n_sequences,
            on_progress=executors.clamped_update(bar),
            **global_settings(plan, merged),
        )
    timings["meta"] = time.perf_counter() - tick
    warns = aggregate.plain_warnings(
        global_table,
        calibrated=plan.calibration is not None,
        n_masked=merged.n_masked,
        level=config.level,
    )
    if plan.sequence_source == RANDOM_SOURCE:
        warns.insert(0, RANDOM_WARNING)
    warns += _spread_warnings(plan)
    if merged.flat:
        warns.append(
            f"{', '.join(merged.flat)}: no mutation inside the window changes "
            f"{'it' if len(merged.flat) == 1 else 'them'} in any model sample (a constant "
            "output, or one that reads only outside the window); left out of every pair. "
            "Choose a window where it responds, or leave it out of --exposures/--outcomes."
        )
    n_bad_seq, n_bad_mut = merged.n_nonfinite
    if n_bad_mut:
        warns.append(
            f"{n_bad_mut} mutants of {n_bad_seq} sequences had NaN or inf predictions "
            "and were left out (--mask-nonfinite)."
        )
    for w in warns:
        logger.warning(w)
    return global_table, warns


def _spread_warnings(plan: RunPlan) -> list[str]:
    """What cannot run because features do not vary over the reference sequences (identical
    sequences, or one): the instrument floor and a directionality check in those units.

    Returns
    -------
    list of str
        Plain-words warnings (none when every used feature varies).
    """
    config = plan.config
    spread = np.asarray(plan.spread, dtype=np.float64)
    flat = [
        plan.feature_names[i] for i in plan.used if not (np.isfinite(spread[i]) and spread[i] > 0)
    ]
    if not flat:
        return []
    shown = ", ".join(flat[:5]) + (f" and {len(flat) - 5} more" if len(flat) > 5 else "")
    skipped = []
    if config.directional and config.direction_scale == "reference":
        skipped.append("the directionality check (instruments were not checked for direction)")
    if config.floor > 0:
        skipped.append("the floor on noise-level exposure effects")
    if not skipped:
        return []
    return [
        f"{shown}: the predictions do not vary over the reference sequences (identical "
        f"sequences, or a single one), so {' and '.join(skipped)} could not run for pairs with "
        f"{'it' if len(flat) == 1 else 'them'}. Give varied reference sequences"
        + (" or --direction-scale effects." if "directionality" in skipped[0] else ".")
    ]


def _record(plan: RunPlan, resumed, warns, truth, started: float) -> RunRecord:
    if plan.model is not None:  # how each member's ISM ran (a reanalysis has no model)
        plan.identity["ism"] = [
            {"member": i, "path": m.ism_path, "reason": m.ism_reason}
            for i, m in enumerate(getattr(plan.model, "members", ()))
            if hasattr(m, "ism_path")
        ]
    config, names, n_seq = plan.config, plan.feature_names, plan.n_sequences
    cal = plan.calibration
    return RunRecord(
        deepmr_kipoi_version=__version__,
        config=config.to_dict(),
        config_hash=plan.config_hash,
        model=plan.identity,
        features=FeatureSet(
            tuple(names[i] for i in plan.exposures), tuple(names[i] for i in plan.outcomes)
        ),
        sequences=SequenceSet(
            n_seq, int(plan.onehot.shape[1]), plan.window, plan.seq_ids[:1000], plan.sequence_source
        ),
        seeds={"sequences": config.seed, "model": config.seed, "bootstrap": config.seed},
        chunks=ChunkInfo(len(plan.bounds), plan.chunk_size, tuple(resumed)),
        calibration=None
        if cal is None
        else {
            "source": cal.source,
            "method": config.calibration_method,
            "se_scale": dict(cal.scale_items()),
        },
        warnings=tuple(warns),
        truth=None if truth is None else truth.to_dict(orient="records"),
        versions=versions(),
        platform=platform.platform(),
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    )


def _feature_models(model) -> tuple[str, ...]:
    """The panel label of every feature of a model panel; empty for one model."""
    labels, groups = getattr(model, "labels", None), getattr(model, "feature_groups", None)
    if labels is None or groups is None:
        return ()
    return tuple(labels[g] for g in groups)


def run_key(plan: RunPlan) -> RunKey:
    """What the plan's results are computed from (the key every chunk file carries)."""
    weights = weights_signature(plan.identity)
    return RunKey(
        plan.config_hash,
        None if weights is None else tuple(weights),
        dict(plan.inputs),
        plan.effects_hash or None,
    )


def _run_chunks(
    plan: RunPlan,
    store: ChunkStore | None,
    reader: ChunkStore | None,
    created: list,
    computed: list,
    on_chunk,
    timings,
    model_given: bool = False,
):
    """Read back the finished chunks, analyse those whose ISM effects are stored, compute the
    others on the config's executor and write each as it arrives; return the chunk results in chunk
    order and the resumed indices."""
    found: dict[int, ChunkResult] = {}
    for chunk_index in range(len(plan.bounds)):
        read = store.read(chunk_index) if store is not None and store.is_done(chunk_index) else None
        back = (
            None if read is None else ChunkResult.from_file(read[0], read[1], plan.config.methods)
        )
        if back is not None:
            found[chunk_index] = back
    resumed = sorted(found)
    if store is not None:
        store.write_run_effects(plan.feature_names, plan.seq_ids, plan.onehot, plan.spread)
    reused = []
    for i in [i for i in range(len(plan.bounds)) if i not in found and reader is not None]:
        arrays = reader.read_effects(i, plan.used)
        if arrays is not None:
            found[i] = analyse_chunk(plan, i, effects_from_arrays(arrays), timings)
            reused.append(i)
            _keep(store, i, found[i], created, computed, on_chunk, len(plan.bounds))
    if reused:
        logger.info("%d chunk(s) analysed from stored ISM effects (no model run)", len(reused))
    todo = [i for i in range(len(plan.bounds)) if i not in found]
    if todo and plan.model is None:
        raise StoredChunksIncomplete(
            f"the stored ISM effects do not cover chunk {todo[0]} (sequences {plan.bounds[todo[0]]}); "
            "run the model again (deepmr run) instead of reanalysing"
        )
    executor = executors.executor_for(plan.config, model_given=model_given)
    computing = executor.map_chunks(plan, todo) if todo else iter(())
    while True:
        with (
            user_code_errors()
        ):  # the model's code runs here; on_chunk's exceptions pass as they are
            item = next(computing, None)
        if item is None:
            break
        chunk_index, result, chunk_timings = item
        for key, value in chunk_timings.items():
            timings[key] = timings.get(key, 0.0) + value
        if store is not None and result.effects is not None:
            created.append(store.write_effects(chunk_index, result.effects))
        found[chunk_index] = dataclasses.replace(result, effects=None)
        _keep(store, chunk_index, found[chunk_index], created, computed, on_chunk, len(plan.bounds))
    chunks = [found[i] for i in range(len(plan.bounds))]
    use = effects_cache.merge_use([c.cache_use for c in chunks])
    effects_cache.record(plan.identity, plan.config, use)  # run.json's model.effects_cache
    return chunks, resumed


def _keep(store, chunk_index: int, result: ChunkResult, created, computed, on_chunk, n: int):
    """Write a chunk that was just computed or analysed, and report it."""
    computed.append(chunk_index)
    if store is not None:
        created += store.write(chunk_index, result.local, result.file_arrays())
    if on_chunk is not None:
        on_chunk(chunk_index, n)


def figures_digest(plan: RunPlan, global_table, local_table, arrays: dict, truth) -> str:
    """md5 of everything a run's figures show: the tables, the kept effects, the truth, the
    calibration and the display settings."""
    h = hashlib.md5()
    for table in (global_table, local_table, truth):
        if table is not None:
            h.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
            h.update(",".join(map(str, table.columns)).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(np.asarray(arrays[key])).tobytes())
    cal = plan.calibration
    shown = {
        "level": plan.config.level,
        "n_examples": plan.config.n_examples,
        "features": [plan.feature_names, plan.used, plan.exposures],
        "sequences": plan.seq_ids,
        "calibration": None
        if cal is None
        else [cal.scale_items(), getattr(cal, "curve_before", None) is not None],
        "version": __version__,
    }
    h.update(json.dumps(shown, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _earlier_figures(plan: RunPlan, stage: Path, digest: str) -> list | None:
    """The figures of the run the folder holds, linked into the stage, when they show exactly what
    this run's would (same digest); None when they must be drawn."""
    from deepmr_kipoi.report.figures import FigureFile
    from deepmr_kipoi.run.contents import link_or_copy

    final = Path(os.path.realpath(plan.config.out))
    try:
        old = json.loads((final / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    names, info = old.get("figures") or [], old.get("figure_info") or []
    if old.get("figures_digest") != digest or len(names) != len(info) or not names:
        return None
    if not all((final / n).is_file() and ".." not in Path(n).parts for n in names):
        return None
    figs = []
    for name, meta in zip(names, info):
        link_or_copy(final / name, stage / name)
        pair = tuple(meta["pair"]) if meta.get("pair") else None
        figs.append(FigureFile(stage / name, meta["title"], meta["caption"], meta["section"], pair))
    logger.info("figures unchanged since the folder's last run: kept, not drawn again")
    return figs


def _write_outputs(
    plan: RunPlan,
    out_dir: Path,
    global_table,
    local_table,
    arrays,
    record: RunRecord,
    truth,
    timings,
    created,
    started,
) -> RunRecord:
    import yaml

    from deepmr_kipoi.report import figures, page

    config, names = plan.config, plan.feature_names
    tick = time.perf_counter()
    for name in ("global_effects.csv", "global_effects.parquet", "local_effects.parquet"):
        path = out_dir / name
        if not path.exists():
            created.append(path)
        results.write_table(global_table if name.startswith("global") else local_table, path)
    if plan.save_effects and "mean" in arrays:
        path = out_dir / "effects.h5"
        if not path.exists():
            created.append(path)
        results.write_effects_h5(
            path,
            mean=arrays["mean"],
            se=arrays["se"],
            reference=arrays["reference"],
            alt_bases=arrays["alt_bases"],
            positions=arrays["positions"],
            sequence_ids=[plan.seq_ids[i] for i in arrays["sequence_index"]],
            feature_names=[names[i] for i in plan.used],
            attrs={
                "se_calibrated": plan.calibration is not None,
                "model": plan.identity.get("name"),
            },
        )
    timings["tables"] = time.perf_counter() - tick
    stop_point("outputs")
    tick = time.perf_counter()
    figs = []
    # the digest hashes the whole local table: only worth it when there are figures to keep
    digest = (
        figures_digest(plan, global_table, local_table, arrays, truth) if config.figures else ""
    )
    if config.figures:
        figs = _earlier_figures(plan, out_dir, digest)
    if config.figures and figs is None:
        kept = figures.DetailInputs(
            local_table,
            arrays,
            tuple(names),
            tuple(plan.used),
            tuple(plan.seq_ids),
            tuple(record.features.exposures),
            _feature_models(plan.model),
        )
        figs = figures.make_figures(
            out_dir,
            global_table,
            kept,
            calibration=plan.calibration,
            truth=truth,
            level=config.level,
            n_examples=config.n_examples,
            created=created,
        )
    timings["figures"] = time.perf_counter() - tick
    record = dataclasses.replace(
        record,
        figures=tuple(str(f.path.relative_to(out_dir)) for f in figs),
        figures_digest=digest,
        figure_info=tuple(
            {"title": f.title, "caption": f.caption, "section": f.section, "pair": f.pair}
            for f in figs
        ),
    )
    if config.report:
        tick = time.perf_counter()
        path = out_dir / "report.html"
        if not path.exists():
            created.append(path)
        page.write_report(
            path, record, global_table, figs, calibration=plan.calibration, truth=truth
        )
        timings["report"] = time.perf_counter() - tick
    path = out_dir / "config.yaml"
    if not path.exists():
        created.append(path)
    results.write_text(
        path,
        "# resolved Deep MR config: deepmr run --config config.yaml\n"
        + yaml.safe_dump(portable_config(config), sort_keys=False),
    )
    timings["total"] = time.time() - started
    record = dataclasses.replace(
        record,
        timings_s={k: round(v, 3) for k, v in timings.items()},
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    path = out_dir / "run.json"
    if not path.exists():
        created.append(path)
    results.write_json(path, record.to_dict())
    return record
