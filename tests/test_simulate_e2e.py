"""End-to-end checks of the simulation: a round recovers a planted effect; training; outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from deepmr_kipoi.simulate import experiment as E
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import oracle as orc

PARAMS = gen.RoundParameters(alpha=100.0, effect=6.0, beta=600.0, high=False)


def oracle_ensemble(config, motif_set, sigma=0.05, n_members=5, seed=0):
    """An ensemble whose mean is exactly the oracle: oracle + member-specific position weights
    (centred over members), so every paired effect has an SE ~ sigma * sqrt(2)."""
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    oracle = orc.Oracle(PARAMS, config.simulation, motif_set)
    rng = np.random.default_rng(seed)
    L = config.simulation.sequence_length
    w = rng.normal(0.0, sigma, size=(n_members, L, 4, 2))
    w -= w.mean(axis=0)
    return DeepEnsemble([
        from_function(lambda x, ws=ws: oracle(x) + np.einsum("nlb,lbf->nf", x, ws),
                      ["exposure", "outcome"], L)
        for ws in w
    ])


@pytest.fixture(scope="module")
def planted_round():
    config = E.ExperimentConfig(rounds=1, regimes=("none",), n_train=10, n_calibration=50,
                                n_analysis=30, calibration="none", workers=1)
    ms = gen.MotifSet.from_config(config.simulation)
    model = oracle_ensemble(config, ms)
    return E.run_round(0, "none", PARAMS, config, ms, model=model)


def test_round_recovers_planted_effect_within_ci(planted_round):
    ivw = next(r for r in planted_round.globals if r["method"] == "ivw")
    assert ivw["k"] == 30
    # near-saturated motifs: the Anscombe-scale effect is about sqrt(effect) = 2.45
    assert ivw["true_global"] == pytest.approx(np.sqrt(6.0), rel=0.05)
    assert ivw["ci_low"] <= ivw["true_global"] <= ivw["ci_high"]
    assert ivw["model_ci_low"] <= ivw["true_global"] <= ivw["model_ci_high"]
    assert ivw["estimate"] == pytest.approx(ivw["true_global"], rel=0.02)
    assert ivw["local_coverage"] >= 0.8
    # the naive mean of ratios is visibly worse than IVW + meta-analysis
    assert abs(ivw["naive"] - ivw["true_global"]) > 5 * abs(ivw["estimate"] - ivw["true_global"])


def test_estimates_and_truth_are_matched_by_id(planted_round):
    loc = planted_round.locals
    ivw = loc[loc["method"] == "ivw"]
    assert ivw["id"].is_unique and ivw["id"].str.startswith("r000_none_seq").all()
    # truth of a given id does not depend on where the row sits
    shuffled = ivw.sample(frac=1.0, random_state=0).set_index("id")
    assert np.allclose(shuffled.loc[ivw["id"], "true_local"].to_numpy(),
                       ivw["true_local"].to_numpy())
    good = ivw[ivw["used"]]
    assert np.mean((good["ci_low"] <= good["true_local"]) & (good["true_local"] <= good["ci_high"])) \
        == pytest.approx(next(r for r in planted_round.globals if r["method"] == "ivw")
                         ["local_coverage"])


def test_summary_table_and_files(planted_round, tmp_path):
    import pandas as pd

    rows = []
    for k, shift in enumerate([0.0, 0.5, 1.0]):
        for r in planted_round.globals:
            rr = dict(r, round=k)
            for f in ("estimate", "ci_low", "ci_high", "true_global", "naive", "model_ci_low",
                      "model_ci_high"):
                rr[f] = r[f] + shift
            rows.append(rr)
    rounds = pd.DataFrame(rows)
    s = E.summarize(rounds)
    assert list(s["method"]) == ["ivw", "egger"]
    ivw = s[s["method"] == "ivw"].iloc[0]
    assert ivw["rounds"] == 3 and ivw["ci_coverage"] == 1.0
    assert ivw["pearson_r"] == pytest.approx(1.0)
    assert ivw["bias"] == pytest.approx(planted_round.globals[0]["estimate"]
                                        - planted_round.globals[0]["true_global"])
    md = E.to_markdown(s)
    assert md.startswith("| regime | method |") and md.count("\n") == 4
    E.plot_rounds(rounds, str(tmp_path / "fig.png"))
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
    bagged = train_ensemble(d.onehot, d.labels, model_config=mc,
                            train_config=replace(tc, bootstrap=True))  # fmt: skip
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
        rounds=1, regimes=("none",), n_train=300, n_calibration=40, n_analysis=6,
        calibration="sigma", workers=1, model=ModelConfig(channels=(4, 4, 4), hidden=8),
        training=TrainConfig(n_members=3, max_epochs=2, patience=2, batch_size=64))
    out = str(tmp_path / "run")
    first = E.run_experiment(config, out, progress=False)
    job0 = os.path.join(out, "jobs", "r000_none.json")
    stamp = os.stat(job0).st_mtime_ns

    extended = E.run_experiment(replace(config, rounds=2), out, progress=False)
    assert os.stat(job0).st_mtime_ns == stamp  # read back, not rewritten
    assert extended.resumed == 1 and first.resumed == 0
    assert len(extended.rounds) == 4
    assert extended.rounds.iloc[:2].reset_index(drop=True).equals(first.rounds)

    fresh = E.run_experiment(replace(config, rounds=2), str(tmp_path / "fresh"), progress=False)
    cols = ["round", "regime", "method", "estimate", "se", "true_global", "model_ci_low"]
    assert np.allclose(fresh.rounds[cols[3:]].to_numpy(), extended.rounds[cols[3:]].to_numpy(),
                       equal_nan=True)
    assert fresh.locals.shape == extended.locals.shape

    with pytest.raises(ValueError, match="other settings .*n_analysis"):
        E.run_experiment(replace(config, n_analysis=7), out, progress=False)
    parser = simulate.add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--out", out, "--rounds", "1", "--n-analysis", "9", "--quiet"])
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
        rounds=1, regimes=("none",), n_train=200, n_calibration=30, n_analysis=4,
        calibration="none", workers=1, jackknife=False, model=mc,
        training=TrainConfig(n_members=2, max_epochs=1, patience=1, batch_size=64))  # fmt: skip
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
    with pytest.raises(ValueError, match="other settings"):
        E.run_experiment(replace(config, training=replace(config.training, bootstrap=True)), out,
                         progress=False)  # fmt: skip


@pytest.mark.torch
def test_b_averaged_truth_recorded_and_back_filled_for_old_checkpoints(tmp_path):
    import json
    import os

    import pandas as pd

    pytest.importorskip("torch")
    from deepmr_kipoi.simulate.model import ModelConfig
    from deepmr_kipoi.simulate.train import TrainConfig

    config = E.ExperimentConfig(
        rounds=1, regimes=("none", "random"), n_train=200, n_calibration=30, n_analysis=5,
        calibration="none", workers=1, jackknife=False, model=ModelConfig(channels=(4, 4, 4), hidden=8),
        training=TrainConfig(n_members=2, max_epochs=1, patience=1, batch_size=64))  # fmt: skip
    out = str(tmp_path / "run")
    first = E.run_experiment(config, out, progress=False)
    r = first.rounds.set_index(["regime", "method"])
    assert np.allclose(r.loc["none", "true_global_b_averaged"], r.loc["none", "true_global"])
    assert np.all(np.abs(r.loc["random", "true_global_b_averaged"] - r.loc["random", "true_global"])
                  > 1e-3)  # fmt: skip
    assert {"b_averaged_bias", "b_averaged_ci_coverage"} <= set(first.summary.columns)

    # a checkpoint written before the b-averaged truth existed gets it back, identical
    for regime in ("none", "random"):
        stem = os.path.join(out, "jobs", f"r000_{regime}")
        with open(stem + ".json") as fh:
            saved = json.load(fh)
        for rec in saved["globals"]:
            del rec["true_global_b_averaged"]
        with open(stem + ".json", "w") as fh:
            json.dump(saved, fh)
        pd.read_parquet(stem + ".parquet").drop(columns="true_local_b_averaged").to_parquet(
            stem + ".parquet", index=False)
    again = E.run_experiment(config, out, progress=False)
    cols = ["true_global", "true_global_b_averaged", "estimate"]
    np.testing.assert_allclose(again.rounds[cols].to_numpy(), first.rounds[cols].to_numpy(),
                               rtol=1e-12)  # fmt: skip
