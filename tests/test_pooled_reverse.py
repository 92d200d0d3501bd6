"""The pooled test over sequences, and the direction step that uses it for a reverse pair with too
few local fits: the estimator against a cluster-robust regression (statsmodels), the stored sums
against the local IVW fits of a real run, and the three outcomes of the direction step."""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from deepmr_kipoi import pipeline, verdict
from deepmr_kipoi.run.aggregate import pooled_ivw
from tests.test_verdict import _by_pair, _rows


def _instruments(rng, n_sequences, slope):
    """Instrument-level data of one pair: (sequence, bx, by, se_y) with 0-4 instruments per
    sequence, a slope that varies between sequences, and noise on by."""
    rows = []
    for s in range(n_sequences):
        k = int(rng.integers(0, 5))
        local = slope + rng.normal(0, 0.2)
        for _ in range(k):
            bx = rng.normal(0, 1.0)
            se_y = rng.uniform(0.05, 0.3)
            rows.append((s, bx, local * bx + rng.normal(0, se_y), se_y))
    return pd.DataFrame(rows, columns=["sequence", "bx", "by", "se_y"])


@pytest.mark.parametrize("seed", range(4))
def test_pooled_ivw_is_the_weighted_regression_with_cluster_robust_errors(seed):
    rng = np.random.default_rng(seed)
    n_sequences = 15
    frames = [_instruments(rng, n_sequences, slope) for slope in (0.0, 0.7, -1.5)]
    sxy, sxx = np.zeros((3, n_sequences)), np.zeros((3, n_sequences))
    for p, f in enumerate(frames):
        w = 1.0 / f.se_y**2
        sxy[p] = np.bincount(f.sequence, w * f.bx * f.by, minlength=n_sequences)
        sxx[p] = np.bincount(f.sequence, w * f.bx**2, minlength=n_sequences)
    got = pooled_ivw(sxy, sxx, level=0.9)
    for p, f in enumerate(frames):
        # IVW of all instruments = weighted least squares through the origin; sequences are the
        # clusters; statsmodels' G/(G-1) correction without the (N-1)/(N-K) factor
        fit = sm.WLS(f.by, f.bx, weights=1.0 / f.se_y**2).fit(
            cov_type="cluster", cov_kwds={"groups": f.sequence, "use_correction": False}
        )
        groups = f.sequence.nunique()
        se = fit.bse.iloc[0] * np.sqrt(groups / (groups - 1))
        assert got["estimate"][p] == pytest.approx(fit.params.iloc[0], rel=1e-10)
        assert got["se"][p] == pytest.approx(se, rel=1e-8)
        assert got["sequences"][p] == groups
        assert got["df"][p] == groups - 1
        half = stats.t.ppf(0.95, groups - 1) * se
        assert got["ci_low"][p] == pytest.approx(fit.params.iloc[0] - half, rel=1e-8)
        assert got["ci_high"][p] == pytest.approx(fit.params.iloc[0] + half, rel=1e-8)


def test_pooled_ivw_needs_two_sequences_with_instruments():
    got = pooled_ivw(np.array([[0.0, 2.0, np.nan]]), np.array([[0.0, 4.0, np.nan]]))
    assert got["sequences"][0] == 1
    assert np.isnan(got["estimate"][0]) and np.isnan(got["se"][0])


def test_the_run_stores_the_sums_of_every_cell_and_pools_them():
    config = pipeline.RunConfig(
        n_sequences=6, chunk_size=3, progress=False, figures=False, report=False, seed=3
    )
    from deepmr_kipoi.simulate import load_demo_model

    result = pipeline.run(config, model=load_demo_model(), identity={"name": "demo"})
    local = result.local_effects
    ivw = local[local.method == "ivw"]
    fitted = ivw[ivw.reason == 0]
    assert len(fitted) > 0
    # where there is a local fit, the stored sums give its IVW estimate exactly
    np.testing.assert_allclose(
        fitted.pooled_sxy / fitted.pooled_sxx, fitted.estimate, rtol=1e-9, atol=1e-12
    )
    # the sums are the same on every method's row, and kept where no local fit was made
    egger = local[local.method == "egger"]
    np.testing.assert_array_equal(egger.pooled_sxy.to_numpy(), ivw.pooled_sxy.to_numpy())
    assert ((ivw.reason != 0) & (ivw.n_instruments > 0) & (ivw.pooled_sxx > 0)).any()
    g = result.global_effects
    g = g[g.method == "ivw"].set_index(["exposure", "outcome"])
    for (x, y), row in g.iterrows():
        cells = ivw[(ivw.exposure == x) & (ivw.outcome == y)]
        want = pooled_ivw(
            cells.pooled_sxy.to_numpy()[None], cells.pooled_sxx.to_numpy()[None], level=0.95
        )
        assert row.pooled_sequences == want["sequences"][0]
        assert row.pooled_estimate == pytest.approx(want["estimate"][0], nan_ok=True)


def _pooled(rows, sequences, estimate, se, df=9.0, steiger=0.4):
    for r in rows:
        crit = stats.t.ppf(0.975, df)
        r.update(
            pooled_sequences=sequences,
            pooled_estimate=estimate,
            pooled_se=se,
            pooled_df=df,
            pooled_ci_low=estimate - crit * se,
            pooled_ci_high=estimate + crit * se,
            pooled_steiger_ratio=steiger,
        )
    return rows


@pytest.mark.parametrize(
    ("sequences", "estimate", "steiger", "verdict_", "says"),
    [
        (10, 0.01, 0.4, "causal", "reverse direction tested on its instruments pooled over 10"),
        (10, 0.8, 0.4, "undetermined", "but the reverse direction is supported by its instr"),
        # an effect found on instruments that move X more than Y: X's own sites leaking into the
        # reverse pair (its estimate is then about 1 / the forward effect), not a reverse effect
        (10, 1.6, 1.3, "causal", "and not supported (1.6 [1.49, 1.71]; Steiger ratio 1.30)"),
        (
            4,
            0.01,
            0.4,
            "undetermined",
            "could not be tested (2 of 20 sequences with a local fit, 4",
        ),
    ],
)
def test_a_reverse_pair_with_too_few_fits_is_tested_on_its_pooled_instruments(
    sequences, estimate, steiger, verdict_, says
):
    forward = _pooled(_rows("X", "Y", (0.6, 0.05), (0.65, 0.1)), 20, 0.6, 0.05)
    # the reverse has 2 local fits: not estimable; its pooled test decides the direction
    reverse = _pooled(
        _rows("Y", "X", (0.0, 0.5), (0.0, 0.6), n=2), sequences, estimate, 0.05, steiger=steiger
    )
    table = pd.DataFrame(forward + reverse)
    out = _by_pair(table, verdict.verdicts(table))
    assert out.loc[("X", "Y"), "verdict"] == verdict_
    assert says in out.loc[("X", "Y"), "verdict_reason"]
    assert out.loc[("Y", "X"), "verdict"] == "undetermined"  # too few fits for its own verdict
    if verdict_ == "causal":
        assert out.loc[("X", "Y"), "direction"] == "X -> Y"
