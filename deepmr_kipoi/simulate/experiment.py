"""The simulation experiment: rounds of simulate -> train -> Deep MR -> compare with the truth.

One round (per regime): draw the data of the round's true parameters (exposure, outcome and a
bystander feature with its own motif and no causal link), train the ensemble on the training
sequences, fit the calibration on separate held-out labelled sequences, and run Deep MR on the
analysed sequences (a third set, with every motif embedded) through the same stages a ``deepmr
run`` uses (``run.plan.make_plan``, ``compute_chunk``, ``run.aggregate.global_effects``): every
ordered pair of the three features, the default instrument rules, the headline inference over
sequences and ensemble members, and the meta-analysis. Each pair's estimate is compared with its
truths (``scoring`` module: the learnable truth the intervals are scored on, and the paper's).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace

import numpy as np

from deepmr_kipoi import results
from deepmr_kipoi.simulate import cache as _cache
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import scoring
from deepmr_kipoi.simulate.config import (
    CALIBRATIONS,
    METHODS,
    REPLICATES,
    ExperimentConfig,
    round_parameters,
)
from deepmr_kipoi.simulate.truth import cached_truth_table, true_locals

logger = logging.getLogger(__name__)

#: ``ExperimentConfig`` and its constants live in :mod:`deepmr_kipoi.simulate.config`, the truths
#: in :mod:`deepmr_kipoi.simulate.truth`; they are importable from here too.
__all__ = [
    "CALIBRATIONS",
    "METHODS",
    "ExperimentConfig",
    "ExperimentResult",
    "RoundResult",
    "analyse_round",
    "round_parameters",
    "run_experiment",
    "run_round",
    "true_locals",
]


def _rngs(config: ExperimentConfig, round_index: int, regime: str) -> list[np.random.Generator]:
    ss = np.random.SeedSequence([config.seed, 1, round_index, gen.REGIMES.index(regime)])
    return [np.random.default_rng(s) for s in ss.spawn(3)]


@dataclass(frozen=True)
class RoundResult:
    """Results of one (round, regime).

    Attributes
    ----------
    round, regime : int, str
    params : RoundParameters
    globals : list of dict
        One record per (MR method, ordered pair): the global table's headline, direction and
        meta-analysis columns, the pair's role and truths (``scoring``), the round's parameters.
    locals : pandas.DataFrame
        One row per (analysed sequence, method, ordered pair): id, estimate, se, ci_low,
        ci_high, n_instruments, true_local (learnable), true_local_paper.
    calibration_scale : tuple of float
        ``se_scale`` per feature (1 without calibration).
    timings : dict of str -> float
        Seconds per stage.
    """

    round: int
    regime: str
    params: gen.RoundParameters
    globals: list
    locals: object
    calibration_scale: tuple
    timings: dict


def _engine_config(config: ExperimentConfig, features, n_sequences: int):
    """The Deep MR run settings of one round: every feature pair, one chunk, nothing written."""
    from deepmr_kipoi.run.config import RunConfig

    return RunConfig(
        model="simulation",
        exposures=tuple(features),
        outcomes=tuple(features),
        methods=tuple(config.methods),
        z=config.z,
        min_instruments=config.min_instruments,
        meta_method=config.meta_method,
        chunk_size=max(1, n_sequences),
        seed=config.seed,
        floor=config.floor,
        directional=config.directional,
        one_per_position=config.one_per_position,
        sample_split=config.sample_split,
        min_effect=config.min_effect,
        save_effects=True,
        figures=False,
        report=False,
        progress=False,
    )


def _analysis_config(sim: gen.SimulationConfig) -> gen.SimulationConfig:
    """The analysed sequences carry every motif (the bystander's and, in the pleiotropy regime,
    the shared one too, where there is room for it)."""
    sim = replace(sim, shared_motif_prob=1.0)
    return replace(sim, confounder_motif_prob=1.0) if sim.bystander_gamma > 0 else sim


def _training_seed(config: ExperimentConfig, round_index: int, regime: str) -> int:
    return config.seed * 100_003 + round_index * 10 + gen.REGIMES.index(regime)


def _round_model(
    round_index: int, regime: str, config: ExperimentConfig, train_data, cache_dir: str | None
):
    """The job's ensemble: read from the model cache, else trained (and cached).

    ``train_data``: a callable returning the training ``SimulatedData`` (only called to train).
    Returns ``(PredictiveModel, from_cache)``.
    """
    if cache_dir is not None:
        cached = _cache.load_model(cache_dir, round_index, regime)
        if cached is not None:
            return cached, True
    from deepmr_kipoi.simulate.train import train_ensemble

    train = train_data()
    tc = replace(config.training, seed=_training_seed(config, round_index, regime))
    ens = train_ensemble(
        train.onehot,
        train.labels,
        model_config=config.model,
        train_config=tc,
        feature_names=config.simulation.features,
    )
    if cache_dir is not None:
        _cache.save_model(cache_dir, round_index, regime, ens)
    return ens.to_predictive(), False


def _round_calibration(
    model, cal, config: ExperimentConfig, cache_dir: str | None, job: tuple, params
):
    """The calibration fit of a job (None without calibration): cached under its settings."""
    from deepmr_kipoi.calibration import LabelledSequences, fit_calibration

    if config.calibration == "none":
        return None
    features = config.simulation.features
    key = {
        "calibration": config.calibration,
        "aleatoric_variance": config.aleatoric_variance,
        "n_calibration": config.n_calibration,
    }
    if cache_dir is not None:
        cached = _cache.load_calibration(cache_dir, *job, key)
        if cached is not None:
            return cached
    labelled = LabelledSequences(
        cal().onehot, cal().labels, tuple(features), source="calibration sequences"
    )
    fit = fit_calibration(
        model,
        labelled,
        features,
        method=config.calibration,
        aleatoric_variance=_label_noise(cal(), config, job, params),
    )
    if cache_dir is not None:
        _cache.save_calibration(cache_dir, *job, key, fit)
    return fit


def _label_noise(
    cal: gen.SimulatedData, config: ExperimentConfig, job: tuple, params: gen.RoundParameters
):
    """The aleatoric variance sigma scaling removes: assumed, or from a replicate measurement
    of the calibration sequences (its own random stream, so the job's other data are unchanged)."""
    if config.aleatoric_variance != REPLICATES:
        return config.aleatoric_variance
    from deepmr_kipoi.calibration import replicate_noise_variance
    from deepmr_kipoi.simulate.replicates import replicate_labels

    round_index, regime = job
    seeds = np.random.SeedSequence([config.seed, 2, round_index, gen.REGIMES.index(regime)])
    replicate = replicate_labels(cal, params, config.simulation, np.random.default_rng(seeds))
    return replicate_noise_variance(cal.labels, replicate)


def run_round(
    round_index: int,
    regime: str,
    params: gen.RoundParameters,
    config: ExperimentConfig,
    motif_set: gen.MotifSet | None = None,
    model=None,
    cache_dir: str | None = None,
) -> RoundResult:
    """Simulate, train, run Deep MR and compare with the truth for one (round, regime).

    Parameters
    ----------
    round_index : int
    regime : str
    params : RoundParameters
    config : ExperimentConfig
    motif_set : MotifSet, optional
    model : PredictiveModel, optional
        Use this model (features named as ``config.simulation.features``, Anscombe scale) instead
        of training one, e.g. to check the chain on a model with a known effect.
    cache_dir : str, optional
        Model cache folder (``cache`` module): the ensemble and calibration fit are read from it
        when there, else trained/fitted and written to it.

    Returns
    -------
    RoundResult
        Its records carry ``model_cached`` (the ensemble was read from the cache, not trained).
    """
    from functools import lru_cache

    ms = motif_set or gen.MotifSet.from_config(config.simulation)
    sim = config.simulation
    timings = {}
    r_train, r_cal, r_an = _rngs(config, round_index, regime)
    tag = f"r{round_index:03d}_{regime}_"
    t0 = time.perf_counter()
    an = gen.simulate(
        config.n_analysis,
        params,
        _analysis_config(sim),
        regime,
        r_an,
        motif_set=ms,
        embedding="both",
        id_prefix=tag + "seq",
    )

    # the training and calibration sets come from their own streams: simulated only when needed
    def train_data():
        return gen.simulate(
            config.n_train, params, sim, regime, r_train, motif_set=ms, id_prefix=tag + "train"
        )

    @lru_cache(maxsize=1)
    def cal_data():
        return gen.simulate(
            config.n_calibration, params, sim, regime, r_cal, motif_set=ms, id_prefix=tag + "cal"
        )

    timings["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from_cache = model is not None
    if model is None:
        model, from_cache = _round_model(round_index, regime, config, train_data, cache_dir)
    timings["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cal_fit = _round_calibration(model, cal_data, config, cache_dir, (round_index, regime), params)
    timings["calibrate"] = time.perf_counter() - t0
    result = analyse_round(
        round_index, regime, params, config, (ms, an), (model, cal_fit), timings, cache_dir
    )
    for rec in result.globals:
        rec["model_cached"] = bool(from_cache)
    return result


def _deep_mr(config: ExperimentConfig, model, an, cal_fit, tag: str, effects_cache=None):
    """Deep MR on the analysed sequences as ``deepmr run`` does it: (chunk, global table).

    The stages and their settings are the run's own (``plan.make_plan``,
    ``chunk.compute_chunk`` or ``chunk.analyse_chunk`` on stored effects,
    ``aggregate.global_effects`` with ``runner.global_settings``); what ``pipeline.run`` adds
    around them is left out on purpose: the run folder, figures, warnings and record (a round
    is scored, not reported), its refusal of a run without any local fit (a degenerate round is
    a result to count, not an error), and its calibration from a file (the round's calibration
    is fitted in memory on its own held-out labels); the ISM effects are cached per round and
    regime in the experiment's job cache.

    ``effects_cache`` is ``(cache_dir, round_index, regime)``: the job's ISM effects are read
    from there when cached (the model is not run again) and written there otherwise.
    """
    from deepmr_kipoi.run import aggregate, runner
    from deepmr_kipoi.run.chunk import compute_chunk
    from deepmr_kipoi.run.plan import make_plan

    features = config.simulation.features
    run_config = _engine_config(config, features, len(an))
    plan = make_plan(
        run_config,
        model,
        {"name": f"simulation {tag}"},
        sequences=(an.ids, an.onehot),
        calibration=cal_fit,
    )
    if effects_cache is None or effects_cache[0] is None:
        chunk = compute_chunk(plan, 0)
    else:
        chunk = _cached_chunk(plan, effects_cache)
    # the global stage with the settings deepmr run gives it (runner.global_settings)
    global_table = aggregate.global_effects(
        chunk.local, len(an), **runner.global_settings(plan, chunk)
    )
    return chunk, global_table


def _cached_chunk(plan, effects_cache):
    """The job's one chunk from its cached ISM effects, computing and caching them if absent."""
    from deepmr_kipoi.run import chunk as chunk_stage

    cache_dir, round_index, regime = effects_cache
    key = _cache.effects_key(plan.onehot, plan.window, plan.used)
    arrays = _cache.load_effects(cache_dir, round_index, regime, key)
    if arrays is None:
        chunk = chunk_stage.compute_chunk(plan, 0, keep_effects=True)
        _cache.save_effects(cache_dir, round_index, regime, key, chunk.effects)
        return chunk
    return chunk_stage.analyse_chunk(plan, 0, chunk_stage.effects_from_arrays(arrays))


def _pooled(num, den) -> float:
    """``sum(num) / sum(den)`` (NaN without any exposure change)."""
    d = float(np.sum(den))
    return float(np.sum(num)) / d if d > 0 else np.nan


def analyse_round(
    round_index: int,
    regime: str,
    params: gen.RoundParameters,
    config: ExperimentConfig,
    data: tuple,
    fitted: tuple,
    timings: dict,
    cache_dir: str | None = None,
) -> RoundResult:
    """Deep MR on one job's analysed sequences and the comparison with the truth.

    Parameters
    ----------
    round_index, regime, params, config
        As :func:`run_round`.
    data : tuple
        ``(MotifSet, SimulatedData)`` of the analysed sequences.
    fitted : tuple
        ``(PredictiveModel, calibration.Calibration or None)``: the job's ensemble and its
        calibration fit.
    timings : dict
        Seconds of the earlier stages; this function adds ``deep_mr`` and ``oracle``.
    cache_dir : str, optional
        The job cache (``OUT/models``): the ISM effects are read from it when cached there and
        written to it otherwise (``cache.save_effects``).

    Returns
    -------
    RoundResult
        One record per (method, ordered pair) with every column of the global table (the
        ``verdict`` columns too, where the engine has them), the role, and the truths pooled over
        the sequences the estimate used (those with a local fit): ``truth`` (learnable),
        ``truth_paper``, and ``truth_mean_ratio`` (the former mean of per-sequence ratios).
    """
    ms, an = data
    model, cal_fit = fitted
    features = config.simulation.features
    tag = f"r{round_index:03d}_{regime}_"
    t0 = time.perf_counter()
    chunk, global_table = _deep_mr(
        config, model, an, cal_fit, tag, (cache_dir, round_index, regime)
    )
    timings["deep_mr"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    truth = cached_truth_table(params, config, ms, an, (cache_dir, round_index, regime))
    timings["oracle"] = time.perf_counter() - t0
    loc = _local_table(chunk.local, an.ids, truth)
    loc.insert(0, "regime", regime)
    loc.insert(0, "round", round_index)
    usable = (loc["reason"] == 0) & np.isfinite(loc["estimate"])
    scale = cal_fit.se_scale if cal_fit is not None else np.ones(len(features))
    job = {"round": round_index, "regime": regime}
    records = [
        _pair_record(job, row, loc[usable], params, len(an))
        for row in global_table.to_dict("records")
    ]
    for rec in records:
        rec.update({f"calibration_scale_{f}": float(s) for f, s in zip(features, scale)})
        rec.update({f"seconds_{k}": v for k, v in timings.items()})
    return RoundResult(
        round=round_index,
        regime=regime,
        params=params,
        globals=records,
        locals=loc,
        calibration_scale=tuple(float(s) for s in scale),
        timings=timings,
    )


#: Columns of a job's local table taken from the engine's (before the truths are joined).
_LOCAL_COLUMNS = (
    "id",
    "exposure",
    "outcome",
    "method",
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "n_instruments",
    "reason",
)


def _local_table(local, ids, truth):
    """The engine's local table by sequence id and feature names, with the truths joined."""
    key = ["id", "exposure", "outcome"]
    loc = local.assign(
        id=[ids[i] for i in local["sequence_index"]],
        exposure=local["exposure"].astype(str),
        outcome=local["outcome"].astype(str),
        method=local["method"].astype(str),
    )[list(_LOCAL_COLUMNS)]
    return loc.merge(truth, on=key, how="left", validate="many_to_one")


def _pair_record(job: dict, row: dict, usable_locals, params, n_analysed: int) -> dict:
    """One (method, ordered pair) record: the round's parameters, the truths pooled over the
    sequences with a local fit of the pair (``usable_locals``), then every global-table column."""
    used = usable_locals[
        (usable_locals["method"] == row["method"])
        & (usable_locals["exposure"] == row["exposure"])
        & (usable_locals["outcome"] == row["outcome"])
    ]
    rec = {
        **job,
        "method": row["method"],
        "exposure": row["exposure"],
        "outcome": row["outcome"],
        "role": scoring.pair_role(row["exposure"], row["outcome"], job["regime"]),
        "alpha": params.alpha,
        "effect": params.effect,
        "beta": params.beta,
        "high": bool(params.high),
        "n_analysed": n_analysed,
        "n_used": len(used),
        # the truths over the sequences the estimate used (those with a local fit)
        "truth": _pooled(used["true_sxy"], used["true_sxx"]),
        "truth_paper": _pooled(used["true_sxy_paper"], used["true_sxx_paper"]),
        "truth_mean_ratio": float(np.nanmean(used["true_local"])) if len(used) else np.nan,
    }
    for name, value in row.items():
        if name not in rec:
            rec[name] = value.item() if hasattr(value, "item") else value
    return rec


@dataclass(frozen=True)
class ExperimentResult:
    """All rounds and the summary.

    Attributes
    ----------
    rounds : pandas.DataFrame
    locals : pandas.DataFrame
    summary : pandas.DataFrame
    seconds : float
        Wall time.
    out_dir : str or None
    resumed : int
        (round, regime) jobs read back from ``out_dir`` instead of computed.
    """

    rounds: object
    locals: object
    summary: object
    seconds: float
    out_dir: str | None
    resumed: int = 0


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | None = None,
    progress: bool = True,
    reanalyze: bool = False,
) -> ExperimentResult:
    """Run every (round, regime), summarise, and write the results folder.

    Files in ``out_dir``: ``config.json``, ``rounds.csv`` (rewritten after every round),
    ``jobs/`` (one checkpoint per analysed (round, regime)), ``models/`` (each job's trained
    ensemble and calibration fit, ``cache`` module), ``local_effects.csv.gz``, ``summary.csv``,
    ``summary.md``, ``estimated_vs_true.png``.

    Resuming: run again with the same ``out_dir`` and the finished jobs are read back instead of
    recomputed (every job's data and seeds depend only on (seed, round, regime)). ``rounds`` and
    ``workers`` may change between runs, so a 10-round run can be extended to 50. A job's model
    depends on the *model settings* (seed, sizes of the training set, simulation, network and
    training); a change of those is refused. Its analysis depends on the *analysis settings* (the
    rest) and on the analysis code (``analysis_key``): a checkpoint made under another analysis
    key is recomputed from the cached model, without training.

    Parameters
    ----------
    config : ExperimentConfig
    out_dir : str, optional
    progress : bool
        tqdm progress bar over (round, regime).
    reanalyze : bool
        Recompute every job's analysis (from the cached models where they exist) even where the
        checkpoint's analysis key matches.

    Returns
    -------
    ExperimentResult
    """
    import pandas as pd

    t_start = time.perf_counter()
    jobs = [(i, regime) for i in range(config.rounds) for regime in config.regimes]
    akey = _cache.analysis_key(config.to_dict(), _defaults())
    records, local_frames, done = _prepare_folder(config, out_dir, jobs, akey, reanalyze)
    cache_dir = None if out_dir is None else os.path.join(out_dir, "models")
    todo = [job for job in jobs if job not in done]

    def collect(res: RoundResult) -> None:
        records.extend(res.globals)
        local_frames.append(res.locals)
        if out_dir is not None:
            _cache.save_job(out_dir, res.round, res.regime, res.globals, res.locals, akey)
            results.write_text(
                os.path.join(out_dir, "rounds.csv"), pd.DataFrame(records).to_csv(index=False)
            )

    _run_jobs(config, todo, len(jobs), cache_dir, collect, progress)
    order = {job: k for k, job in enumerate(jobs)}
    records.sort(
        key=lambda r: (order[(r["round"], r["regime"])], config.methods.index(r["method"]))
    )
    rounds = pd.DataFrame(records)
    locals_ = pd.concat(local_frames, ignore_index=True)
    summary = scoring.summarize(rounds)
    if out_dir is not None:
        _write_tables(out_dir, rounds, locals_, summary)
    return ExperimentResult(
        rounds=rounds,
        locals=locals_,
        summary=summary,
        seconds=time.perf_counter() - t_start,
        out_dir=out_dir,
        resumed=len(done),
    )


def _prepare_folder(config: ExperimentConfig, out_dir, jobs: list, akey, reanalyze: bool):
    """Check that ``out_dir`` may be resumed, write its ``config.json`` and read back the jobs
    finished under the same analysis key (none with ``reanalyze``).

    Returns
    -------
    (list of dict, list of DataFrame, set of (int, str))
        The read-back records, local tables and jobs.
    """
    records, local_frames, done = [], [], set()
    if out_dir is None:
        return records, local_frames, done
    _cache.check_resumable(config.to_dict(), _defaults(), out_dir)
    os.makedirs(os.path.join(out_dir, "jobs"), exist_ok=True)
    results.write_text(
        os.path.join(out_dir, "config.json"),
        json.dumps(config.to_dict(), indent=2, default=str),
    )
    for job in jobs if not reanalyze else ():
        saved = _cache.load_job(out_dir, *job, akey)
        if saved is not None:
            records.extend(saved[0])
            local_frames.append(saved[1])
            done.add(job)
    if done:
        logger.info(
            "resuming: %d of %d (round, regime) jobs read from %s",
            len(done),
            len(jobs),
            os.path.join(out_dir, "jobs"),
        )
    return records, local_frames, done


def _write_tables(out_dir: str, rounds, locals_, summary) -> None:
    """The experiment's tables and figure, in job order (written even when every job was read
    back)."""
    results.write_text(os.path.join(out_dir, "rounds.csv"), rounds.to_csv(index=False))
    locals_.to_csv(os.path.join(out_dir, "local_effects.csv.gz"), index=False)
    results.write_text(os.path.join(out_dir, "summary.csv"), summary.to_csv(index=False))
    results.write_text(os.path.join(out_dir, "summary.md"), scoring.to_markdown(summary))
    scoring.plot_rounds(rounds, os.path.join(out_dir, "estimated_vs_true.png"))


def _run_jobs(
    config: ExperimentConfig, todo: list, total: int, cache_dir, collect, progress: bool
) -> None:
    """Run the ``todo`` jobs (in ``config.workers`` processes), passing each result to ``collect``."""
    from tqdm.auto import tqdm

    params = round_parameters(config)
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        desc="simulation rounds",
        unit="round",
        disable=not progress,
    )

    def done(res: RoundResult) -> None:
        collect(res)
        bar.set_postfix_str(f"round {res.round} {res.regime}")
        bar.update(1)

    if config.workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        # every stage of a job (training, ISM, MR) keeps to the job's threads: a worker whose ISM
        # ran on all cores while the other trained was measured 8x slower (oversubscription)
        with ProcessPoolExecutor(
            max_workers=config.workers,
            mp_context=ctx,
            initializer=_limit_threads,
            initargs=(config.training.threads,),
        ) as pool:
            futures = [
                pool.submit(run_round, i, regime, params[i], config, None, None, cache_dir)
                for i, regime in todo
            ]
            for fut in as_completed(futures):
                done(fut.result())
    else:
        ms = gen.MotifSet.from_config(config.simulation)
        for i, regime in todo:
            done(run_round(i, regime, params[i], config, ms, cache_dir=cache_dir))
    bar.close()


def _limit_threads(threads: int) -> None:
    """Worker initializer: torch (and its OpenMP pool) on ``threads`` threads for the process."""
    import torch

    torch.set_num_threads(int(threads))


def _defaults() -> dict:
    """``ExperimentConfig().to_dict()``: what settings missing from an older folder default to."""
    return ExperimentConfig().to_dict()
