"""The simulation experiment: rounds of simulate -> train -> Deep MR -> compare with the truth.

One round (per regime): draw the data of the round's true parameters, train the ensemble on the
training sequences, fit the calibration on separate held-out labelled sequences, run saturation
ISM on the analysed sequences (a third, separate set: sequences with both motifs embedded, as in
the paper), select instruments (``|b_x / se_x| >= z``, at least ``min_instruments``), estimate the
local effect of every sequence (IVW and MR-Egger), meta-analyse them (random effects, REML) into the
global effect, and compare with the oracle truth matched by sequence id.

Global confidence intervals. The meta-analysis CI treats the local estimates as independent, but
they all come from one trained model, whose error is shared by every sequence. Besides that CI the
experiment reports a model-aware interval: the meta-analysis variance plus the leave-one-member-out
jackknife variance of the global estimate over the ensemble members,
``se_total^2 = se_meta^2 + (S - 1) / S * sum_s (theta_(-s) - mean theta_(-))^2``. Approximation:
the jackknife measures how much the global effect moves with the ensemble's composition, a proxy
for the model's epistemic error; it cannot see a bias all members share.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np

from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import oracle as orc
from deepmr_kipoi.simulate.model import ModelConfig
from deepmr_kipoi.simulate.train import TrainConfig, train_ensemble

logger = logging.getLogger(__name__)

METHODS = ("ivw", "egger")
CALIBRATIONS = ("none", "sigma", "quantile")


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the whole experiment.

    Attributes
    ----------
    rounds : int
        Rounds per regime (each round has its own alpha, effect and data).
    regimes : tuple of str
        Subset of ``generative.REGIMES``.
    seed : int
        Root seed; round parameters depend only on (seed, round), data on (seed, round, regime).
    n_train : int
        Training sequences (a ``training.val_fraction`` share is the early-stopping split).
    n_calibration : int
        Held-out labelled sequences for the calibration fit (never trained on, never analysed).
    n_analysis : int
        Analysed reference sequences (both motifs embedded).
    calibration : {"none", "sigma", "quantile"}
        Recalibration of the effect SEs (``deepmr_kipoi.calibration``); ``"none"`` uses the raw
        ensemble SD.
    methods : tuple of str
        Local MR estimators (subset of ``METHODS``).
    meta_method : {"REML", "DL", "PM"}
    z : float
        Instrument threshold on ``|b_x / se_x|``.
    min_instruments : int
    oracle_scale : {"expected", "anscombe"}
        Scale of the truth (``oracle`` module docstring).
    jackknife : bool
        Also compute the model-aware (jackknife) global interval.
    workers : int
        (round, regime) jobs run in this many processes at once (each trains with
        ``training.threads`` torch threads); 2 uses both cores of a 2-core machine.
    simulation : SimulationConfig
    model : ModelConfig
    training : TrainConfig
    """

    rounds: int = 10
    regimes: tuple = gen.REGIMES
    seed: int = 0
    n_train: int = 6000
    n_calibration: int = 2000
    n_analysis: int = 100
    calibration: str = "sigma"
    methods: tuple = METHODS
    meta_method: str = "REML"
    z: float = 1.96
    min_instruments: int = 3
    oracle_scale: str = "expected"
    jackknife: bool = True
    workers: int = 2
    simulation: gen.SimulationConfig = field(default_factory=gen.SimulationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        object.__setattr__(self, "regimes", tuple(self.regimes))
        object.__setattr__(self, "methods", tuple(self.methods))
        for r in self.regimes:
            gen.regime_flags(r)
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown MR method {m!r}; use one of {', '.join(METHODS)}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"unknown calibration {self.calibration!r}; use one of {', '.join(CALIBRATIONS)}")
        if self.oracle_scale not in orc.SCALES:
            raise ValueError(f"unknown oracle scale {self.oracle_scale!r}; use one of {orc.SCALES}")
        if self.rounds < 1 or self.n_analysis < 1 or self.n_train < 10 or self.workers < 1:
            raise ValueError("rounds, workers and n_analysis must be >= 1 and n_train >= 10")
        if self.model.sequence_length != self.simulation.sequence_length:
            object.__setattr__(self, "model", replace(
                self.model, sequence_length=self.simulation.sequence_length))

    def to_dict(self) -> dict:
        """JSON-serialisable form (nested configs as dicts)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if hasattr(v, "to_dict") else (
                list(v) if isinstance(v, tuple) else v)
        return out


def round_parameters(config: ExperimentConfig) -> list[gen.RoundParameters]:
    """True parameters of every round (identical across regimes), from ``config.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0]))
    return [gen.draw_round_parameters(config.simulation, rng) for _ in range(config.rounds)]


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
        One record per MR method: estimate, se, ci, pi, tau2, i2, k, truth, naive, coverage flags,
        jackknife interval.
    locals : pandas.DataFrame
        One row per (analysed sequence, method): id, estimate, se, ci_low, ci_high,
        n_instruments, true_local, true_local_b_averaged (the truth with the random confounder
        averaged over its distribution; equal to true_local without random confounding).
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
        model="simulation", exposures=tuple(features), outcomes=tuple(features),
        methods=tuple(config.methods), z=config.z, min_instruments=config.min_instruments,
        meta_method=config.meta_method, chunk_size=max(1, n_sequences), seed=config.seed,
        model_interval=config.jackknife, save_effects=True, figures=False, report=False,
        progress=False,
    )  # fmt: skip


def run_round(round_index: int, regime: str, params: gen.RoundParameters,
              config: ExperimentConfig, motif_set: gen.MotifSet | None = None,
              model=None) -> RoundResult:
    """Simulate, train, estimate and compare one (round, regime).

    Parameters
    ----------
    round_index : int
    regime : str
    params : RoundParameters
    config : ExperimentConfig
    motif_set : MotifSet, optional
    model : PredictiveModel, optional
        Use this model (features exposure, outcome on the Anscombe scale) instead of training
        one, e.g. to check the estimation chain on a model with a known effect.

    Returns
    -------
    RoundResult
    """
    import pandas as pd


    ms = motif_set or gen.MotifSet.from_config(config.simulation)
    sim = config.simulation
    timings = {}
    t0 = time.perf_counter()
    r_train, r_cal, r_an = _rngs(config, round_index, regime)
    tag = f"r{round_index:03d}_{regime}_"
    train = gen.simulate(config.n_train, params, sim, regime, r_train, motif_set=ms,
                         id_prefix=tag + "train")
    cal = gen.simulate(config.n_calibration, params, sim, regime, r_cal, motif_set=ms,
                       id_prefix=tag + "cal")
    an = gen.simulate(config.n_analysis, params, sim, regime, r_an, motif_set=ms,
                      embedding="both", id_prefix=tag + "seq")
    timings["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if model is None:
        tc = replace(config.training, seed=config.seed * 100_003 + round_index * 10
                     + gen.REGIMES.index(regime))
        ens = train_ensemble(train.onehot, train.labels, model_config=config.model,
                             train_config=tc)
        model = ens.to_predictive()
    timings["train"] = time.perf_counter() - t0

    from deepmr_kipoi.run import aggregate, inputs, runner

    features = ("exposure", "outcome")
    run_config = _engine_config(config, features, len(an))
    t0 = time.perf_counter()
    cal_fit = None
    if config.calibration != "none":
        cal_fit = inputs.fit_calibration(model, cal.onehot, cal.labels, features, features,
                                         method=config.calibration, source="calibration sequences")
    scale = cal_fit.se_scale if cal_fit is not None else np.ones(len(features))
    timings["calibrate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = runner.make_plan(run_config, model, {"name": f"simulation {tag}"},
                            sequences=(an.ids, an.onehot), calibration=cal_fit)  # fmt: skip
    chunk = runner.compute_chunk(plan, 0)
    timings["ism"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    truth = _true_locals(params, config, ms, an, averaged=False)
    truth_b = (_true_locals(params, config, ms, an, averaged=True)
               if gen.regime_flags(regime)[1] else truth)  # fmt: skip
    timings["oracle"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    glob = aggregate.global_effects(chunk.local, len(an), method=config.meta_method,
                                    level=run_config.level, leave_one_out=chunk.leave_one_out,
                                    exposures=features, outcomes=features)  # fmt: skip
    mean, mask = chunk.arrays["mean"], chunk.arrays["instrument_mask"]
    records, local_frames = [], []
    for method in config.methods:
        loc = chunk.local[(chunk.local["method"] == method) & (chunk.local["exposure"] == "exposure")
                          & (chunk.local["outcome"] == "outcome")].sort_values("sequence_index")
        m = glob[(glob["method"] == method) & (glob["exposure"] == "exposure")
                 & (glob["outcome"] == "outcome")].iloc[0]  # fmt: skip
        ok = ((loc["reason"].to_numpy() == 0) & np.isfinite(loc["estimate"].to_numpy())
              & np.isfinite(loc["se"].to_numpy()) & (loc["se"].to_numpy() > 0))  # fmt: skip
        est = pd.DataFrame({
            "id": [an.ids[i] for i in loc["sequence_index"]],
            "estimate": loc["estimate"].to_numpy(), "se": loc["se"].to_numpy(),
            "ci_low": loc["ci_low"].to_numpy(), "ci_high": loc["ci_high"].to_numpy(),
            "n_instruments": mask[..., 0].reshape(len(an), -1).sum(axis=1), "used": ok,
        })
        est = est.merge(truth.rename("true_local").rename_axis("id").reset_index(), on="id",
                        how="left", validate="one_to_one")  # fmt: skip
        est["true_local_b_averaged"] = est["id"].map(truth_b)
        est.insert(0, "method", method)
        est.insert(0, "regime", regime)
        est.insert(0, "round", round_index)
        local_frames.append(est)
        used = est[est["used"] & np.isfinite(est["true_local"])]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(mask[..., 0], mean[..., 1] / mean[..., 0], np.nan).reshape(len(an), -1)
            finite = np.isfinite(ratio)
            naive_local = np.where(finite, ratio, 0.0).sum(axis=1) / finite.sum(axis=1)
        naive_ok = ok & np.isfinite(naive_local)
        rec = {
            "round": round_index, "regime": regime, "method": method,
            "alpha": params.alpha, "effect": params.effect, "beta": params.beta,
            "n_analysed": len(an), "k": int(ok.sum()),
            "true_global": float(used["true_local"].mean()) if len(used) else np.nan,
            "true_global_all": float(np.nanmean(truth.to_numpy())),
            "true_global_b_averaged": float(used["true_local_b_averaged"].mean())
            if len(used) else np.nan,
            "naive": float(np.mean(naive_local[naive_ok])) if naive_ok.any() else np.nan,
            "local_coverage": float(((used["ci_low"] <= used["true_local"])
                                     & (used["true_local"] <= used["ci_high"])).mean())
            if len(used) else np.nan,
            "calibration_scale_exposure": float(scale[0]),
            "calibration_scale_outcome": float(scale[1]),
        }
        have = ok.sum() >= 2
        for name in ("estimate", "se", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2"):
            rec[name] = float(m[name]) if have else np.nan
        if len(used) and have:
            t = used["true_local"].to_numpy()
            rec["pi_coverage"] = float(((m["pi_low"] <= t) & (t <= m["pi_high"])).mean())
        else:
            rec["pi_coverage"] = np.nan
        for name, column in (("model_se", "model_se"), ("model_ci_low", "model_ci_low"),
                             ("model_ci_high", "model_ci_high")):  # fmt: skip
            rec[name] = float(m[column]) if have else np.nan
        records.append(rec)
    timings["mr"] = time.perf_counter() - t0
    for rec in records:
        rec.update({f"seconds_{k}": v for k, v in timings.items()})
    return RoundResult(round=round_index, regime=regime, params=params, globals=records,
                       locals=pd.concat(local_frames, ignore_index=True),
                       calibration_scale=tuple(float(s) for s in scale), timings=timings)


def _true_locals(params, config: ExperimentConfig, ms, an, averaged: bool):
    """True local effects of the analysed sequences (pandas Series by id) from the oracle.

    ``averaged``: average the random confounder over its distribution instead of leaving it out
    (``oracle.Oracle.averaged_random_confounder``).
    """
    import pandas as pd

    oracle = orc.Oracle(params, config.simulation, ms, scale=config.oracle_scale,
                        averaged_random_confounder=averaged)  # fmt: skip
    eff = orc.oracle_effects(oracle, an.onehot)
    return pd.Series(orc.true_local_effects(eff, an.exposure_start, ms.exposure.length),
                     index=an.ids)  # fmt: skip


def _add_b_averaged_truth(records: list, locals_, config: ExperimentConfig, ms, params,
                          round_index: int, regime: str):  # fmt: skip
    """Add the b-averaged truth to a job checkpointed before it existed.

    The analysed sequences are regenerated from the job's seed (they depend only on (seed, round,
    regime)) and checked against the stored truth before the new one is computed.
    """
    locals_ = locals_.copy()
    if gen.regime_flags(regime)[1]:
        _, _, r_an = _rngs(config, round_index, regime)
        an = gen.simulate(config.n_analysis, params, config.simulation, regime, r_an,
                          motif_set=ms, embedding="both",
                          id_prefix=f"r{round_index:03d}_{regime}_seq")  # fmt: skip
        stored = locals_.drop_duplicates("id").set_index("id")["true_local"]
        again = _true_locals(params, config, ms, an, averaged=False)
        if not np.allclose(again.reindex(stored.index), stored, equal_nan=True, rtol=1e-9):
            raise ValueError(f"round {round_index} {regime}: regenerated sequences differ from the "
                             "checkpoint; rerun the job (delete its files in jobs/)")  # fmt: skip
        locals_["true_local_b_averaged"] = locals_["id"].map(
            _true_locals(params, config, ms, an, averaged=True))
    else:
        locals_["true_local_b_averaged"] = locals_["true_local"]
    records = [dict(r) for r in records]
    for rec in records:
        rows = locals_[(locals_["method"] == rec["method"]) & locals_["used"]
                       & np.isfinite(locals_["true_local"])]  # fmt: skip
        rec["true_global_b_averaged"] = (float(rows["true_local_b_averaged"].mean())
                                         if len(rows) else np.nan)  # fmt: skip
    return records, locals_


def summarize(rounds) -> object:
    """Evaluation table per (regime, method) over rounds.

    Parameters
    ----------
    rounds : pandas.DataFrame
        One row per (round, regime, method) (``RoundResult.globals`` records).

    Returns
    -------
    pandas.DataFrame
        Columns: regime, method, rounds, pearson_r, bias, mae, ci_coverage, model_ci_coverage,
        pi_coverage, local_coverage, mean_k, naive_pearson_r, naive_bias, naive_mae, and (when the
        rounds have it) b_averaged_bias, b_averaged_ci_coverage, b_averaged_model_ci_coverage: bias
        and coverage against the truth that averages the random confounder over its distribution
        (equal to the others in regimes without random confounding).
        ``ci_coverage``: share of rounds whose meta-analysis 95% CI of the global effect contains
        the true global effect; ``pi_coverage``: mean share of true local effects inside the
        prediction interval; ``local_coverage``: mean share of local 95% CIs containing the true
        local effect.
    """
    import pandas as pd

    rows = []
    for (regime, method), g in rounds.groupby(["regime", "method"], sort=False):
        g = g[np.isfinite(g["estimate"]) & np.isfinite(g["true_global"])]
        t, e, nv = g["true_global"].to_numpy(), g["estimate"].to_numpy(), g["naive"].to_numpy()

        def r(a, b):
            return float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 and np.std(a) > 0 else np.nan

        rows.append({
            "regime": regime, "method": method, "rounds": len(g),
            "pearson_r": r(e, t), "bias": float(np.mean(e - t)) if len(g) else np.nan,
            "mae": float(np.mean(np.abs(e - t))) if len(g) else np.nan,
            "ci_coverage": float(np.mean((g["ci_low"] <= t) & (t <= g["ci_high"])))
            if len(g) else np.nan,
            "model_ci_coverage": float(np.mean((g["model_ci_low"] <= t) & (t <= g["model_ci_high"])))
            if len(g) and np.isfinite(g["model_ci_low"]).all() else np.nan,
            "pi_coverage": float(g["pi_coverage"].mean()),
            "local_coverage": float(g["local_coverage"].mean()),
            "mean_k": float(g["k"].mean()),
            "naive_pearson_r": r(nv, t),
            "naive_bias": float(np.mean(nv - t)) if len(g) else np.nan,
            "naive_mae": float(np.mean(np.abs(nv - t))) if len(g) else np.nan,
        })
        if "true_global_b_averaged" in g:
            tb = g["true_global_b_averaged"].to_numpy()
            rows[-1].update({
                "b_averaged_bias": float(np.mean(e - tb)) if len(g) else np.nan,
                "b_averaged_ci_coverage": float(np.mean((g["ci_low"] <= tb) & (tb <= g["ci_high"])))
                if len(g) else np.nan,
                "b_averaged_model_ci_coverage": float(np.mean((g["model_ci_low"] <= tb)
                                                           & (tb <= g["model_ci_high"])))
                if len(g) and np.isfinite(g["model_ci_low"]).all() else np.nan,
            })  # fmt: skip
    return pd.DataFrame(rows)


def to_markdown(summary) -> str:
    """The summary table as GitHub Markdown (3 decimals)."""
    cols = list(summary.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in summary.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_rounds(rounds, path: str, method: str = "ivw") -> None:
    """Estimated vs true global effect, one panel per regime, 95% CIs as error bars.

    Parameters
    ----------
    rounds : pandas.DataFrame
        Round records.
    path : str
        Output image path (format from the extension).
    method : str
        MR method to draw.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    data = rounds[rounds["method"] == method]
    regimes = list(dict.fromkeys(data["regime"]))
    fig, axes = plt.subplots(1, max(1, len(regimes)), figsize=(3.6 * max(1, len(regimes)), 3.6),
                             squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        g = data[data["regime"] == regime]
        t, e = g["true_global"].to_numpy(), g["estimate"].to_numpy()
        ax.errorbar(t, e, yerr=[e - g["ci_low"].to_numpy(), g["ci_high"].to_numpy() - e],
                    fmt="o", ms=4, capsize=2, label="meta CI")
        ax.scatter(t, g["naive"].to_numpy(), marker="x", color="grey", s=14, label="naive")
        lo = np.nanmin(np.concatenate([t, e])) if len(g) else 0.0
        hi = np.nanmax(np.concatenate([t, e])) if len(g) else 1.0
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_title(f"confounding: {regime}")
        ax.set_xlabel("true global effect")
        ax.set_ylabel(f"estimated ({method.upper()} + REML)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def run_experiment(config: ExperimentConfig, out_dir: str | None = None,
                   progress: bool = True) -> ExperimentResult:
    """Run every (round, regime), summarise, and write the results folder.

    Files in ``out_dir``: ``config.json``, ``rounds.csv`` (rewritten after every round),
    ``jobs/`` (one checkpoint per finished (round, regime)), ``local_effects.csv.gz``,
    ``summary.csv``, ``summary.md``, ``estimated_vs_true.png``.

    Resuming: run again with the same ``out_dir`` and settings and the finished jobs are read back
    instead of recomputed (their numbers are identical: every job's data and seeds depend only on
    (seed, round, regime)). ``rounds`` and ``workers`` may change between runs, so a 10-round run
    can be extended to 50; any other change is refused.

    Parameters
    ----------
    config : ExperimentConfig
    out_dir : str, optional
    progress : bool
        tqdm progress bar over (round, regime).

    Returns
    -------
    ExperimentResult
    """
    import pandas as pd
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    jobs = [(i, regime) for i in range(config.rounds) for regime in config.regimes]
    records, local_frames = [], []
    done = set()
    if out_dir is not None:
        _check_resumable(config, out_dir)
        os.makedirs(os.path.join(out_dir, "jobs"), exist_ok=True)
        _atomic_write(os.path.join(out_dir, "config.json"),
                      json.dumps(config.to_dict(), indent=2, default=str))
    ms = gen.MotifSet.from_config(config.simulation)
    params = round_parameters(config)
    if out_dir is not None:
        for job in jobs:
            saved = _load_job(out_dir, *job)
            if saved is None:
                continue
            job_records, job_locals = saved
            if any("true_global_b_averaged" not in r for r in job_records):
                job_records, job_locals = _add_b_averaged_truth(
                    job_records, job_locals, config, ms, params[job[0]], *job)
                _save_job(out_dir, job[0], job[1], job_records, job_locals)
            records.extend(job_records)
            local_frames.append(job_locals)
            done.add(job)
        if done:
            logger.info("resuming: %d of %d (round, regime) jobs read from %s", len(done),
                        len(jobs), os.path.join(out_dir, "jobs"))
    todo = [job for job in jobs if job not in done]
    bar = tqdm(total=len(jobs), initial=len(done), desc="simulation rounds", unit="round",
               disable=not progress)

    def collect(res: RoundResult) -> None:
        records.extend(res.globals)
        local_frames.append(res.locals)
        bar.set_postfix_str(f"round {res.round} {res.regime}")
        bar.update(1)
        if out_dir is not None:
            _save_job(out_dir, res.round, res.regime, res.globals, res.locals)
            _atomic_write(os.path.join(out_dir, "rounds.csv"),
                          pd.DataFrame(records).to_csv(index=False))

    if config.workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.workers, mp_context=ctx) as pool:
            futures = [pool.submit(run_round, i, regime, params[i], config) for i, regime in todo]
            for fut in as_completed(futures):
                collect(fut.result())
    else:
        for i, regime in todo:
            collect(run_round(i, regime, params[i], config, ms))
    bar.close()
    order = {job: k for k, job in enumerate(jobs)}
    records.sort(key=lambda r: (order[(r["round"], r["regime"])], config.methods.index(r["method"])))
    rounds = pd.DataFrame(records)
    locals_ = pd.concat(local_frames, ignore_index=True)
    summary = summarize(rounds)
    seconds = time.perf_counter() - t_start
    if out_dir is not None:
        # in job order, and written even when every job was read back
        _atomic_write(os.path.join(out_dir, "rounds.csv"), rounds.to_csv(index=False))
        locals_.to_csv(os.path.join(out_dir, "local_effects.csv.gz"), index=False)
        _atomic_write(os.path.join(out_dir, "summary.csv"), summary.to_csv(index=False))
        _atomic_write(os.path.join(out_dir, "summary.md"), to_markdown(summary))
        plot_rounds(rounds, os.path.join(out_dir, "estimated_vs_true.png"))
    return ExperimentResult(rounds=rounds, locals=locals_, summary=summary, seconds=seconds,
                            out_dir=out_dir, resumed=len(done))


def _resume_key(settings: dict) -> dict:
    """The settings a finished job depends on (not ``rounds``, ``workers`` or thread counts).

    ``settings``: ``ExperimentConfig.to_dict()`` or a saved ``config.json``; settings it lacks
    (added since it was written) take their defaults.
    """
    defaults = json.loads(json.dumps(ExperimentConfig().to_dict(), default=str))
    key = json.loads(json.dumps(settings, default=str))
    for name, value in defaults.items():
        if isinstance(value, dict) and isinstance(key.get(name), dict):
            key[name] = {**value, **key[name]}
        else:
            key.setdefault(name, value)
    for name in ("rounds", "workers"):
        key.pop(name)
    key["training"].pop("threads", None)
    return key


def _check_resumable(config: ExperimentConfig, out_dir: str) -> None:
    path = os.path.join(out_dir, "config.json")
    if not os.path.exists(path) or not os.path.isdir(os.path.join(out_dir, "jobs")):
        return
    with open(path) as fh:
        previous = _resume_key(json.load(fh))
    current = _resume_key(config.to_dict())
    if previous != current:
        changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
        raise ValueError(
            f"{out_dir} holds a simulation run with other settings ({', '.join(changed)}); "
            "use a new --out folder or the same settings to resume it")


def _job_paths(out_dir: str, round_index: int, regime: str) -> tuple[str, str]:
    stem = os.path.join(out_dir, "jobs", f"r{round_index:03d}_{regime}")
    return stem + ".json", stem + ".parquet"


def _save_job(out_dir: str, round_index: int, regime: str, records: list, locals_) -> None:
    """Checkpoint one finished job: locals first, the JSON last (its presence marks the job done)."""
    json_path, parquet_path = _job_paths(out_dir, round_index, regime)
    tmp = f"{parquet_path}.tmp{os.getpid()}"
    locals_.to_parquet(tmp, index=False)
    os.replace(tmp, parquet_path)
    _atomic_write(json_path, json.dumps({"globals": records}, default=float))


def _load_job(out_dir: str, round_index: int, regime: str):
    """(global records, locals) of a checkpointed job, or None if it has not finished."""
    import pandas as pd

    json_path, parquet_path = _job_paths(out_dir, round_index, regime)
    if not (os.path.exists(json_path) and os.path.exists(parquet_path)):
        return None
    with open(json_path) as fh:
        records = json.load(fh)["globals"]
    return records, pd.read_parquet(parquet_path)


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
