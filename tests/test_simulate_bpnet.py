"""The BPNet experiment: generative process, oracle, exports (Kipoi directory and BPNet-OSKN h5)
checked against the trained network, and a small end-to-end run analysed with ``deepmr run``."""

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

torch = pytest.importorskip("torch")

from deepmr_kipoi.simulate.bpnet import data as bdata  # noqa: E402
from deepmr_kipoi.simulate.bpnet.experiment import (  # noqa: E402
    BPNetExperimentConfig,
    poisson_label_variance,
    run_bpnet_experiment,
)
from deepmr_kipoi.simulate.bpnet.oracle import expected_log1p_poisson, oracle_features  # noqa: E402
from deepmr_kipoi.simulate.bpnet.train import BPNetTrainConfig  # noqa: E402


def test_poisson_label_variance_matches_the_simulated_variance_of_the_labels():
    """mean over two strands of log(1 + Poisson(m)): its variance by simulation against the delta
    method estimated from the counts themselves (first order in 1/m: within 10% from m = 20)."""
    rng = np.random.default_rng(0)
    for m in (20.0, 80.0):
        counts = rng.poisson(m, size=(200_000, 1, 2))
        simulated = np.log1p(counts).mean(axis=2).var()
        assert poisson_label_variance(counts) == pytest.approx(simulated, rel=0.1)


def test_expected_log1p_poisson_matches_direct_sum():
    means = np.array([0.0, 0.3, 4.0, 37.5, 180.0])
    k = np.arange(2000)
    want = [np.sum(stats.poisson.pmf(k, m) * np.log1p(k)) for m in means]
    np.testing.assert_allclose(expected_log1p_poisson(means), want, rtol=1e-10, atol=1e-12)


def test_footprint_peaks_on_either_side_of_a_bound_site():
    sim = bdata.BPNetSimulator.default()
    rng = np.random.default_rng(0)
    codes = rng.choice(4, size=200, p=(0.25, 0.25, 0.25, 0.25))
    consensus = sim.motifs["Klf4"].counts.argmax(axis=1)
    start = 95
    codes[start : start + len(consensus)] = consensus
    onehot = np.eye(4)[codes][None]
    prof = sim.profile_probabilities(onehot)[0, bdata.TASKS.index("Klf4")]  # (L, 2)
    centre = start + (len(consensus) - 1) / 2.0
    shift = sim.config.strand_shift
    assert abs(prof[:, 0].argmax() - (centre - shift)) <= 1
    assert abs(prof[:, 1].argmax() - (centre + shift)) <= 1
    np.testing.assert_allclose(prof.sum(axis=0), 1.0)


def test_planted_cooperativity_is_directional_in_expected_reads():
    sim = bdata.BPNetSimulator.default()
    q = np.array([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    cfg = sim.config
    lam = cfg.bias + cfg.amplitude * q * (1.0 + q @ cfg.gamma())
    # Sox2 bound raises Oct4 by a * gamma(Sox2 -> Oct4); Oct4 bound leaves Sox2 as it is
    assert lam[0, 0] - lam[1, 0] == pytest.approx(cfg.amplitude[0] * 2.0)
    assert lam[0, 1] == pytest.approx(lam[2, 1])
    onehot, _ = bdata.simulate_sequences(sim, 4, np.random.default_rng(1), all_motifs=True)
    occ = sim.occupancy(onehot)
    np.testing.assert_allclose(
        sim.expected_reads(onehot), cfg.bias + cfg.amplitude * occ * (1.0 + occ @ cfg.gamma())
    )
    np.testing.assert_allclose(
        oracle_features(sim, onehot), expected_log1p_poisson(sim.expected_reads(onehot) / 2.0)
    )


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("bpnet_sim"))
    config = BPNetExperimentConfig(
        n_train=300,
        n_analysis=4,
        n_calibration=60,
        seed=3,
        training=BPNetTrainConfig(n_members=2, max_epochs=2, filters=6, seed=3),
    )
    return run_bpnet_experiment(config, out)


def test_truth_has_every_ordered_pair_and_the_planted_pattern(small_run):
    truth = pd.read_csv(os.path.join(small_run.out_dir, "truth.csv"))
    assert len(truth) == 12 and not truth[["exposure", "outcome"]].duplicated().any()
    row = truth.set_index(["exposure", "outcome"])["true_effect"]
    assert row[("Sox2", "Oct4")] > 0.3
    assert row[("Sox2", "Nanog")] > 0.1
    for other in ("Oct4", "Sox2", "Nanog"):
        # Klf4 helps nobody; a mutation in another motif can still make or break a chance Klf4
        # window in a few sequences, so the reverse direction is only bounded by the planted one
        assert abs(row[("Klf4", other)]) < 0.02
        assert abs(row[(other, "Klf4")]) < row[("Sox2", "Oct4")] / 2


def test_exported_members_predict_what_the_trained_network_predicts(small_run):
    from deepmr_kipoi import kipoi_models
    from deepmr_kipoi.simulate.bpnet.network import MultiTaskBPNet

    x = np.eye(4, dtype=np.float32)[np.random.default_rng(5).integers(0, 4, (6, 200))]
    kipoi_dir = small_run.kipoi_model_dir
    nets = []
    for path in small_run.weight_files:
        net = MultiTaskBPNet(n_tasks=4, filters=6).eval()
        net.load_state_dict(torch.load(path, weights_only=True))
        nets.append(net)
    with torch.no_grad():
        direct = np.stack([n(torch.from_numpy(x)).numpy() for n in nets])
    oskn = kipoi_models.load_model("BPNet-OSKN", weight_files=list(small_run.oskn_files))
    np.testing.assert_allclose(oskn.predict_samples(x), direct, atol=1e-5)
    ens = kipoi_models.load_model(kipoi_dir, weight_files=list(small_run.weight_files))
    assert tuple(ens.feature_names) == bdata.TASKS
    np.testing.assert_allclose(ens.predict_samples(x), direct, atol=1e-5)
    assert not np.allclose(direct[0], direct[1])  # two trained members, not one copied


def test_deepmr_run_analyses_the_saved_ensemble(small_run):
    from deepmr_kipoi.cli import main

    out = os.path.join(small_run.out_dir, "run")
    weights = sorted(glob.glob(os.path.join(small_run.kipoi_model_dir, "member_*.pth")))
    rc = main(
        [
            "run",
            "--model",
            small_run.kipoi_model_dir,
            "--weights",
            *weights,
            "--fasta",
            small_run.fasta,
            "--out",
            out,
            "--no-figures",
            "--no-report",
            "-q",
            "--calibration-table",
            small_run.calibration_table,
            "--calibration-method",
            "sigma",
            "--aleatoric-variance",
            str(small_run.aleatoric_variance),
        ]
    )
    assert rc == 0
    labels = pd.read_csv(small_run.calibration_table, sep="\t")
    assert list(labels.columns) == ["sequence", *bdata.TASKS] and len(labels) == 60
    info = json.loads(open(os.path.join(out, "run.json")).read())
    assert set(info["calibration"]["se_scale"]) == set(bdata.TASKS)
    glob_ = pd.read_csv(os.path.join(out, "global_effects.csv"))
    pairs = set(zip(glob_["exposure"], glob_["outcome"]))
    truth = pd.read_csv(os.path.join(small_run.out_dir, "truth.csv"))
    assert pairs == set(zip(truth["exposure"], truth["outcome"]))
