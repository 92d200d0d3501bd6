"""End-to-end checks of the simulation: a round recovers a planted effect; training; outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi.simulate import experiment as E
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import oracle as orc
from deepmr_kipoi.simulate import scoring

PARAMS = gen.RoundParameters(alpha=100.0, effect=6.0, beta=600.0, high=False)


def oracle_ensemble(config, motif_set, sigma=0.05, n_members=5, seed=0):
    """An ensemble whose mean is exactly the oracle: oracle + member-specific position weights
    (centred over members), so every paired effect has an SE ~ sigma * sqrt(2)."""
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    oracle = orc.Oracle(PARAMS, config.simulation, motif_set)
    features = list(config.simulation.features)
    rng = np.random.default_rng(seed)
    L = config.simulation.sequence_length
    w = rng.normal(0.0, sigma, size=(n_members, L, 4, len(features)))
    w -= w.mean(axis=0)
    return DeepEnsemble(
        [
            from_function(lambda x, ws=ws: oracle(x) + np.einsum("nlb,lbf->nf", x, ws), features, L)
            for ws in w
        ]
    )


@pytest.fixture(scope="module")
def planted_round():
    config = E.ExperimentConfig(
        rounds=1,
        regimes=("none",),
        n_train=10,
        n_calibration=50,
        n_analysis=30,
        calibration="none",
        workers=1,
    )
    ms = gen.MotifSet.from_config(config.simulation)
    model = oracle_ensemble(config, ms)
    return E.run_round(0, "none", PARAMS, config, ms, model=model)


def _record(result, exposure, outcome, method="ivw"):
    return next(
        r
        for r in result.globals
        if r["method"] == method and (r["exposure"], r["outcome"]) == (exposure, outcome)
    )


def test_round_scores_every_ordered_pair_with_its_role(planted_round):
    pairs = {
        (r["exposure"], r["outcome"]): r["role"]
        for r in planted_round.globals
        if r["method"] == "ivw"
    }
    assert pairs == {
        ("exposure", "outcome"): "planted",
        ("outcome", "exposure"): "reverse",
        ("exposure", "bystander"): "unrelated",
        ("outcome", "bystander"): "unrelated",
        ("bystander", "exposure"): "unrelated",
        ("bystander", "outcome"): "unrelated",
    }


def test_round_recovers_planted_effect_within_ci(planted_round):
    ivw = _record(planted_round, "exposure", "outcome")
    assert ivw["k"] >= 28  # a sequence may keep fewer than 3 instruments after the rules
    # near-saturated motifs: the Anscombe-scale effect is about sqrt(effect) = 2.45
    assert ivw["truth"] == pytest.approx(np.sqrt(6.0), rel=0.05)
    assert ivw["truth_paper"] == ivw["truth"]  # regime "none": nothing to learn beyond the paper's
    # the truth is the equal-weight slope over every mutant of the exposure motif, the estimate an
    # IVW over the chosen instruments (one allele per position, directionality): on the exact
    # oracle, whose members differ only by tiny noise, the two differ by about 1%
    assert ivw["ci_low"] - 0.03 <= ivw["truth"] <= ivw["ci_high"] + 0.03
    assert ivw["estimate"] == pytest.approx(ivw["truth"], rel=0.02)
    assert ivw["significant"] and ivw["direction"] == "exposure -> outcome"


def test_null_pairs_of_an_oracle_model_are_not_flagged(planted_round):
    for r in planted_round.globals:
        if r["role"] in ("reverse", "unrelated") and np.isfinite(r["estimate"]):
            assert not r["significant"], (r["exposure"], r["outcome"], r["method"], r["estimate"])
            assert abs(r["estimate"]) < 0.2


def test_estimates_and_truth_are_matched_by_id(planted_round):
    loc = planted_round.locals
    ivw = loc[
        (loc["method"] == "ivw") & (loc["exposure"] == "exposure") & (loc["outcome"] == "outcome")
    ]
    assert ivw["id"].is_unique and ivw["id"].str.startswith("r000_none_seq").all()
    # truth of a given id does not depend on where the row sits
    shuffled = ivw.sample(frac=1.0, random_state=0).set_index("id")
    assert np.allclose(
        shuffled.loc[ivw["id"], "true_local"].to_numpy(), ivw["true_local"].to_numpy()
    )
    used = ivw[ivw["reason"] == 0]
    rec = _record(planted_round, "exposure", "outcome")
    # the global truth pools the sums of the used sequences (a ratio of sums, not a mean of ratios)
    assert rec["truth"] == pytest.approx(used["true_sxy"].sum() / used["true_sxx"].sum())
    assert rec["truth_mean_ratio"] == pytest.approx(used["true_local"].mean())
    assert np.allclose(used["true_sxy"] / used["true_sxx"], used["true_local"])


def test_wilson_interval_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for k, n in [(0, 20), (3, 50), (47, 50), (200, 200)]:
        assert scoring.wilson(k, n) == pytest.approx(
            proportion_confint(k, n, method="wilson"), abs=1e-12
        )


def test_summary_by_hand():
    import pandas as pd

    rows = []
    truths = [0.5, 2.5, 2.0, 3.0, 0.05]
    for k, t in enumerate(truths):
        est = t + (0.1 if k % 2 else -0.1)
        rows.append(
            {
                "round": k,
                "regime": "none",
                "method": "ivw",
                "role": "planted",
                "estimate": est,
                "ci_low": est - (0.2 if k < 4 else 0.01),
                "ci_high": est + (0.2 if k < 4 else 0.01),
                "significant": k != 1,
                "meta_ci_low": est - 0.01,
                "meta_ci_high": est + 0.01,
                "truth": t,
                "truth_paper": t + 1.0,
                "high": t > 1.5,
                "df": 4.0 + k,
            }
        )
        for j, flagged in enumerate([k == 0, False, False, False, False]):
            rows.append(
                {
                    "round": k,
                    "regime": "none",
                    "method": "ivw",
                    "role": "reverse" if j == 0 else "unrelated",
                    "estimate": 0.01,
                    "ci_low": -0.1,
                    "ci_high": 0.1 if j else 0.0,
                    "significant": flagged,
                    "meta_ci_low": 0.0,
                    "meta_ci_high": 0.02,
                    "truth": 0.05,
                    "truth_paper": 0.0,
                    "high": False,
                    "df": 4.0,
                }
            )
    s = scoring.summarize(pd.DataFrame(rows)).iloc[0]
    assert s["rounds"] == 5
    assert s["coverage"] == pytest.approx(4 / 5)  # the last round's interval misses 0.05
    assert (s["coverage_low"], s["coverage_high"]) == pytest.approx(scoring.wilson(4, 5))
    assert s["meta_coverage"] == 0.0 and s["paper_coverage"] == 0.0
    # power among truths >= 0.1: rounds 0, 2, 3 significant with the right sign, round 1 not; the
    # high component (truth > 1.5) is rounds 1-3
    assert s["power"] == pytest.approx(3 / 4) and s["power_rounds"] == 4
    assert s["null_pair_rounds"] == 25 and s["null_flagged"] == pytest.approx(1 / 25)
    assert s["null_coverage"] == pytest.approx(20 / 25)
    assert s["bias"] == pytest.approx(np.mean([-0.1, 0.1, -0.1, 0.1, -0.1]))
    assert s["r_within_high"] == pytest.approx(np.corrcoef([2.6, 1.9, 3.1], [2.5, 2.0, 3.0])[0, 1])
    assert s["median_df"] == pytest.approx(6.0)
    md = scoring.to_markdown(pd.DataFrame([s]), ["regime", "method", "coverage"])
    assert md.splitlines()[2] == "| none | ivw | 0.800 |"


def test_plot_of_rounds(planted_round, tmp_path):
    import pandas as pd

    scoring.plot_rounds(pd.DataFrame(planted_round.globals), str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 5000


@pytest.mark.torch
def test_training_learns_and_is_seeded():
    pytest.importorskip("torch")
    from deepmr_kipoi.simulate.model import ModelConfig
    from deepmr_kipoi.simulate.train import TrainConfig, train_ensemble

    cfg = gen.SimulationConfig()
    d = gen.simulate(600, PARAMS, cfg, "none", np.random.default_rng(0))
    mc = ModelConfig(channels=(4, 4, 4), hidden=8)
    tc = TrainConfig(n_members=2, max_epochs=3, patience=3, batch_size=64, seed=1)
    a = train_ensemble(d.onehot, d.labels, model_config=mc, train_config=tc)
    b = train_ensemble(d.onehot, d.labels, model_config=mc, train_config=tc)
    bagged = train_ensemble(
        d.onehot, d.labels, model_config=mc, train_config=replace(tc, bootstrap=True)
    )
    for hp, hb in zip(a.histories, bagged.histories):  # same seeds, each on its own resample
        assert hp.seed == hb.seed and hp.train_loss != hb.train_loss
    for ha, hb in zip(a.histories, b.histories):
        assert ha.val_loss == hb.val_loss  # same seeds -> identical training
        assert min(ha.val_loss) < ha.val_loss[0] or ha.best_epoch == 1
    assert a.histories[0].seed != a.histories[1].seed
    model = a.to_predictive()
    pred = model.predict_samples(d.onehot[:20])
    assert pred.shape == (2, 20, 2)
    assert not np.allclose(pred[0], pred[1])  # members differ
    # predictions live on the Anscombe scale of the labels
    assert abs(pred.mean() - d.labels.mean()) < 3 * d.labels.std()


def test_cli_bad_input_exits_2(tmp_path, capsys):
    import argparse

    from deepmr_kipoi import simulate

    parser = simulate.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path / "o"), "--rounds", "0"])
    assert simulate.run_from_args(args) == 2
    assert "must be >= 1" in capsys.readouterr().err


@pytest.mark.torch
def test_interrupted_run_resumes_and_extends(tmp_path, capsys):
    """Finished jobs are read back (not recomputed) and equal a fresh run's; other settings refused."""
    import argparse
    import os

    pytest.importorskip("torch")
    from deepmr_kipoi import simulate
    from deepmr_kipoi.simulate.model import ModelConfig
    from deepmr_kipoi.simulate.train import TrainConfig

    config = E.ExperimentConfig(
        rounds=1,
        regimes=("none",),
        n_train=200,
        n_calibration=30,
        n_analysis=5,
        calibration="sigma",
        workers=1,
        model=ModelConfig(channels=(4, 4, 4), hidden=8),
        training=TrainConfig(n_members=2, max_epochs=2, patience=2, batch_size=64),
    )
    out = str(tmp_path / "run")
    first = E.run_experiment(config, out, progress=False)
    job0 = os.path.join(out, "jobs", "r000_none.json")
    stamp = os.stat(job0).st_mtime_ns

    extended = E.run_experiment(replace(config, rounds=2), out, progress=False)
    assert os.stat(job0).st_mtime_ns == stamp  # read back, not rewritten
    assert extended.resumed == 1 and first.resumed == 0
    assert len(extended.rounds) == 2 * len(first.rounds)
    assert extended.rounds.iloc[: len(first.rounds)].reset_index(drop=True).equals(first.rounds)

    # the job read back equals the same job computed afresh in another folder
    fresh = E.run_experiment(config, str(tmp_path / "fresh"), progress=False)
    cols = ["round", "regime", "method", "estimate", "se", "truth", "ci_low"]
    read_back = extended.rounds.iloc[: len(fresh.rounds)]
    assert np.allclose(
        fresh.rounds[cols[3:]].to_numpy(), read_back[cols[3:]].to_numpy(), equal_nan=True
    )
    assert (fresh.rounds["round"] == 0).all()
    assert fresh.locals.shape == extended.locals[extended.locals["round"] == 0].shape

    assert not extended.rounds["model_cached"].any()  # both jobs trained their ensembles

    # reanalysis from the model cache: the same table as the first analysis, nothing trained
    models = os.path.join(out, "models")
    stamps = {f: os.stat(os.path.join(models, f)).st_mtime_ns for f in os.listdir(models)}
    assert {"r000_none.pt", "r000_none.json", "r001_none.pt", "r001_none.json"} <= set(stamps)
    # each job's ISM effects are cached once; the reanalysis below reads them, and its tables
    # equal those of the analyses that computed them
    effects = sorted(f for f in stamps if ".effects." in f)
    assert [f.split(".")[0] for f in effects] == ["r000_none", "r001_none"]
    truths = sorted(f for f in stamps if ".truth." in f)  # the oracle's truths likewise
    assert [f.split(".")[0] for f in truths] == ["r000_none", "r001_none"]
    again = E.run_experiment(replace(config, rounds=2), out, progress=False, reanalyze=True)
    assert again.resumed == 0 and again.rounds["model_cached"].all()
    assert os.stat(job0).st_mtime_ns != stamp  # the analysis was recomputed and rewritten
    same = [
        c for c in extended.rounds.columns if not c.startswith("seconds_") and c != "model_cached"
    ]
    pd.testing.assert_frame_equal(again.rounds[same], extended.rounds[same])
    assert {f: os.stat(os.path.join(models, f)).st_mtime_ns for f in stamps} == stamps

    # an analysis setting changed: stale checkpoints are reanalysed from the cached models
    wider = E.run_experiment(replace(config, rounds=2, n_analysis=6), out, progress=False)
    assert wider.resumed == 0 and wider.rounds["model_cached"].all()
    assert (wider.rounds["n_analysed"] == 6).all()
    # a model setting changed: refused
    with pytest.raises(ValueError, match="other model settings .*n_train"):
        E.run_experiment(replace(config, n_train=201), out, progress=False)
    parser = simulate.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", out, "--rounds", "1", "--n-train", "199", "--quiet"])
    assert simulate.run_from_args(args) == 2
    assert "use a new --out folder" in capsys.readouterr().err


def test_bootstrap_rows_are_a_seeded_resample_with_replacement():
    pytest.importorskip("torch")
    from deepmr_kipoi.simulate.train import bootstrap_rows

    a, b, c = bootstrap_rows(20000, 11), bootstrap_rows(20000, 11), bootstrap_rows(20000, 12)
    assert a.equal(b) and not a.equal(c)
    assert int(a.min()) >= 0 and int(a.max()) < 20000
    # a resample of n rows holds a share 1 - (1 - 1/n)^n -> 1 - 1/e = 0.632 of distinct rows
    assert abs(a.unique().numel() / 20000 - (1 - np.exp(-1))) < 0.01


@pytest.mark.torch
def test_results_folder_from_before_a_new_setting_still_resumes(tmp_path):
    """A folder written before ``bootstrap`` existed resumes with the setting's default (False)."""
    import json
    import os

    pytest.importorskip("torch")
    from deepmr_kipoi.simulate.model import ModelConfig
    from deepmr_kipoi.simulate.train import TrainConfig

    mc = ModelConfig(channels=(4, 4, 4), hidden=8)
    config = E.ExperimentConfig(
        rounds=1,
        regimes=("none",),
        n_train=200,
        n_calibration=30,
        n_analysis=4,
        calibration="none",
        workers=1,
        model=mc,
        training=TrainConfig(n_members=2, max_epochs=1, patience=1, batch_size=64),
    )
    out = str(tmp_path / "old")
    first = E.run_experiment(config, out, progress=False)
    path = os.path.join(out, "config.json")
    with open(path) as fh:
        saved = json.load(fh)
    del saved["training"]["bootstrap"]
    with open(path, "w") as fh:
        json.dump(saved, fh)
    again = E.run_experiment(config, out, progress=False)
    assert again.rounds.equals(first.rounds)
    with pytest.raises(ValueError, match="other model settings"):
        E.run_experiment(
            replace(config, training=replace(config.training, bootstrap=True)), out, progress=False
        )


@pytest.mark.torch
def test_learnable_truth_differs_from_the_papers_where_labels_are_confounded(tmp_path):
    pytest.importorskip("torch")
    from deepmr_kipoi.simulate.model import ModelConfig
    from deepmr_kipoi.simulate.train import TrainConfig

    config = E.ExperimentConfig(
        rounds=1,
        regimes=("none", "random", "sequence"),
        n_train=200,
        n_calibration=30,
        n_analysis=5,
        calibration="none",
        workers=1,
        model=ModelConfig(channels=(4, 4, 4), hidden=8),
        training=TrainConfig(n_members=2, max_epochs=1, patience=1, batch_size=64),
        directional=False,
    )  # the truths are read where there are fits: keep instruments
    res = E.run_experiment(config, str(tmp_path / "run"), progress=False)
    r = res.rounds[res.rounds["method"] == "ivw"].set_index(["regime", "exposure", "outcome"])
    planted = ("exposure", "outcome")
    assert r.loc[("none", *planted), "truth"] == pytest.approx(
        r.loc[("none", *planted), "truth_paper"]
    )
    assert (
        abs(r.loc[("random", *planted), "truth"] - r.loc[("random", *planted), "truth_paper"])
        > 1e-3
    )
    # the confounder motif is the bystander's: bystander -> exposure is confounded, its learnable
    # truth clearly non-zero in the sequence regime and about zero in the paper's truth
    conf = r.loc[("sequence", "bystander", "exposure")]
    assert conf["role"] == "confounded"
    assert abs(conf["truth"]) > 10 * abs(conf["truth_paper"])
