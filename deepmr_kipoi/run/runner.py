"""The runner: plans a run, drives the stages chunk by chunk, resumes, and writes the run folder.

:func:`make_plan` does every input check (stage 1) before a file is written and returns a
:class:`RunPlan`, the frozen object the stages share. :func:`compute_chunk` runs stages 2-3 on one
chunk without touching disk. :func:`run` adds the chunk store (``results.ChunkStore``: a finished
chunk is skipped on resume), stage 4 and the outputs (tables, ``effects.h5``, figures, report,
``run.json`` from a :class:`~deepmr_kipoi.run.record.RunRecord`).

Errors: a :class:`~deepmr_kipoi.errors.DeepMRInputError` found before any chunk was computed removes
what this call created (the run folder itself when it created it); after that, and for any other
exception (a bug), the chunks already computed stay so the same call resumes.
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

from deepmr_kipoi import __version__, instruments, results
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import aggregate, checks, guard, inputs, local
from deepmr_kipoi.run.config import (
    AUTO_EFFECTS_LIMIT,
    RunConfig,
    config_hash,
    validate,
    weights_signature,
)
from deepmr_kipoi.run.effects import chunk_effects
from deepmr_kipoi.run.fingerprint import input_fingerprint
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


@dataclass(frozen=True)
class ChunkResult:
    """Stages 2-3 on one chunk.

    Attributes
    ----------
    local : DataFrame
        The chunk's local table.
    arrays : dict
        Arrays kept for figures and ``effects.h5`` (sequences below ``n_examples``, or all with
        ``save_effects``), and ``n_masked``.
    samples : SampleEstimates
        Per-sample local estimates, arrays (S, n, E, O, M) over the chunk's sequences.
    """

    local: pd.DataFrame
    arrays: dict
    samples: local.SampleEstimates


def make_plan(config: RunConfig, model=None, identity: dict | None = None, *,
              sequences: tuple | None = None,
              calibration: inputs.Calibration | None = None) -> RunPlan:  # fmt: skip
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
    if model is None:
        model, identity = inputs.load_model(config)
    else:
        identity = dict(identity or {"name": config.model or type(model).__name__})
        identity.setdefault("n_samples", int(getattr(model, "n_samples", 0) or 0))
        identity.setdefault("n_features", len(model.feature_names))
    from deepmr_kipoi.predictive import move_to_device

    identity = dict(identity)
    identity["device"] = move_to_device(model, config.device)
    feature_names = tuple(str(f) for f in model.feature_names)
    s = int(getattr(model, "n_samples", 0) or 0)
    if s < 2:
        hint = getattr(model, "uncertainty_hint", None) or (
            "an ensemble (--uncertainty ensemble, several members) or MC dropout "
            "(--uncertainty mc_dropout --n-samples 30)")  # fmt: skip
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
    if config.window is None:
        window = (0, length)
    else:
        window = tuple(config.window)
        if window[1] > length:
            raise DeepMRInputError(
                f"ISM window {window[0]}-{window[1]} does not fit sequences of {length} bp; give "
                f"0 <= start < end <= {length}"
            )
    cal = calibration or inputs.load_calibration(config, model, list(feature_names))
    used = tuple(sorted(set(exposures) | set(outcomes)))
    save_effects = config.save_effects
    if save_effects == "auto":
        save_effects = n_seq * (window[1] - window[0]) * 3 * len(used) <= AUTO_EFFECTS_LIMIT
    chunk_size = config.chunk_size
    if config.instrument_rule == "pooled" and chunk_size < n_seq:
        logger.info("pooled instrument rule: one chunk of all %d sequences (pooled statistics)", n_seq)
        chunk_size = n_seq
    bounds = tuple((a, min(n_seq, a + chunk_size)) for a in range(0, n_seq, chunk_size))
    chash = config_hash(config.replace(chunk_size=chunk_size), identity, feature_names, n_seq)
    reference = model.predict_samples(onehot, batch_size=config.batch_size)
    spread = instruments.feature_spread(reference)
    return RunPlan(config, model, identity, feature_names, tuple(exposures), tuple(outcomes), used,
                   tuple(seq_ids), onehot, window, cal, chunk_size, bounds, bool(save_effects), chash,
                   spread, input_fingerprint(config, identity, seq_ids, onehot),
                   inputs.sequence_source(config))  # fmt: skip


def compute_chunk(plan: RunPlan, ci: int, on_progress: Callable[[int], None] | None = None,
                  timings: dict | None = None) -> ChunkResult:  # fmt: skip
    """Effects (stage 2) and local MR (stage 3) of chunk ``ci``; writes nothing.

    Parameters
    ----------
    plan : RunPlan
    ci : int
        Chunk index into ``plan.bounds``.
    on_progress : callable, optional
        Called with the number of sequences done.
    timings : dict, optional
        ``"ism"`` and ``"mr"`` seconds are added to it.

    Returns
    -------
    ChunkResult
    """
    config = plan.config
    a, b = plan.bounds[ci]
    used = list(plan.used)
    at = {f: i for i, f in enumerate(used)}
    tick = time.perf_counter()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # non-finite outputs are
        # checked (and named) just below, so numpy's own warnings about them would only be noise
        eff = chunk_effects(plan.model, plan.onehot[a:b], plan.window, batch_size=config.batch_size,
                            features=used, on_progress=on_progress)  # fmt: skip
    eff, nonfinite = checks.check_outputs(eff, range(len(used)),
                                          [at[e] for e in plan.exposures],
                                          [plan.feature_names[f] for f in used],
                                          mask=config.mask_nonfinite)  # fmt: skip
    if timings is not None:
        timings["ism"] = timings.get("ism", 0.0) + time.perf_counter() - tick
    tick = time.perf_counter()
    # everything below works on the used features only (U of them)
    ex, oc = [at[e] for e in plan.exposures], [at[o] for o in plan.outcomes]
    names = [plan.feature_names[f] for f in used]
    se_scale = None if plan.se_scale is None else plan.se_scale[used]
    mean, se, samples, selection_effects = eff.mean, eff.se, eff.samples, None
    if config.sample_split:
        half = samples.shape[0] // 2
        chosen, samples = samples[:half], samples[half:]
        selection_effects = (chosen.mean(axis=0, dtype=np.float64),
                             chosen.std(axis=0, ddof=1, dtype=np.float64))  # fmt: skip
        mean = samples.mean(axis=0, dtype=np.float64)
        se = samples.std(axis=0, ddof=1, dtype=np.float64)
    samples = local.calibrated_samples(samples, mean, se_scale)
    step = local.local_step(mean, se, ex, oc, config, chunk=ci, se_scale=se_scale,
                            spread=plan.spread[used], selection_effects=selection_effects)  # fmt: skip
    idx = np.arange(a, b)
    frame = local.local_table(step.estimates, idx, plan.seq_ids, ex, oc, names)
    per_sample = local.sample_estimates(samples, step, ex, oc, config, chunk=ci)
    if timings is not None:
        timings["mr"] = timings.get("mr", 0.0) + time.perf_counter() - tick
    keep = idx if plan.save_effects else idx[idx < config.n_examples]
    arrays: dict = {"n_masked": np.asarray(eff.n_masked),
                    "n_nonfinite": np.asarray([nonfinite.n_sequences, nonfinite.n_mutants])}
    if len(keep):
        rows = keep - a
        arrays.update(
            sequence_index=keep,
            mean=mean[rows].astype(np.float32),
            se=step.se[rows].astype(np.float32),
            instrument_mask=step.selection.mask[rows],
            reference=eff.reference[:, rows].astype(np.float32),
            alt_bases=eff.alt_bases[rows],
            positions=eff.positions,
        )
    return ChunkResult(frame, arrays, per_sample)


def _chunk_file_arrays(result: ChunkResult) -> dict:
    arrays = dict(result.arrays)
    arrays["sample_estimate"] = result.samples.estimate
    return arrays


def _read_chunk(store: results.ChunkStore, ci: int, plan: RunPlan) -> ChunkResult | None:
    """A finished chunk read back, or None when it lacks what this run needs (then recomputed)."""
    arrays = store.read_arrays(ci) or {}
    if "sample_estimate" not in arrays:
        return None
    arrays.setdefault("n_masked", np.asarray(0))
    arrays.setdefault("n_nonfinite", np.zeros(2, dtype=np.int64))
    samples = local.SampleEstimates(tuple(plan.config.methods), arrays.pop("sample_estimate"))
    return ChunkResult(store.read_local(ci), arrays, samples)


def _merge_arrays(parts: list[dict]) -> dict:
    n_masked = sum(int(p["n_masked"]) for p in parts)
    n_nonfinite = np.sum([np.asarray(p.get("n_nonfinite", (0, 0))) for p in parts], axis=0)
    parts = [p for p in parts if "mean" in p]
    if not parts:
        return {"n_masked": n_masked, "n_nonfinite": n_nonfinite}
    out = {k: np.concatenate([p[k] for p in parts], axis=0)
           for k in ("sequence_index", "mean", "se", "instrument_mask", "alt_bases")}  # fmt: skip
    out["reference"] = np.concatenate([p["reference"] for p in parts], axis=1)
    out["positions"] = parts[0]["positions"]
    out["n_masked"] = n_masked
    out["n_nonfinite"] = n_nonfinite
    return out


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
    plan = make_plan(config, model, identity)
    timings["plan"] = time.perf_counter() - tick
    config = plan.config
    out_dir = Path(config.out) if config.out else None
    created: list[Path] = []
    made_dir = False
    computed: list[int] = []
    lock = stage = None
    try:
        store = None
        if out_dir is not None:
            guard.check_out_dir(out_dir)
            if not out_dir.exists():
                out_dir.mkdir(parents=True)
                made_dir = True
            lock = guard.RunLock(out_dir).acquire()
            store = _store(plan, out_dir)
            if not store.matches():
                if not config.force:
                    store.prepare(len(plan.bounds))  # refuses, naming what differs
                # the old run stays whole until the new one has succeeded
                stage = guard.staging_dir(out_dir)
                store = _store(plan, stage)
            created += store.prepare(len(plan.bounds), force=config.force)
        chunks, resumed = _run_chunks(plan, store, created, computed, on_chunk, timings,
                                      model_given=model is not None)  # fmt: skip
        local_table = pd.concat([c.local for c in chunks], ignore_index=True)
        if not ((local_table["reason"] == 0) & np.isfinite(local_table["estimate"])).any():
            raise DeepMRInputError(
                f"no sequence had at least {config.min_instruments} instruments for any pair; "
                "lower --z, widen --window, or use more or other sequences"
            )
        tick = time.perf_counter()
        samples = local.SampleEstimates.concatenate([c.samples for c in chunks])
        names = plan.feature_names
        glob = aggregate.global_effects(
            local_table, plan.n_sequences, method=config.meta_method, test=config.meta_test,
            level=config.level, samples=samples, exposures=[names[i] for i in plan.exposures],
            outcomes=[names[i] for i in plan.outcomes],
        )  # fmt: skip
        timings["meta"] = time.perf_counter() - tick
        arrays = _merge_arrays([c.arrays for c in chunks])
        warns = aggregate.plain_warnings(glob, calibrated=plan.calibration is not None,
                                         n_masked=int(arrays["n_masked"]), level=config.level)  # fmt: skip
        n_bad_seq, n_bad_mut = (int(x) for x in arrays["n_nonfinite"])
        if n_bad_mut:
            warns.append(f"{n_bad_mut} mutants of {n_bad_seq} sequences had NaN or inf predictions "
                         "and were left out (--mask-nonfinite).")  # fmt: skip
        for w in warns:
            logger.warning(w)
        plan.identity["ism"] = [
            {"member": i, "path": m.ism_path, "reason": m.ism_reason}
            for i, m in enumerate(getattr(plan.model, "members", ())) if hasattr(m, "ism_path")
        ]  # fmt: skip
        record = _record(plan, resumed, warns, truth, started)
        record = dataclasses.replace(record, nonfinite={"sequences": n_bad_seq, "mutants": n_bad_mut})
        if out_dir is not None:
            record = _write_outputs(plan, stage or out_dir, glob, local_table, arrays, record, truth,
                                    timings, created, started)  # fmt: skip
            if stage is not None:
                guard.swap_in(stage, out_dir)
        else:
            timings["total"] = time.time() - started
            record = dataclasses.replace(record, timings_s=timings)
    except DeepMRInputError:
        if lock is not None:
            lock.release()
        if not computed:
            guard.remove_created(stage or out_dir, made_dir or stage is not None, created)
        raise
    finally:
        if lock is not None:
            lock.release()
    return DeepMRResult(glob, local_table, config, record, tuple(warns), out_dir)


def _record(plan: RunPlan, resumed, warns, truth, started: float) -> RunRecord:
    config, names, n_seq = plan.config, plan.feature_names, plan.n_sequences
    cal = plan.calibration
    return RunRecord(
        deepmr_kipoi_version=__version__,
        config=config.to_dict(),
        config_hash=plan.config_hash,
        model=plan.identity,
        features=FeatureSet(tuple(names[i] for i in plan.exposures),
                            tuple(names[i] for i in plan.outcomes)),  # fmt: skip
        sequences=SequenceSet(n_seq, int(plan.onehot.shape[1]), plan.window, plan.seq_ids[:1000],
                              plan.sequence_source),
        seeds={"sequences": config.seed, "model": config.seed, "bootstrap": config.seed},
        chunks=ChunkInfo(len(plan.bounds), plan.chunk_size, tuple(resumed)),
        calibration=None if cal is None else {
            "source": cal.source, "method": config.calibration_method,
            "se_scale": dict(cal.scale_items()),
        },  # fmt: skip
        warnings=tuple(warns),
        truth=None if truth is None else truth.to_dict(orient="records"),
        versions=versions(),
        platform=platform.platform(),
        started=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
    )


def _store(plan: RunPlan, folder: Path) -> results.ChunkStore:
    return results.ChunkStore(folder, plan.config_hash, weights=weights_signature(plan.identity),
                              inputs=plan.inputs)  # fmt: skip


def _run_chunks(plan: RunPlan, store, created: list, computed: list, on_chunk, timings, *,
                model_given: bool = False):  # fmt: skip
    """Compute (or read back) every chunk; return the chunk results and the resumed indices."""
    from tqdm.auto import tqdm

    if plan.config.executor == "dask":
        from deepmr_kipoi.run import executors

        # the stage functions are handed over: executors never imports the runner
        return executors.run_chunks_dask(plan, store, created, computed, on_chunk, timings,
                                         model_given=model_given, compute=compute_chunk,
                                         read_back=_read_chunk, file_arrays=_chunk_file_arrays)  # fmt: skip

    chunks: list[ChunkResult] = []
    resumed: list[int] = []
    bar = tqdm(total=plan.n_sequences, unit="seq", desc="Deep MR",
               disable=not plan.config.progress, leave=False)  # fmt: skip
    try:
        for ci, (a, b) in enumerate(plan.bounds):
            if store is not None and store.is_done(ci):
                back = _read_chunk(store, ci, plan)
                if back is not None:
                    resumed.append(ci)
                    chunks.append(back)
                    bar.update(b - a)
                    continue
            result = compute_chunk(plan, ci, on_progress=bar.update, timings=timings)
            computed.append(ci)
            if store is not None:
                created += store.write(ci, result.local, _chunk_file_arrays(result))
            chunks.append(result)
            if on_chunk is not None:
                on_chunk(ci, len(plan.bounds))
    finally:
        bar.close()
    return chunks, resumed


def _write_outputs(plan: RunPlan, out_dir: Path, glob, local_table, arrays, record: RunRecord,
                   truth, timings, created, started) -> RunRecord:  # fmt: skip
    import yaml

    from deepmr_kipoi.report import figures, page

    config, names = plan.config, plan.feature_names
    tick = time.perf_counter()
    for name in ("global_effects.csv", "global_effects.parquet", "local_effects.parquet"):
        path = out_dir / name
        if not path.exists():
            created.append(path)
        results.write_table(glob if name.startswith("global") else local_table, path)
    if plan.save_effects and "mean" in arrays:
        path = out_dir / "effects.h5"
        if not path.exists():
            created.append(path)
        results.write_effects_h5(
            path, mean=arrays["mean"], se=arrays["se"], reference=arrays["reference"],
            alt_bases=arrays["alt_bases"], positions=arrays["positions"],
            sequence_ids=[plan.seq_ids[i] for i in arrays["sequence_index"]],
            feature_names=[names[i] for i in plan.used],
            attrs={"se_calibrated": plan.calibration is not None,
                   "model": plan.identity.get("name")},
        )  # fmt: skip
    timings["tables"] = time.perf_counter() - tick
    tick = time.perf_counter()
    figs = []
    if config.figures:
        kept = figures.KeptEffects(local_table, arrays, tuple(names), tuple(plan.used),
                                   tuple(plan.seq_ids), tuple(record.features.exposures))  # fmt: skip
        figs = figures.make_figures(
            out_dir, glob, kept, calibration=plan.calibration, truth=truth, level=config.level,
            n_examples=config.n_examples, created=created,
        )  # fmt: skip
    timings["figures"] = time.perf_counter() - tick
    record = dataclasses.replace(record, figures=tuple(str(f.path.relative_to(out_dir)) for f in figs))
    if config.report:
        tick = time.perf_counter()
        path = out_dir / "report.html"
        if not path.exists():
            created.append(path)
        page.write_report(path, record, glob, figs, calibration=plan.calibration, truth=truth)
        timings["report"] = time.perf_counter() - tick
    path = out_dir / "config.yaml"
    if not path.exists():
        created.append(path)
    results.write_text(path, "# resolved Deep MR config: deepmr run --config config.yaml\n"
                       + yaml.safe_dump(config.to_dict(), sort_keys=False))  # fmt: skip
    timings["total"] = time.time() - started
    record = dataclasses.replace(record, timings_s={k: round(v, 3) for k, v in timings.items()},
                                 finished=time.strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    path = out_dir / "run.json"
    if not path.exists():
        created.append(path)
    results.write_json(path, record.to_dict())
    return record
