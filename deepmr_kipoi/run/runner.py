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
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import __version__, instruments, results, validation
from deepmr_kipoi.errors import DeepMRInputError, user_code_errors
from deepmr_kipoi.run import aggregate, checks, executors, inputs
from deepmr_kipoi.run.chunk import ChunkResult, compute_chunk  # noqa: F401 - runner.compute_chunk stays importable
from deepmr_kipoi.run.config import (
    AUTO_EFFECTS_LIMIT,
    RunConfig,
    config_hash,
    portable_config,
    validate,
    weights_signature,
)
from deepmr_kipoi.run.fingerprint import input_fingerprint
from deepmr_kipoi.run.folder import ChunkStore, RunFolder, RunKey, stop_point
from deepmr_kipoi.run.record import ChunkInfo, FeatureSet, RunRecord, SequenceSet, versions

logger = logging.getLogger(__name__)


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
    if len(feature_names) == 1:
        raise DeepMRInputError(
            f"this model has one output ({feature_names[0]}); put it in a panel with another "
            "model: --model a=... --model b=..."
        )
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
    save_effects = config.save_effects
    if save_effects == "auto":
        save_effects = n_seq * (window[1] - window[0]) * 3 * len(used) <= AUTO_EFFECTS_LIMIT
    chunk_size = config.chunk_size
    if config.instrument_rule == "pooled" and chunk_size < n_seq:
        logger.info(
            "pooled instrument rule: one chunk of all %d sequences (pooled statistics)", n_seq
        )
        chunk_size = n_seq
    bounds = tuple((a, min(n_seq, a + chunk_size)) for a in range(0, n_seq, chunk_size))
    chash = config_hash(config.replace(chunk_size=chunk_size), identity, feature_names, n_seq)
    reference = checks.reference_predictions(
        model, onehot, config.batch_size, mask=config.mask_nonfinite
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
        bool(save_effects),
        chash,
        spread,
        input_fingerprint(config, identity, seq_ids, onehot),
        inputs.sequence_source(config),
    )


def run(
    config: RunConfig,
    *,
    model=None,
    identity: dict | None = None,
    truth: pd.DataFrame | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
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
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    with user_code_errors():
        plan = make_plan(config, model, identity)
    timings["plan"] = time.perf_counter() - tick
    config = plan.config
    out_dir = Path(config.out) if config.out else None
    created: list[Path] = []
    computed: list[int] = []
    folder = None
    keep_stage = True
    try:
        store = None
        if out_dir is not None:
            # the old run stays whole until the new one is complete and swapped in
            folder = RunFolder(out_dir).open(run_key(plan), plan.bounds, force=config.force)
            store = folder.store
        chunks, resumed = _run_chunks(
            plan, store, created, computed, on_chunk, timings, model_given=model is not None
        )
        merged = ChunkResult.merge(chunks)
        local_table = merged.local
        if not ((local_table["reason"] == 0) & np.isfinite(local_table["estimate"])).any():
            raise DeepMRInputError(
                f"no sequence had at least {config.min_instruments} instruments for any pair; "
                "lower --z, widen --window, or use more or other sequences"
            )
        tick = time.perf_counter()
        names = plan.feature_names
        global_table = aggregate.global_effects(
            local_table,
            plan.n_sequences,
            method=config.meta_method,
            test=config.meta_test,
            level=config.level,
            samples=merged.samples,
            exposures=[names[i] for i in plan.exposures],
            outcomes=[names[i] for i in plan.outcomes],
            min_sequences=config.min_sequences,
        )
        timings["meta"] = time.perf_counter() - tick
        arrays = merged.figure_arrays()
        warns = aggregate.plain_warnings(
            global_table,
            calibrated=plan.calibration is not None,
            n_masked=merged.n_masked,
            level=config.level,
        )
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
        plan.identity["ism"] = [
            {"member": i, "path": m.ism_path, "reason": m.ism_reason}
            for i, m in enumerate(getattr(plan.model, "members", ()))
            if hasattr(m, "ism_path")
        ]
        record = _record(plan, resumed, warns, truth, started)
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
        # a refusal leaves the folder as it was; a bug keeps its chunks for the rerun, and the
        # command line's message says how many
        keep_stage = not isinstance(err, DeepMRInputError)
        err.deepmr_chunks_kept = len(computed) if folder is not None and keep_stage else 0
        raise
    finally:
        if folder is not None:
            folder.close(computed=bool(computed), keep_stage=keep_stage)
    return DeepMRResult(global_table, local_table, config, record, tuple(warns), out_dir)


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


def run_key(plan: RunPlan) -> RunKey:
    """What the plan's results are computed from (the key every chunk file carries)."""
    weights = weights_signature(plan.identity)
    return RunKey(plan.config_hash, None if weights is None else tuple(weights), dict(plan.inputs))


def _run_chunks(
    plan: RunPlan,
    store: ChunkStore | None,
    created: list,
    computed: list,
    on_chunk,
    timings,
    *,
    model_given: bool = False,
):
    """Read back the finished chunks, compute the others on the config's executor and write each
    as it arrives; return the chunk results in chunk order and the resumed indices."""
    found: dict[int, ChunkResult] = {}
    for chunk_index in range(len(plan.bounds)):
        read = store.read(chunk_index) if store is not None and store.is_done(chunk_index) else None
        back = (
            None if read is None else ChunkResult.from_file(read[0], read[1], plan.config.methods)
        )
        if back is not None:
            found[chunk_index] = back
    resumed = sorted(found)
    todo = [i for i in range(len(plan.bounds)) if i not in found]
    executor = executors.executor_for(plan.config, model_given=model_given)
    computing = executor.map_chunks(plan, todo)
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
        computed.append(chunk_index)
        if store is not None:
            created += store.write(chunk_index, result.local, result.file_arrays())
        found[chunk_index] = result
        if on_chunk is not None:
            on_chunk(chunk_index, len(plan.bounds))
    return [found[i] for i in range(len(plan.bounds))], resumed


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
    if config.figures:
        kept = figures.DetailInputs(
            local_table,
            arrays,
            tuple(names),
            tuple(plan.used),
            tuple(plan.seq_ids),
            tuple(record.features.exposures),
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
        record, figures=tuple(str(f.path.relative_to(out_dir)) for f in figs)
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
