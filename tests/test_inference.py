"""The crossed (sequences x model samples) random-effects inference of global effects.

References: statsmodels' MixedLM fit of the same crossed variance-components model by REML (for a
balanced design with positive components REML equals the ANOVA estimators), brute-force loops over
the table, and coverage of the interval in simulations with known mean.
"""

import numpy as np
import pytest

from deepmr_kipoi import inference
from deepmr_kipoi.errors import DeepMRInputError


def _table(rng, n_samples, n_seq, mu=0.3, su=0.5, sm=0.2, se=0.1, reps=None):
    shape = (n_samples, n_seq) + (() if reps is None else (reps,))
    u = rng.normal(0, su, (1, n_seq) + shape[2:])
    m = rng.normal(0, sm, (n_samples, 1) + shape[2:])
    return mu + u + m + rng.normal(0, se, shape)


def test_matches_statsmodels_mixedlm_reml():
    sm = pytest.importorskip("statsmodels.formula.api")
    import pandas as pd

    rng = np.random.default_rng(11)
    theta = _table(rng, 6, 15)
    res = inference.crossed(theta)
    df = pd.DataFrame(
        [(s, i, theta[s, i]) for s in range(6) for i in range(15)], columns=["smp", "seq", "y"]
    )
    df["g"] = 1
    fit = sm.mixedlm(
        "y ~ 1",
        df,
        groups="g",
        re_formula="0",
        vc_formula={"seq": "0 + C(seq)", "smp": "0 + C(smp)"},
    ).fit(reml=True)
    vc = dict(zip(fit.model.exog_vc.names, fit.vcomp))
    assert res.sigma2_sequence == pytest.approx(vc["seq"], rel=1e-4)
    assert res.sigma2_sample == pytest.approx(vc["smp"], rel=1e-4)
    assert res.sigma2_residual == pytest.approx(fit.scale, rel=1e-4)
    assert res.estimate == pytest.approx(fit.fe_params["Intercept"], rel=1e-8)
    assert res.se == pytest.approx(fit.bse_fe["Intercept"], rel=1e-4)


def test_brute_force_mean_squares_and_satterthwaite():
    rng = np.random.default_rng(3)
    theta = _table(rng, 4, 7)
    s_n, n_n = theta.shape
    mu = sum(theta[s, i] for s in range(s_n) for i in range(n_n)) / (s_n * n_n)
    row = [sum(theta[s, i] for s in range(s_n)) / s_n for i in range(n_n)]
    col = [sum(theta[s, i] for i in range(n_n)) / n_n for s in range(s_n)]
    ms_seq = s_n * sum((r - mu) ** 2 for r in row) / (n_n - 1)
    ms_smp = n_n * sum((c - mu) ** 2 for c in col) / (s_n - 1)
    ms_err = sum(
        (theta[s, i] - row[i] - col[s] + mu) ** 2 for s in range(s_n) for i in range(n_n)
    ) / ((n_n - 1) * (s_n - 1))
    assert ms_seq > ms_err and ms_smp > ms_err
    var = (ms_seq + ms_smp - ms_err) / (s_n * n_n)
    df = (ms_seq + ms_smp - ms_err) ** 2 / (
        ms_seq**2 / (n_n - 1) + ms_smp**2 / (s_n - 1) + ms_err**2 / ((n_n - 1) * (s_n - 1))
    )
    res = inference.crossed(theta)
    assert res.estimate == pytest.approx(mu, rel=1e-12)
    assert res.se == pytest.approx(np.sqrt(var), rel=1e-12)
    # Satterthwaite gives 8.9 df here; a mean over 7 sequences rests on at most their 6
    assert df > n_n - 1
    assert res.df == pytest.approx(n_n - 1, rel=1e-12)
    df = n_n - 1
    from scipy import stats

    crit = stats.t.ppf(0.975, df)
    assert res.ci_low == pytest.approx(mu - crit * np.sqrt(var), rel=1e-12)
    assert res.pvalue == pytest.approx(2 * stats.t.sf(abs(mu) / np.sqrt(var), df), rel=1e-10)


def test_satterthwaite_df_below_the_sequence_df_are_kept():
    rng = np.random.default_rng(4)
    theta = _table(rng, 4, 40, su=0.1, sm=0.3)
    s_n, n_n = theta.shape
    mu = theta.mean()
    ms_seq = s_n * ((theta.mean(axis=0) - mu) ** 2).sum() / (n_n - 1)
    ms_smp = n_n * ((theta.mean(axis=1) - mu) ** 2).sum() / (s_n - 1)
    resid = theta - theta.mean(axis=0) - theta.mean(axis=1, keepdims=True) + mu
    ms_err = (resid**2).sum() / ((n_n - 1) * (s_n - 1))
    df = (ms_seq + ms_smp - ms_err) ** 2 / (
        ms_seq**2 / (n_n - 1) + ms_smp**2 / (s_n - 1) + ms_err**2 / ((n_n - 1) * (s_n - 1))
    )
    assert df < n_n - 1
    assert inference.crossed(theta).df == pytest.approx(df, rel=1e-12)


def test_two_sequences_get_one_degree_of_freedom():
    # members that agree closely and two sequences whose estimates happen to agree: the sequence
    # component is truncated, and without the cap the interval would borrow the samples' 4 df
    theta = np.array([[0.50, 0.52], [0.51, 0.50], [0.49, 0.51], [0.50, 0.50], [0.52, 0.49]])
    res = inference.crossed(theta)
    assert res.df == pytest.approx(1.0)
    from scipy import stats

    tstat = res.estimate / res.se
    assert res.pvalue == pytest.approx(2 * stats.t.sf(tstat, 1), rel=1e-12)
    assert 2 * stats.t.sf(tstat, 4) < 1e-5 < 1e-3 < res.pvalue


def test_sequences_without_a_fit_do_not_blank_the_cell():
    # 6 of 10 sequences have no local fit in any sample (too few instruments): the headline uses
    # the 4 that have one; it used to be NaN because every sample then missed > 50% of sequences
    rng = np.random.default_rng(12)
    theta = _table(rng, 5, 10)
    holed = theta.copy()
    holed[:, :6] = np.nan
    res = inference.crossed(holed)
    ref = inference.crossed(theta[:, 6:])
    assert res.n_sequences == 4 and res.n_samples == 5
    assert res.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert res.se == pytest.approx(ref.se, rel=1e-12)


def test_truncated_sample_component_leaves_sequence_mean_square():
    # every sample has the same mean over sequences: MS_smp = 0 < MS_err, the sample component is
    # truncated at 0 and the SE is that of the sequence means alone, with N - 1 df
    rng = np.random.default_rng(5)
    seq = rng.normal(1.0, 0.4, 12)
    noise = rng.normal(0, 0.05, (5, 12))
    theta = seq + noise - noise.mean(axis=1, keepdims=True)
    res = inference.crossed(theta)
    seq_means = theta.mean(axis=0)
    assert res.se == pytest.approx(seq_means.std(ddof=1) / np.sqrt(12), rel=1e-10)
    assert res.df == pytest.approx(11, rel=1e-10)
    assert res.sigma2_sample == 0.0


def test_single_sequence_and_single_sample():
    rng = np.random.default_rng(8)
    one_seq = rng.normal(0.2, 0.3, (7, 1))
    res = inference.crossed(one_seq)
    assert res.se == pytest.approx(one_seq[:, 0].std(ddof=1) / np.sqrt(7), rel=1e-12)
    assert res.df == pytest.approx(6)
    one_sample = rng.normal(0.2, 0.3, (1, 9))
    res = inference.crossed(one_sample)
    assert res.se == pytest.approx(one_sample[0].std(ddof=1) / 3, rel=1e-12)
    assert res.df == pytest.approx(8)


def test_incomplete_sequences_are_dropped_per_cell():
    rng = np.random.default_rng(2)
    theta = _table(rng, 5, 10, reps=2)
    holed = theta.copy()
    holed[3, 4, 0] = np.nan  # sequence 4 drops out of cell 0 only
    res = inference.crossed_batched(holed)
    assert res.n_sequences.tolist() == [9, 10]
    ref = inference.crossed(np.delete(theta[..., 0], 4, axis=1))
    assert res.estimate[0] == pytest.approx(ref.estimate, rel=1e-12)
    assert res.se[0] == pytest.approx(ref.se, rel=1e-12)
    assert res.se[1] == pytest.approx(inference.crossed(theta[..., 1]).se, rel=1e-12)


def test_all_missing_cell_is_nan():
    theta = np.full((5, 4, 1), np.nan)
    res = inference.crossed_batched(theta)
    assert np.isnan(res.estimate[0]) and np.isnan(res.se[0]) and res.n_sequences[0] == 0


@pytest.mark.parametrize(
    "n_samples,n_seq,su,sm,low",
    [
        (5, 20, 0.5, 0.2, 0.935),
        (5, 40, 0.1, 0.3, 0.935),
        (30, 8, 0.3, 0.05, 0.935),
        # documented limit: with 3 samples dominating the variance, Satterthwaite's ~2 df undercover
        (3, 60, 0.2, 0.2, 0.91),
    ],
)
def test_interval_covers_the_mean_at_its_level(n_samples, n_seq, su, sm, low):
    rng = np.random.default_rng(n_samples * 100 + n_seq)
    reps = 4000
    theta = _table(rng, n_samples, n_seq, mu=0.7, su=su, sm=sm, se=0.15, reps=reps)
    res = inference.crossed_batched(theta)
    cover = np.mean((res.ci_low <= 0.7) & (0.7 <= res.ci_high))
    # binomial SD at 0.95 with 4000 draws is 0.0034
    assert low <= cover <= 0.965, cover
    # a z interval from the sequence means alone (what a meta-analysis over sequences sees when
    # the samples share the model error) undercovers whenever the sample term matters
    naive_se = theta.mean(axis=0).std(axis=0, ddof=1) / np.sqrt(n_seq)
    naive = np.mean(np.abs(theta.mean(axis=(0, 1)) - 0.7) <= 1.96 * naive_se)
    if sm >= su / 2:
        assert naive < 0.9


def test_bad_input_is_one_line_error():
    with pytest.raises(DeepMRInputError, match="shape"):
        inference.crossed(np.zeros(4))
    with pytest.raises(DeepMRInputError, match="level"):
        inference.crossed(np.zeros((3, 3)), level=1.5)


def test_sample_missing_for_most_sequences_is_left_out():
    rng = np.random.default_rng(9)
    theta = _table(rng, 6, 12)
    holed = theta.copy()
    holed[2, :9] = np.nan  # sample 2 (a silenced exposure, say) has no estimate for 9 of 12
    holed[4, 5] = np.nan  # one ordinary failure: sequence 5 drops out
    res = inference.crossed(holed)
    ref = inference.crossed(np.delete(np.delete(theta, 2, axis=0), 5, axis=1))
    assert res.n_samples == 5 and res.n_sequences == 11
    assert res.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert res.se == pytest.approx(ref.se, rel=1e-12)
    assert res.df == pytest.approx(ref.df, rel=1e-12)


def test_streaming_accumulator_equals_the_whole_table():
    rng = np.random.default_rng(21)
    theta = _table(rng, 5, 30, mu=3.0, reps=40) + 1e3  # large offset: sums about a shift
    theta[1, 7, 3] = np.nan  # sequence 7 skips pair 3
    acc = inference.CrossedAccumulator(5, (40,))
    for i in range(30):
        acc.add(theta[:, i])
    res = acc.result()
    ref = inference.crossed_batched(theta)
    for f in ("estimate", "se", "df", "ci_low", "pvalue", "sigma2_sequence", "sigma2_sample"):
        np.testing.assert_allclose(
            getattr(res, f), getattr(ref, f), rtol=1e-7, atol=1e-9, err_msg=f
        )
    assert res.n_sequences[3] == 29 and res.n_sequences[0] == 30
    with pytest.raises(DeepMRInputError, match="shape"):
        acc.add(theta[:, 0, :5])
