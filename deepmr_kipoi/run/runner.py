"""The runner: drives a planned run's stages chunk by chunk, resumes, and hands the outputs over.

:func:`run` plans the run (:func:`~deepmr_kipoi.run.plan.make_plan`: every input check before a file
is written), then :func:`run_plan` drives it: the run folder
(:class:`~deepmr_kipoi.run.folder.RunFolder`: the chunk store, where a finished and verified chunk is
skipped on resume, and the stage the outputs are written to and swapped in from, whole), stages
2-3 chunk by chunk on the config's executor (:mod:`deepmr_kipoi.run.executors`,
:func:`~deepmr_kipoi.run.chunk.compute_chunk`), stage 4 (:mod:`deepmr_kipoi.run.aggregate`) with the
run's warnings, and the outputs (:mod:`deepmr_kipoi.run.outputs`).

Errors: any error before a chunk was computed removes what this call created (the run folder itself
when it created it); after that, the chunks already computed stay so the same call resumes, and the
folder keeps its earlier run. An exception raised in the user's own model code becomes a one-line
:class:`~deepmr_kipoi.errors.ModelCodeError`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError, user_code_errors
from deepmr_kipoi.run import aggregate, effects_cache, executors, outputs
from deepmr_kipoi.run.chunk import ChunkResult, analyse_chunk, effects_from_arrays
from deepmr_kipoi.run.chunk_store import StoredChunksIncomplete
from deepmr_kipoi.run.config import RunConfig
from deepmr_kipoi.run.folder import ChunkStore, RunFolder
from deepmr_kipoi.run.plan import RunPlan, make_plan, run_key
from deepmr_kipoi.run.record import RunRecord
from deepmr_kipoi.run.references import RANDOM_SOURCE

logger = logging.getLogger(__name__)

#: The warning of a run on random DNA: its effects are the model's response to sequences it was
#: never trained on.
RANDOM_WARNING = (
    "The reference sequences are random DNA (no FASTA, sequences or dataloader given): the effects "
    "describe the model on sequences unlike its training data; give real sequences for biology."
)


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
    computed: list[int] = []  # chunks computed (or analysed) and written by this call
    folder = None
    try:
        folder, store, reader = _stores(plan, out_dir, effects_from)
        chunks, resumed = _run_chunks(plan, store, reader, computed, on_chunk, timings, model_given)
        merged = ChunkResult.merge(chunks, release=True)  # the chunks' tables are emptied
        global_table, warns = _aggregate(plan, merged, timings)
        n_bad_seq, n_bad_mut = merged.n_nonfinite
        record = outputs.run_record(
            plan, resumed, warns, started, {"sequences": n_bad_seq, "mutants": n_bad_mut}
        )
        if folder is not None:
            tables = outputs.RunTables(global_table, merged.local, merged.figure_arrays())
            record = outputs.write_outputs(
                plan, folder.stage, tables, record, truth, timings, started
            )
            folder.commit()
        else:
            record = outputs.finish_record(record, truth, timings, started)
    except Exception as err:
        # a refusal leaves the folder as it was (RunFolder.close); a bug keeps its chunks for the
        # rerun, and the command line's message says how many
        refused = isinstance(err, DeepMRInputError)
        err.deepmr_chunks_kept = len(computed) if folder is not None and not refused else 0
        raise
    finally:
        if folder is not None:
            folder.close(computed=bool(computed))
    return DeepMRResult(global_table, merged.local, config, record, tuple(warns), out_dir)


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
    settings = aggregate.GlobalSettings(
        method=config.meta_method,
        test=config.meta_test,
        level=config.level,
        min_sequences=config.min_sequences,
        spread=dict(zip(names, plan.spread)),
        min_effect=config.min_effect,
    )
    return dict(
        settings=settings,
        samples=merged.samples,
        exposures=[names[i] for i in plan.exposures],
        outcomes=[names[i] for i in plan.outcomes],
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


def _run_chunks(
    plan: RunPlan,
    store: ChunkStore | None,
    reader: ChunkStore | None,
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
            _keep(store, i, found[i], computed, on_chunk, len(plan.bounds))
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
            store.write_effects(chunk_index, result.effects)
        found[chunk_index] = dataclasses.replace(result, effects=None)
        _keep(store, chunk_index, found[chunk_index], computed, on_chunk, len(plan.bounds))
    chunks = [found[i] for i in range(len(plan.bounds))]
    use = effects_cache.merge_use([c.cache_use for c in chunks])
    effects_cache.record(plan.identity, plan.config, use)  # run.json's model.effects_cache
    return chunks, resumed


def _keep(store, chunk_index: int, result: ChunkResult, computed: list, on_chunk, n: int):
    """Write a chunk that was just computed or analysed, and report it."""
    computed.append(chunk_index)
    if store is not None:
        store.write(chunk_index, result.local, result.file_arrays())
    if on_chunk is not None:
        on_chunk(chunk_index, n)
