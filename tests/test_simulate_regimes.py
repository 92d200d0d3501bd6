"""The pleiotropy and reverse-causation regimes of the simulation: data, oracle truths, roles."""

from __future__ import annotations

import numpy as np
import pytest

from deepmr_kipoi.simulate import experiment as E
from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import motifs as M
from deepmr_kipoi.simulate import oracle as orc
from deepmr_kipoi.simulate import scoring
from deepmr_kipoi.simulate.replicates import replicate_labels

PARAMS = gen.RoundParameters(alpha=100.0, effect=10.0, beta=1000.0, high=True)
CONFIG = gen.SimulationConfig(bystander_gamma=100.0)


@pytest.fixture(scope="module")
def motif_set():
    return gen.MotifSet.from_config(CONFIG)


def _analysed(regime, motif_set, n=12, seed=1):
    return gen.simulate(
        n,
        PARAMS,
        E._analysis_config(CONFIG),
        regime,
        np.random.default_rng(seed),
        motif_set=motif_set,
        embedding="both",
    )


def test_shared_motif_moves_every_feature_only_under_pleiotropy(motif_set):
    d = gen.simulate(
        3000, PARAMS, CONFIG, "pleiotropy", np.random.default_rng(0), motif_set=motif_set
    )
    placed = d.shared_start >= 0
    assert abs(placed.mean() - CONFIG.shared_motif_prob) < 0.04
    # the instance is the shared motif's, written where the occupancy says so
    q_sh = M.occupancy(d.onehot, motif_set.log_odds["shared"], CONFIG.shared_binding_offset)
    assert np.allclose(q_sh, d.q_shared)
    assert np.median(q_sh[placed]) > 0.95 and np.median(q_sh[~placed]) < 0.1
    # never overlapping another embedded motif
    for key, width in (("exposure", 11), ("outcome", 12), ("confounder", 15)):
        start = getattr(d, f"{key}_start")
        both = placed & (start >= 0)
        lo, hi = d.shared_start[both], d.shared_start[both] + motif_set.shared.length
        assert np.all((hi <= start[both]) | (lo >= start[both] + width))
    # the counts: the planted structure plus the shared motif's direct effect on all three
    c_exp = 1 + PARAMS.alpha * d.q_exp + CONFIG.shared_exposure * q_sh
    c_out = 1 + PARAMS.beta * d.q_exp * d.q_out + CONFIG.shared_outcome * q_sh
    c_byst = 1 + CONFIG.bystander_gamma * d.q_conf + CONFIG.shared_bystander * q_sh
    assert np.allclose(d.c_exp, c_exp) and np.allclose(d.c_out, c_out)
    assert np.allclose(d.c_byst, c_byst)
    # other regimes: no shared motif, and their data are those of the regime without it
    none = gen.simulate(300, PARAMS, CONFIG, "none", np.random.default_rng(0), motif_set=motif_set)
    assert (none.shared_start == -1).all() and not none.q_shared.any()


def test_reverse_regime_has_the_outcome_feed_the_exposure(motif_set):
    d = gen.simulate(500, PARAMS, CONFIG, "reverse", np.random.default_rng(2), motif_set=motif_set)
    ref = gen.simulate(500, PARAMS, CONFIG, "none", np.random.default_rng(2), motif_set=motif_set)
    assert np.array_equal(d.onehot, ref.onehot)  # same sequences, other counts
    assert np.allclose(d.c_out, 1 + PARAMS.alpha * d.q_out)
    assert np.allclose(d.c_exp, 1 + PARAMS.alpha * d.q_exp + 0.6 * PARAMS.alpha * d.q_out)
    assert gen.planted_pair("reverse") == ("outcome", "exposure")
    assert gen.planted_pair("pleiotropy") == ("exposure", "outcome")


def test_reverse_truth_equals_the_hand_computed_ratio_of_sums(motif_set):
    """Outcome -> exposure in the reverse regime: the oracle's truth against the structural
    equations written out by hand on the Anscombe scale, over the outcome motif's mutants."""
    d = _analysed("reverse", motif_set, n=3)
    oracle = orc.Oracle(PARAMS, CONFIG, motif_set, scale="anscombe", regime="reverse")
    eff = orc.oracle_effects(oracle, d.onehot)
    sxy, sxx = orc.true_local_sums(eff[..., [1, 0]], d.outcome_start, motif_set.outcome.length)

    def anscombe_features(x):
        q_exp = M.occupancy(x, motif_set.log_odds["exposure"], CONFIG.binding_offsets[0])
        q_out = M.occupancy(x, motif_set.log_odds["outcome"], CONFIG.binding_offsets[1])
        c_out = 1 + 100.0 * q_out
        c_exp = 1 + 100.0 * q_exp + 0.6 * 100.0 * q_out
        return 2 * np.sqrt(c_exp + 0.375), 2 * np.sqrt(c_out + 0.375)

    num = den = 0.0
    for i in range(len(d)):
        ref_x, ref_y = anscombe_features(d.onehot[i : i + 1])
        w = motif_set.outcome.length
        for pos in range(d.outcome_start[i], d.outcome_start[i] + w):
            for base in range(4):
                if d.onehot[i, pos, base]:
                    continue
                mut = d.onehot[i : i + 1].copy()
                mut[0, pos] = 0
                mut[0, pos, base] = 1
                x, y = anscombe_features(mut)
                dx, dy = (y - ref_y)[0], (x - ref_x)[0]  # X = outcome, Y = exposure
                num, den = num + dx * dy, den + dx * dx
    assert sxy.sum() / sxx.sum() == pytest.approx(num / den, rel=1e-9)
    # on the count scale the feedback is exactly 0.6 where the outcome motif's mutants leave the
    # exposure motif alone: the Anscombe truth is 0.6 times the ratio of the transforms' slopes
    assert 0.3 < num / den < 0.6


def test_null_pairs_have_zero_truth_under_pleiotropy_and_reverse_causation(motif_set):
    config = E.ExperimentConfig(n_analysis=12)
    for regime, null_pairs in (
        (
            "pleiotropy",
            [
                ("bystander", "exposure"),
                ("exposure", "bystander"),
                ("outcome", "bystander"),
                ("outcome", "exposure"),
            ],
        ),
        ("reverse", [("exposure", "outcome"), ("exposure", "bystander")]),
    ):
        d = _analysed(regime, motif_set)
        t = E.true_locals(PARAMS, config, motif_set, d, regime, learnable=True)
        pooled = t.groupby(["exposure", "outcome"]).apply(lambda g: g.sxy.sum() / g.sxx.sum())
        planted = pooled[gen.planted_pair(regime)]
        assert abs(planted) > 0.3
        for pair in null_pairs:
            # zero up to chance matches of one motif inside another (< 1% of the planted effect)
            assert abs(pooled[pair]) < 0.01 * abs(planted), (regime, pair, pooled[pair])
            assert scoring.pair_role(*pair, regime) in scoring.NULL_ROLES


def test_pleiotropic_instruments_carry_a_nonzero_ratio_on_the_null_pair(motif_set):
    """The shared motif's mutants move bystander and exposure together (the invalid instruments
    the null pair's estimate sees), while the bystander's own motif leaves the exposure alone."""
    d = _analysed("pleiotropy", motif_set, n=6)
    assert (d.shared_start >= 0).all()  # the analysed sequences carry the shared motif
    eff = orc.oracle_effects(orc.Oracle(PARAMS, CONFIG, motif_set, regime="pleiotropy"), d.onehot)
    byst_exp = eff[..., [2, 0]]
    sxy, sxx = orc.true_local_sums(byst_exp, d.shared_start, motif_set.shared.length)
    assert sxy.sum() / sxx.sum() > 0.2
    own_xy, own_xx = orc.true_local_sums(byst_exp, d.confounder_start, motif_set.confounder.length)
    assert abs(own_xy.sum() / own_xx.sum()) < 0.05


def test_roles_follow_the_planted_direction_of_each_regime():
    assert scoring.pair_role("outcome", "exposure", "reverse") == "planted"
    assert scoring.pair_role("exposure", "outcome", "reverse") == "reverse"
    assert scoring.pair_role("exposure", "outcome", "pleiotropy") == "planted"
    assert scoring.pair_role("bystander", "outcome", "pleiotropy") == "pleiotropic"
    assert scoring.pair_role("bystander", "outcome", "sequence") == "confounded"
    assert scoring.pair_role("bystander", "outcome", "none") == "unrelated"
    with pytest.raises(ValueError, match="unknown regime"):
        scoring.pair_role("exposure", "outcome", "feedback")


def _records(regime, verdicts, directions, estimates, truths, roles, pairs):
    import pandas as pd

    rows = []
    for r, (v, d, e, t) in enumerate(zip(verdicts, directions, estimates, truths)):
        for (x, y), role, vv, ee, tt in zip(pairs, roles, v, e, t):
            for method in ("ivw", "egger"):
                rows.append(
                    {
                        "round": r,
                        "regime": regime,
                        "method": method,
                        "exposure": x,
                        "outcome": y,
                        "role": role,
                        "verdict": vv,
                        "direction": d,
                        "estimate": ee if method == "ivw" else 0.0,
                        "truth": tt,
                        "significant": vv == "causal",
                    }
                )
    return pd.DataFrame(rows)


def test_verdict_scoring_counts_every_null_pair_and_the_true_direction():
    nan = float("nan")
    pairs = [("outcome", "exposure"), ("exposure", "outcome"), ("bystander", "exposure")]
    roles = [scoring.pair_role(x, y, "reverse") for x, y in pairs]
    assert roles == ["planted", "reverse", "unrelated"]
    frame = _records(
        "reverse",
        verdicts=[
            ("causal", "not causal", "not causal"),
            ("causal", "causal", "undetermined"),
            ("undetermined", "not causal", "causal"),
            ("causal", "not causal", "undetermined"),
        ],
        directions=["outcome -> exposure", "both", "undetermined", "exposure -> outcome"],
        estimates=[(0.4, 0.0, 0.1), (0.5, 0.2, nan), (0.4, 0.0, 0.3), (-0.2, 0.0, nan)],
        truths=[(0.38, 0.0, 0.0), (0.40, 0.0, 0.0), (0.05, 0.0, 0.0), (0.41, 0.0, 0.0)],
        roles=roles,
        pairs=pairs,
    )
    row = scoring.summarize_verdicts(frame).iloc[0]
    # 8 null pair-rounds, 2 called causal; 6 of them estimable, 2 causal
    assert (row["null_causal_n"], row["null_causal"]) == (8, 2 / 8)
    assert (row["null_causal_estimable_n"], row["null_causal_estimable"]) == (6, 2 / 6)
    assert (row["null_causal_low"], row["null_causal_high"]) == pytest.approx(scoring.wilson(2, 8))
    # the planted pair: causal with the truth's sign in rounds 0 and 1 (round 3 has the wrong sign)
    assert row["planted_causal"] == 2 / 4
    # direction: round 2's truth is below NEAR_ZERO, so 3 directional rounds, 1 named rightly
    assert (row["direction_right_n"], row["direction_right"]) == (3, 1 / 3)
    no_verdict = scoring.summarize_verdicts(frame.drop(columns=["verdict"])).iloc[0]
    assert np.isnan(no_verdict["null_causal"]) and no_verdict["null_causal_n"] == 8


def _anscombe_moments(mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact E and Var of anscombe(Poisson(mean)) per entry, by summing the pmf."""
    from scipy.stats import poisson

    k = np.arange(0, int(mean.max() + 20 * np.sqrt(mean.max()) + 50))
    pmf = poisson.pmf(k[None, :], mean[:, None])
    t = gen.anscombe(k)[None, :]
    m1 = (pmf * t).sum(axis=1)
    return m1, (pmf * t * t).sum(axis=1) - m1**2


@pytest.mark.parametrize("regime", ["none", "random"])
def test_replicate_labels_carry_the_noise_no_sequence_model_can_predict(motif_set, regime):
    params = gen.RoundParameters(alpha=30.0, effect=3.0, beta=60.0, high=False)
    d = gen.simulate(3000, params, CONFIG, regime, np.random.default_rng(5), motif_set=motif_set)
    rep = replicate_labels(d, params, CONFIG, np.random.default_rng(6))
    assert rep.shape == d.labels.shape
    # the same sequences: the bystander's Poisson mean does not move, its labels differ by noise
    est = np.mean((d.labels.astype(np.float64) - rep) ** 2, axis=0) / 2
    # brute-force reference: the label variance given the sequence, a mixture over the random
    # confounder b (P(b=1) = random_confounder_prob) of exact Anscombe-Poisson moments
    p = CONFIG.random_confounder_prob if regime == "random" else 0.0
    expected = []
    for column in range(2):
        moments = []
        for b in (0, 1):
            counts = gen.expected_counts(
                d.q_exp, d.q_out, d.q_conf, np.full(len(d.ids), b), params, CONFIG, regime
            )[column]
            moments.append(_anscombe_moments(counts))
        (m0, v0), (m1, v1) = moments
        mix = (1 - p) * v0 + p * v1 + p * (1 - p) * (m1 - m0) ** 2
        expected.append(mix.mean())
    assert est[:2] == pytest.approx(expected, rel=0.08)
    if regime == "random":  # the confounder's share: more than Poisson noise alone
        assert min(expected) > 1.2


def test_simulation_label_noise_option_parses_and_is_checked():
    from deepmr_kipoi import cli
    from deepmr_kipoi.simulate.cli import config_from_args
    from deepmr_kipoi.simulate.config import ExperimentConfig

    parser = cli._simulate_parser()
    args = parser.parse_args(["--out", "x", "--aleatoric-variance", "replicates"])
    assert config_from_args(args).aleatoric_variance == "replicates"
    args = parser.parse_args(["--out", "x", "--aleatoric-variance", "0.5"])
    assert config_from_args(args).aleatoric_variance == 0.5
    assert ExperimentConfig().aleatoric_variance == 1.0  # the default: Poisson on Anscombe
    with pytest.raises(ValueError, match="give a number >= 0 or 'replicates'"):
        ExperimentConfig(aleatoric_variance="twice")
    # without sigma scaling there is no noise term to remove
    assert (
        ExperimentConfig(calibration="none", aleatoric_variance="replicates").aleatoric_variance
        == 0.0
    )
