"""Tests of deepmr_kipoi.simulate: motifs, generative process, oracle truth, end-to-end round."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from deepmr_kipoi.simulate import generative as gen
from deepmr_kipoi.simulate import motifs
from deepmr_kipoi.simulate import oracle as orc

ACGT = "ACGT"


def onehot(seqs):
    return np.stack([np.eye(4, dtype=np.float32)[[ACGT.index(c) for c in s]] for s in seqs])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def brute_occupancy(seq: str, lo: np.ndarray, offset: float) -> float:
    """1 - prod(1 - sigmoid(score - offset)) by explicit loops over windows and both strands."""
    comp = {"A": "T", "C": "G", "G": "C", "T": "A"}
    rc = "".join(comp[c] for c in reversed(seq))
    W = lo.shape[0]
    unbound = 1.0
    for s in (seq, rc):  # scoring the reverse complement == scoring the reverse strand
        for j in range(len(s) - W + 1):
            score = sum(lo[k, ACGT.index(s[j + k])] for k in range(W))
            unbound *= 1.0 - sigmoid(score - offset)
    return 1.0 - unbound


# ---------------------------------------------------------------- motifs


def test_shipped_motifs_are_the_jaspar_counts():
    gata = motifs.load_motif("GATA1")
    assert (gata.accession, gata.name, gata.length) == ("MA0035.2", "Gata1", 11)
    # core AGATAA: position 4 is G in all 4000 sites, position 5 A in all 4000 sites
    np.testing.assert_array_equal(gata.counts[3], [0, 0, 4000, 0])
    np.testing.assert_array_equal(gata.counts[4], [4000, 0, 0, 0])
    tal1 = motifs.load_motif("TAL1")
    assert (tal1.accession, tal1.length) == ("MA0091.1", 12)
    np.testing.assert_array_equal(tal1.counts[0], [13, 14, 8, 9])
    sox2 = motifs.load_motif("SOX2")
    assert (sox2.accession, sox2.length) == ("MA0143.1", 15)
    np.testing.assert_array_equal(sox2.counts[-1], [485, 60, 61, 58])


def test_log_odds_uses_background_in_acgt_order():
    m = motifs.Motif("toy", "X1", np.array([[0, 0, 10, 0], [10, 0, 0, 0]]))
    bg = (0.1, 0.2, 0.3, 0.4)
    lo = m.log_odds(pseudocount=0.1, background=bg)
    p_g = 0.9 * 1.0 + 0.1 * 0.3  # G at position 0
    p_t = 0.1 * 0.4  # T at position 0 (zero counts)
    assert lo[0, 2] == pytest.approx(np.log(p_g / 0.3))
    assert lo[0, 3] == pytest.approx(np.log(p_t / 0.4))
    np.testing.assert_allclose((np.exp(lo) * bg).sum(axis=1), 1.0)  # rows of p sum to 1


def test_occupancy_matches_brute_force_both_strands():
    lo = np.array([[1.5, -1.0, 0.3, -2.0], [-0.5, 2.0, -1.0, 0.7], [0.2, 0.1, -0.3, 1.1]])
    seqs = ["ACGTTGCA", "GGGACTTA", "TTTTTTTT", "CAGCTGAC"]
    for offset in (0.0, 1.3):
        got = motifs.occupancy(onehot(seqs), lo, offset)
        want = [brute_occupancy(s, lo, offset) for s in seqs]
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_occupancy_hand_computed_single_window():
    # W = L = 2: one window per strand. AC forward scores lo[0,A] + lo[1,C]; the reverse strand
    # reads GT: lo[0,G] + lo[1,T].
    lo = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 2.0, 0.0, -3.0]])
    q = motifs.occupancy(onehot(["AC"]), lo)[0]
    assert q == pytest.approx(1 - (1 - sigmoid(3.0)) * (1 - sigmoid(-4.0)))


def test_reverse_complement_has_same_occupancy():
    rng = np.random.default_rng(3)
    lo = motifs.load_motif("TAL1").log_odds(1e-3)
    codes = rng.integers(4, size=(5, 40))
    x = np.eye(4)[codes]
    x_rc = np.eye(4)[(3 - codes)[:, ::-1]]
    np.testing.assert_allclose(motifs.occupancy(x, lo), motifs.occupancy(x_rc, lo), rtol=1e-10)


# ---------------------------------------------------------------- generative process

PARAMS = gen.RoundParameters(alpha=100.0, effect=10.0, beta=1000.0, high=True)


@pytest.fixture(scope="module")
def motif_set():
    return gen.MotifSet.from_config(gen.SimulationConfig())


def sim(n, regime, seed, ms, **kw):
    return gen.simulate(
        n, PARAMS, gen.SimulationConfig(), regime, np.random.default_rng(seed), motif_set=ms, **kw
    )


def test_seeds_reproduce_exactly(motif_set):
    a = sim(300, "both", 11, motif_set)
    b = sim(300, "both", 11, motif_set)
    for f in ("onehot", "labels", "b", "embedding", "exposure_start", "confounder_start", "y_out"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    c = sim(300, "both", 12, motif_set)
    assert not np.array_equal(a.onehot, c.onehot)


def test_regime_none_has_no_confounder_terms(motif_set):
    d = sim(400, "none", 1, motif_set)
    assert np.all(d.b == 0) and np.all(d.confounder_start == -1)
    np.testing.assert_allclose(d.c_exp, 1.0 + PARAMS.alpha * d.q_exp)
    np.testing.assert_allclose(d.c_out, 1.0 + PARAMS.beta * d.q_exp * d.q_out)
    np.testing.assert_allclose(d.labels[:, 0], 2 * np.sqrt(d.y_exp + 0.375), rtol=1e-6)


def test_regime_random_adds_only_the_bernoulli_terms(motif_set):
    d = sim(2000, "random", 2, motif_set)
    assert np.all(d.confounder_start == -1)
    assert 0.45 < d.b.mean() < 0.55
    np.testing.assert_allclose(d.c_exp - (1.0 + PARAMS.alpha * d.q_exp), 25.0 * d.b)
    np.testing.assert_allclose(d.c_out - (1.0 + PARAMS.beta * d.q_exp * d.q_out), 25.0 * d.b)


def test_regime_sequence_inserts_confounder_motif(motif_set):
    d = sim(2000, "sequence", 3, motif_set)
    assert np.all(d.b == 0)
    inserted = d.confounder_start >= 0
    assert 0.45 < inserted.mean() < 0.55
    np.testing.assert_allclose(d.c_exp - (1.0 + PARAMS.alpha * d.q_exp), 20.0 * d.q_conf)
    np.testing.assert_allclose(d.c_out - (1.0 + PARAMS.beta * d.q_exp * d.q_out), 30.0 * d.q_conf)
    assert np.median(d.q_conf[inserted]) > 0.9 > np.median(d.q_conf[~inserted])
    # the confounder never overlaps an embedded exposure or outcome motif
    for key, w in (("exposure", 11), ("outcome", 12)):
        s = getattr(d, f"{key}_start")
        both = inserted & (s >= 0)
        c = d.confounder_start[both]
        assert np.all((c + 15 <= s[both]) | (s[both] + w <= c))


def test_embedding_mixture_and_motif_instances(motif_set):
    d = sim(4000, "none", 4, motif_set)
    frac = np.bincount(d.embedding, minlength=4) / len(d)
    np.testing.assert_allclose(frac, [0.25, 0.25, 0.25, 0.25], atol=0.03)
    has_e = d.exposure_start >= 0
    assert np.array_equal(has_e, np.isin(d.embedding, (1, 3)))
    assert np.median(d.q_exp[has_e]) > 0.9 > 0.2 > np.median(d.q_exp[~has_e])
    # embedded GATA instances read AGATAA-like on their strand: core G A T A at motif columns 3-6
    from deepmr_kipoi import sequences

    i = np.flatnonzero(d.exposure_strand == 1)[0]
    s = sequences.decode(d.onehot[i : i + 1])[0]
    assert s[d.exposure_start[i] + 3 : d.exposure_start[i] + 5] == "GA"


def test_round_parameters_mixture():
    cfg = gen.SimulationConfig()
    rng = np.random.default_rng(0)
    ps = [gen.draw_round_parameters(cfg, rng) for _ in range(400)]
    high = np.array([p.high for p in ps])
    eff = np.array([p.effect for p in ps])
    assert 0.4 < high.mean() < 0.6
    assert abs(eff[high].mean() - 10) < 0.15 and abs(eff[~high].mean() - 1) < 0.15
    np.testing.assert_allclose([p.beta for p in ps], [p.alpha * p.effect for p in ps])


def test_bad_regime_is_a_clear_error(motif_set):
    with pytest.raises(ValueError, match="unknown regime"):
        sim(2, "sometimes", 0, motif_set)


# ---------------------------------------------------------------- oracle


def test_expected_anscombe_matches_poisson_sum():
    lam = np.array([0.0, 0.3, 1.0, 7.5, 120.0, 1043.7])
    k = np.arange(0, 3000)
    want = [
        (stats.poisson.pmf(k, v) * 2 * np.sqrt(k + 0.375)).sum() if v > 0 else 2 * np.sqrt(0.375)
        for v in lam
    ]
    np.testing.assert_allclose(orc.expected_anscombe(lam), want, atol=1e-6)


def test_oracle_effects_match_explicit_mutation(motif_set):
    cfg = gen.SimulationConfig()
    d = sim(2, "both", 5, motif_set, embedding="both")
    oracle = orc.Oracle(PARAMS, cfg, motif_set, scale="anscombe")
    eff = orc.oracle_effects(oracle, d.onehot)
    assert eff.shape == (2, 100, 3, 2)
    for pos in (d.exposure_start[0] + 3, 50):
        ref = int(d.onehot[0, pos].argmax())
        alts = [b for b in range(4) if b != ref]
        for j, alt in enumerate(alts):
            x = d.onehot[0:1].copy()
            x[0, pos] = 0
            x[0, pos, alt] = 1
            c = np.array(
                [
                    1 + PARAMS.alpha * motif_set.occupancy("exposure", x)[0],
                    1
                    + PARAMS.beta
                    * motif_set.occupancy("exposure", x)[0]
                    * motif_set.occupancy("outcome", x)[0],
                ]
            )
            c0 = oracle.counts(d.onehot[0:1])[0]
            want = 2 * np.sqrt(c + 0.375) - 2 * np.sqrt(c0 + 0.375)
            np.testing.assert_allclose(eff[0, pos, j], want, rtol=1e-10, atol=1e-12)


def test_true_local_effect_is_slope_through_origin_inside_the_motif():
    rng = np.random.default_rng(0)
    eff = rng.normal(size=(2, 30, 3, 2))
    start, width = np.array([5, -1]), 4
    eff[0, 5:9, :, 1] = 2.5 * eff[0, 5:9, :, 0]  # exact slope inside the motif only
    got = orc.true_local_effects(eff, start, width)
    assert got[0] == pytest.approx(2.5)
    assert np.isnan(got[1])
    dx, dy = eff[0, 5:9, :, 0].ravel(), eff[0, 5:9, :, 1].ravel()
    assert got[0] == pytest.approx((dx @ dy) / (dx @ dx))


def test_true_effect_tracks_the_planted_effect(motif_set):
    """Near saturation, Anscombe outcome/exposure changes scale like sqrt(effect * q_out)."""
    cfg = gen.SimulationConfig()
    d = sim(20, "none", 6, motif_set, embedding="both")
    out = []
    for effect in (1.0, 10.0):
        p = gen.RoundParameters(alpha=100.0, effect=effect, beta=100.0 * effect, high=False)
        eff = orc.oracle_effects(orc.Oracle(p, cfg, motif_set), d.onehot)
        out.append(np.nanmean(orc.true_local_effects(eff, d.exposure_start, 11)))
    assert out[0] == pytest.approx(1.0, abs=0.15)
    assert out[1] == pytest.approx(np.sqrt(10.0), abs=0.3)
    assert out[1] / out[0] == pytest.approx(np.sqrt(10.0), rel=0.1)


def test_b_averaged_oracle_is_what_the_random_regime_labels_average_to(motif_set):
    """Monte Carlo over the regime's own label process (b ~ Bernoulli, Poisson counts, Anscombe):
    the mean label of a fixed sequence equals the b-averaged oracle, not the b-free one."""
    cfg = gen.SimulationConfig()
    d = sim(3, "none", 8, motif_set, embedding="both")
    averaged = orc.Oracle(PARAMS, cfg, motif_set, averaged_random_confounder=True)(d.onehot)
    b_free = orc.Oracle(PARAMS, cfg, motif_set)(d.onehot)
    rng = np.random.default_rng(9)
    n = 400_000
    for i in range(3):
        b = (rng.random(n) < cfg.random_confounder_prob).astype(np.int8)
        q = [np.full(n, v[i]) for v in (d.q_exp, d.q_out, d.q_conf)]
        c_exp, c_out = gen.expected_counts(*q, b, PARAMS, cfg, "random")
        mc = [gen.anscombe(rng.poisson(c)).mean() for c in (c_exp, c_out)]
        np.testing.assert_allclose(mc, averaged[i], atol=0.01)  # MC SE ~ 0.002
        assert np.abs(np.asarray(mc) - b_free[i]).max() > 0.5


# ---------------------------------------------------------------- bystander and learnable truth


def test_bystander_feature_has_its_own_motif_in_every_regime(motif_set):
    cfg = gen.SimulationConfig(bystander_gamma=80.0)
    d = gen.simulate(2000, PARAMS, cfg, "none", np.random.default_rng(4), motif_set=motif_set)
    assert cfg.features == ("exposure", "outcome", "bystander")
    assert d.labels.shape == (2000, 3)
    assert 0.45 < (d.confounder_start >= 0).mean() < 0.55  # inserted although regime "none"
    np.testing.assert_allclose(d.c_byst, 1.0 + 80.0 * d.q_conf)
    np.testing.assert_allclose(d.labels[:, 2], 2 * np.sqrt(d.y_byst + 0.375), rtol=1e-6)
    # no confounder terms in the exposure and outcome counts of regime "none"
    np.testing.assert_allclose(d.c_exp, 1.0 + PARAMS.alpha * d.q_exp)
    # without a bystander the data stream is the legacy one
    legacy = sim(50, "none", 4, motif_set)
    again = gen.simulate(
        50, PARAMS, gen.SimulationConfig(), "none", np.random.default_rng(4), motif_set=motif_set
    )
    np.testing.assert_array_equal(legacy.onehot, again.onehot)
    assert legacy.labels.shape == (50, 2) and legacy.c_byst is None


def test_learnable_oracle_keeps_the_sequence_confounder_terms(motif_set):
    cfg = gen.SimulationConfig(bystander_gamma=80.0)
    d = gen.simulate(300, PARAMS, cfg, "sequence", np.random.default_rng(6), motif_set=motif_set)
    plain = orc.Oracle(PARAMS, cfg, motif_set).counts(d.onehot)
    learn = orc.Oracle(PARAMS, cfg, motif_set, sequence_confounder=True).counts(d.onehot)
    np.testing.assert_allclose(learn[:, 0] - plain[:, 0], cfg.eta * d.q_conf)
    np.testing.assert_allclose(learn[:, 1] - plain[:, 1], cfg.nu * d.q_conf)
    np.testing.assert_allclose(learn[:, 2], plain[:, 2])
    # the learnable counts are exactly the generative Poisson means of the regime
    np.testing.assert_allclose(learn, np.stack([d.c_exp, d.c_out, d.c_byst], axis=1))


def test_exposure_to_bystander_truth_is_near_zero(motif_set):
    cfg = gen.SimulationConfig(bystander_gamma=80.0)
    d = gen.simulate(
        4, PARAMS, cfg, "none", np.random.default_rng(7), motif_set=motif_set, embedding="both"
    )
    eff = orc.oracle_effects(orc.Oracle(PARAMS, cfg, motif_set), d.onehot)
    assert eff.shape == (4, cfg.sequence_length, 3, 3)
    # no causal link: exposure-motif mutations move the bystander only where they make or break
    # a weak chance match of its motif, far less than they move the outcome
    planted = orc.true_local_effects(eff[..., [0, 1]], d.exposure_start, motif_set.exposure.length)
    null = orc.true_local_effects(eff[..., [0, 2]], d.exposure_start, motif_set.exposure.length)
    assert np.median(np.abs(null)) < 0.05 < 1.0 < np.median(planted)
