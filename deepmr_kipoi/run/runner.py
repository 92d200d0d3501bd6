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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import __version__, results
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import aggregate, inputs, local
from deepmr_kipoi.run.config import (
    AUTO_EFFECTS_LIMIT,
    JACKKNIFE_METHODS,
    JACKKNIFE_MIN_MEMBERS,
    RunConfig,
    config_hash,
    validate,
    weights_signature,
)
from deepmr_kipoi.run.effects import chunk_effects
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
    jackknife : bool
        Whether the leave-one-member-out estimates are computed (deep ensemble of enough members).
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
    jackknife: bool

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
        One row per (exposure, outcome, method): meta-analysis fields (estimate, se, ci_low,
        ci_high, pvalue, qvalue, significant, tau2, i2, q, q_pvalue, pi_low, pi_high, k), the
        model-aware interval (jackknife_se, model_se, model_ci_low, model_ci_high; NaN where not
        computed) and diagnostics (n_sequences, median_instruments, Egger intercept and I^2_GX
        summaries).
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
    leave_one_out : SampleEstimates or None
        Arrays (S, n, E, O, M) over all the chunk's sequences.
    """

    local: pd.DataFrame
    arrays: dict
    leave_one_out: local.SampleEstimates | None


def _jackknife(model, config: RunConfig) -> bool:
    from deepmr_kipoi.predictive import DeepEnsemble

    return (bool(config.model_interval) and isinstance(model, DeepEnsemble)
            and model.n_samples >= JACKKNIFE_MIN_MEMBERS
            and any(m in JACKKNIFE_METHODS for m in config.methods))  # fmt: skip


def make_plan(config: RunConfig, model=None, identity: dict | None = None) -> RunPlan:
    """Validate a config, load its model and inputs, and fix the chunks.

    Parameters
    ----------
    config : RunConfig
    model : PredictiveModel, optional
        Use this model instead of loading ``config.model``.
    identity : dict, optional
        The model's identity when ``model`` is given.

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
    feature_names = tuple(str(f) for f in model.feature_names)
    s = int(getattr(model, "n_samples", 0) or 0)
    if s < 2:
        raise DeepMRInputError(
            f"the model gives {s} prediction per input, so mutation effects have no standard error; "
            "add uncertainty: an ensemble (--uncertainty ensemble, several members) or MC dropout "
            "(--uncertainty mc_dropout --n-samples 30)"
        )
    exposures = inputs.select_features(config.exposures, feature_names, "exposure")
    outcomes = inputs.select_features(config.outcomes, feature_names, "outcome")
    if not any(e != o for e in exposures for o in outcomes):
        raise DeepMRInputError(
            f"exposure and outcome are the same feature ({feature_names[exposures[0]]}); choose "
            "different --exposures and --outcomes"
        )
    seq_ids, onehot = inputs.load_sequences(config, getattr(model, "sequence_length", None))
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
    cal = inputs.load_calibration(config, model, list(feature_names))
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
    return RunPlan(config, model, identity, feature_names, tuple(exposures), tuple(outcomes), used,
                   tuple(seq_ids), onehot, window, cal, chunk_size, bounds, bool(save_effects), chash,
                   _jackknife(model, config))  # fmt: skip


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
    tick = time.perf_counter()
    eff = chunk_effects(plan.model, plan.onehot[a:b], plan.window, batch_size=config.batch_size,
                        per_sample=plan.jackknife, on_progress=on_progress)  # fmt: skip
    if timings is not None:
        timings["ism"] = timings.get("ism", 0.0) + time.perf_counter() - tick
    tick = time.perf_counter()
    ex, oc = list(plan.exposures), list(plan.outcomes)
    step = local.local_step(eff.mean, eff.se, ex, oc, config, chunk=ci, se_scale=plan.se_scale)
    idx = np.arange(a, b)
    frame = local.local_table(step.estimates, idx, plan.seq_ids, ex, oc, plan.feature_names)
    loo = None
    if plan.jackknife:
        loo = local.leave_one_out(eff, ex, oc, config, chunk=ci, se_scale=plan.se_scale)
    if timings is not None:
        timings["mr"] = timings.get("mr", 0.0) + time.perf_counter() - tick
    keep = idx if plan.save_effects else idx[idx < config.n_examples]
    arrays: dict = {"n_masked": np.asarray(eff.n_masked)}
    if len(keep):
        rows = keep - a
        used = list(plan.used)
        arrays.update(
            sequence_index=keep,
            mean=eff.mean[rows][..., used].astype(np.float32),
            se=step.se[rows][..., used].astype(np.float32),
            instrument_mask=step.selection.mask[rows],
            reference=eff.reference[:, rows][..., used].astype(np.float32),
            alt_bases=eff.alt_bases[rows],
            positions=eff.positions,
        )
    return ChunkResult(frame, arrays, loo)


def _chunk_file_arrays(result: ChunkResult) -> dict:
    arrays = dict(result.arrays)
    if result.leave_one_out is not None:
        arrays["loo_estimate"] = result.leave_one_out.estimate
        arrays["loo_se"] = result.leave_one_out.se
    return arrays


def _read_chunk(store: results.ChunkStore, ci: int, plan: RunPlan) -> ChunkResult | None:
    """A finished chunk read back, or None when it lacks what this run needs (then recomputed)."""
    arrays = store.read_arrays(ci) or {"n_masked": np.asarray(0)}
    loo = None
    if plan.jackknife:
        if "loo_estimate" not in arrays:
            return None
        loo = local.SampleEstimates("leave_one_out", tuple(plan.config.methods),
                                    arrays.pop("loo_estimate"), arrays.pop("loo_se"))  # fmt: skip
    return ChunkResult(store.read_local(ci), arrays, loo)


def _merge_arrays(parts: list[dict]) -> dict:
    n_masked = sum(int(p["n_masked"]) for p in parts)
    parts = [p for p in parts if "mean" in p]
    if not parts:
        return {"n_masked": n_masked}
    out = {k: np.concatenate([p[k] for p in parts], axis=0)
           for k in ("sequence_index", "mean", "se", "instrument_mask", "alt_bases")}  # fmt: skip
    out["reference"] = np.concatenate([p["reference"] for p in parts], axis=1)
    out["positions"] = parts[0]["positions"]
    out["n_masked"] = n_masked
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
    try:
        store = None
        if out_dir is not None:
            if out_dir.exists() and not out_dir.is_dir():
                raise DeepMRInputError(f"--out {out_dir} exists and is not a folder; choose another --out")
            if not out_dir.exists():
                out_dir.mkdir(parents=True)
                made_dir = True
            store = results.ChunkStore(out_dir, plan.config_hash, weights=weights_signature(plan.identity))
            if config.force and not store.matches():
                results.clear_outputs(out_dir)
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
        loo = None
        if plan.jackknife:
            loo = local.SampleEstimates.concatenate([c.leave_one_out for c in chunks])
        names = plan.feature_names
        glob = aggregate.global_effects(
            local_table, plan.n_sequences, method=config.meta_method, test=config.meta_test,
            level=config.level, leave_one_out=loo, exposures=[names[i] for i in plan.exposures],
            outcomes=[names[i] for i in plan.outcomes],
        )  # fmt: skip
        timings["meta"] = time.perf_counter() - tick
        arrays = _merge_arrays([c.arrays for c in chunks])
        warns = aggregate.plain_warnings(glob, calibrated=plan.calibration is not None,
                                         n_masked=int(arrays["n_masked"]), level=config.level)  # fmt: skip
        for w in warns:
            logger.warning(w)
        record = _record(plan, resumed, warns, truth, started)
        if out_dir is not None:
            record = _write_outputs(plan, out_dir, glob, local_table, arrays, record, truth,
                                    timings, created, started)  # fmt: skip
        else:
            timings["total"] = time.time() - started
            record = dataclasses.replace(record, timings_s=timings)
    except DeepMRInputError:
        if not computed:
            _clean_up(out_dir, made_dir, created)
        raise
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
        sequences=SequenceSet(n_seq, int(plan.onehot.shape[1]), plan.window, plan.seq_ids[:1000]),
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


def _clean_up(out_dir: Path | None, made_dir: bool, created: list[Path]) -> None:
    if out_dir is None:
        return
    if made_dir:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for p in reversed(created):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


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

    from deepmr_kipoi import figures, report

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
        figs = figures.make_figures(
            out_dir, glob, local_table, arrays, feature_names=names, used=plan.used,
            seq_ids=plan.seq_ids, exposures=record.features.exposures,
            calibration=plan.calibration, truth=truth, level=config.level,
            n_examples=config.n_examples, created=created,
        )  # fmt: skip
    timings["figures"] = time.perf_counter() - tick
    record = dataclasses.replace(record, figures=tuple(str(f.path.relative_to(out_dir)) for f in figs))
    if config.report:
        tick = time.perf_counter()
        path = out_dir / "report.html"
        if not path.exists():
            created.append(path)
        report.write_report(path, record, glob, figs, calibration=plan.calibration, truth=truth)
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
