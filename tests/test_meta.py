"""Random-effects meta-analysis against metafor's published values and brute-force recomputation."""

import numpy as np
import pytest
from scipy import optimize, stats

from deepmr_kipoi import meta

# metafor's dat.bcg: log relative risks and their standard errors (escalc(measure="RR")).
BCG_YI = np.array(
    [
        -0.889311333920205,
        -1.58538865720143,
        -1.34807314829969,
        -1.44155119002131,
        -0.217547322211296,
        -0.786115585818864,
        -1.62089822359839,
        0.0119523335238405,
        -0.469417648738149,
        -1.37134480347278,
        -0.339358828338391,
        0.445913400571379,
        -0.0173139482168798,
    ]
)
BCG_SEI = np.array(
    [
        0.570600354892951,
        0.441113501718258,
        0.644490469571091,
        0.141456819921302,
        0.226296646395016,
        0.0831000508778951,
        0.472247019654243,
        0.0629410779842364,
        0.237558856840255,
        0.270231000466321,
        0.111410116109623,
        0.729729981020482,
        0.267216503390016,
    ]
)


def test_bcg_golden_values_match_metafor_to_1e6():
    # metafor 3.8 rma(yi, sei=sei, method=..., control=list(threshold=1e-12)), quoted in issue 3.
    dl = meta.random_effects(BCG_YI, BCG_SEI, method="DL")
    assert dl.tau2 == pytest.approx(0.30876026, abs=1e-6)
    assert dl.estimate == pytest.approx(-0.71411722, abs=1e-6)
    assert dl.se == pytest.approx(0.17874209, abs=1e-6)
    assert dl.i2 == pytest.approx(92.117347, abs=1e-6)
    assert dl.q == pytest.approx(152.233008, abs=1e-6)
    assert dl.q_df == 12 and dl.k == 13 and dl.converged and dl.message == "ok"

    reml = meta.random_effects(BCG_YI, BCG_SEI)  # REML and z are the defaults, as in rma()
    assert reml.method == "REML" and reml.test == "z"
    assert reml.tau2 == pytest.approx(0.31324326, abs=1e-6)
    assert reml.estimate == pytest.approx(-0.71453234, abs=1e-6)
    assert reml.se == pytest.approx(0.17978152, abs=1e-6)
    assert (reml.ci_low, reml.ci_high) == pytest.approx((-1.06689764, -0.36216705), abs=1e-6)
    assert (reml.pi_low, reml.pi_high) == pytest.approx((-1.86669222, 0.43762753), abs=1e-6)

    knha = meta.random_effects(BCG_YI, BCG_SEI, method="REML", test="knha")
    assert knha.estimate == pytest.approx(-0.71453234, abs=1e-6)
    assert knha.se == pytest.approx(0.18079174, abs=1e-6)
    assert (knha.ci_low, knha.ci_high) == pytest.approx((-1.10844371, -0.32062097), abs=1e-6)

    pm = meta.random_effects(BCG_YI, BCG_SEI, method="PM")
    assert pm.tau2 == pytest.approx(0.31806845, abs=1e-6)
    assert pm.estimate == pytest.approx(-0.71496815, abs=1e-6)


def test_bcg_heterogeneity_and_test_statistics_follow_their_definitions():
    r = meta.random_effects(BCG_YI, BCG_SEI, method="REML", test="knha")
    v, k = BCG_SEI**2, BCG_YI.size
    w = 1 / v
    s2 = (k - 1) * w.sum() / (w.sum() ** 2 - (w**2).sum())
    assert r.i2 == pytest.approx(100 * r.tau2 / (s2 + r.tau2), rel=1e-12)
    assert r.h2 == pytest.approx(r.tau2 / s2 + 1, rel=1e-12)
    assert r.q_pvalue == pytest.approx(stats.chi2.sf(152.233008082373, 12), rel=1e-9)
    crit = stats.t.isf(0.025, k - 1)
    assert r.pvalue == pytest.approx(2 * stats.t.sf(abs(r.estimate / r.se), k - 1), rel=1e-12)
    half = crit * np.sqrt(r.se**2 + r.tau2)  # prediction interval with the t critical value
    assert (r.pi_low, r.pi_high) == pytest.approx((r.estimate - half, r.estimate + half), rel=1e-12)
    # DL I2 and H2 (metafor's test suite: 92.1173, 12.6861).
    dl = meta.random_effects(BCG_YI, BCG_SEI, method="DL")
    assert dl.i2 == pytest.approx(92.1173, abs=1e-4) and dl.h2 == pytest.approx(12.6861, abs=1e-4)


@pytest.mark.parametrize(
    ("yi", "vi", "dl", "reml"),
    [
        # Viechtbauer (2005), J Educ Behav Stat 30:261, examples 1 and 2 (pages 271-272, as in
        # metafor's tests): (tau2, I2, H2, se.tau2) for DL and REML, published to 4 decimals.
        (
            [-0.581, 0.530, 0.771, 1.031, 0.553, 0.295, 0.078, 0.573, -0.176, -0.232],
            [0.023, 0.052, 0.060, 0.115, 0.095, 0.203, 0.200, 0.211, 0.051, 0.040],
            (0.2768, 80.4447, 5.1137, 0.1841),
            (0.2232, 76.8399, 4.3178, 0.1464),
        ),
        (
            [
                0.100,
                -0.162,
                -0.090,
                -0.049,
                -0.046,
                -0.010,
                -0.431,
                -0.261,
                0.134,
                0.019,
                0.175,
                0.056,
                0.045,
                0.103,
                0.121,
                -0.482,
                0.290,
                0.342,
            ],
            [
                0.016,
                0.015,
                0.050,
                0.050,
                0.032,
                0.052,
                0.036,
                0.024,
                0.034,
                0.033,
                0.031,
                0.034,
                0.039,
                0.167,
                0.134,
                0.096,
                0.016,
                0.035,
            ],
            (0.0126, 27.5275, 1.3798, 0.0159),
            (0.0157, 32.0203, 1.4710, 0.0167),
        ),
    ],
)
def test_viechtbauer2005_published_values(yi, vi, dl, reml):
    for method, ref in (("DL", dl), ("REML", reml)):
        r = meta.random_effects(yi, np.sqrt(vi), method=method)
        # The published REML values come from metafor's default threshold 1e-5, hence the slack.
        assert r.tau2 == pytest.approx(ref[0], abs=6e-5)
        assert r.i2 == pytest.approx(ref[1], abs=3e-3)
        assert r.h2 == pytest.approx(ref[2], abs=2e-4)
        assert r.tau2_se == pytest.approx(ref[3], abs=6e-5)


def _brute_force(y, v, method):
    """Independent tau2: explicit P-matrix algebra, root finding with scipy's brentq."""
    k = y.size
    ones = np.ones(k)

    def p_matrix(tau2):
        w_mat = np.diag(1 / (v + tau2))
        return w_mat - w_mat @ np.outer(ones, ones) @ w_mat / (ones @ w_mat @ ones)

    def q_gen(tau2):
        return y @ p_matrix(tau2) @ y

    if method == "DL":
        p0 = p_matrix(0.0)
        return max(0.0, (q_gen(0.0) - (k - 1)) / np.trace(p0))
    if method == "PM":
        if q_gen(0.0) <= k - 1:
            return 0.0
        return optimize.brentq(lambda t: q_gen(t) - (k - 1), 0.0, 1e3, xtol=1e-15, rtol=1e-14)

    def score(tau2):  # REML: y'PPy - tr(P)
        p = p_matrix(tau2)
        return y @ p @ p @ y - np.trace(p)

    def reml_ll(tau2):
        p = p_matrix(tau2)
        return -0.5 * (np.log(v + tau2).sum() + np.log(np.sum(1 / (v + tau2))) + y @ p @ y)

    grid = np.concatenate([[0.0], np.geomspace(1e-8, 1e3, 400)])
    s = np.array([score(t) for t in grid])
    candidates = [0.0] + [
        optimize.brentq(score, a, b, xtol=1e-16, rtol=1e-14)
        for a, b, sa, sb in zip(grid[:-1], grid[1:], s[:-1], s[1:])
        if sa > 0 >= sb
    ]
    return max(candidates, key=reml_ll)


@pytest.mark.parametrize("method", ["DL", "REML", "PM"])
def test_tau2_agrees_with_brute_force_root_finding(method):
    rng = np.random.default_rng(11)
    for tau in (0.0, 0.02, 0.05, 0.1, 0.3, 1.0) * 3:
        k = int(rng.integers(2, 25))
        se = rng.uniform(0.05, 0.5, k)
        y = rng.normal(0.3, np.sqrt(se**2 + tau**2))
        r = meta.random_effects(y, se, method=method)
        ref = _brute_force(y, se**2, method)
        assert r.converged
        assert r.tau2 == pytest.approx(ref, rel=1e-8, abs=1e-12), (k, tau)
        w = 1 / (se**2 + ref)
        assert r.estimate == pytest.approx(np.sum(w * y) / np.sum(w), rel=1e-8, abs=1e-12)
        assert r.se == pytest.approx(np.sqrt(1 / np.sum(w)), rel=1e-8)


def test_reml_converges_where_plain_fisher_scoring_oscillates():
    y = np.array([0.4246, 0.4958, 0.0134, 0.0976, 0.4229, 0.2993, 0.5141, 0.0348])
    se = np.array([0.2563, 0.4708, 0.4761, 0.0936, 0.0504, 0.254, 0.4587, 0.4148])
    v = se**2
    # rma()'s iteration (Fisher scoring with step halving) from the HE start: no fixed point.
    t = max(0.0, (np.sum((y - y.mean()) ** 2) - (1 - 1 / 8) * v.sum()) / 7)
    steps = []
    for _ in range(200):
        w = 1 / (v + t)
        r = y - np.sum(w * y) / w.sum()
        tr_p = w.sum() - (w**2).sum() / w.sum()
        tr_pp = (w**2).sum() - 2 * (w**3).sum() / w.sum() + ((w**2).sum() / w.sum()) ** 2
        adj = (np.sum(w**2 * r**2) - tr_p) / tr_pp
        while t + adj < 0:
            adj /= 2
        t += adj
        steps.append(abs(adj))
    assert min(steps[-50:]) > 1e-5
    r = meta.random_effects(y, se, method="REML")
    assert r.converged and r.tau2 == pytest.approx(_brute_force(y, v, "REML"), rel=1e-9)


def test_reml_ascent_is_not_stopped_by_rounding_when_the_loglik_is_near_zero():
    # Rescaling the data by c shifts the restricted log-likelihood by -(k - 1) log c, so near
    # c0 its maximum is ~0 and a line search with slack relative to |loglik| alone halves good
    # steps on rounding noise and stops short of the maximum (this caught ~4% of such cells).
    rng = np.random.default_rng(7)
    for _ in range(4):
        se = rng.uniform(0.1, 0.6, 26)
        y = rng.normal(0.0, np.sqrt(se**2 + 0.15))
        v = se**2
        t = _brute_force(y, v, "REML")
        w = 1 / (v + t)
        r = y - np.sum(w * y) / w.sum()
        ll = -0.5 * (np.log(v + t).sum() + np.log(w.sum()) + np.sum(w * r * r))
        c = np.exp(ll / 25) * (1 + np.linspace(-1e-6, 1e-6, 41))
        b = meta.random_effects_batched(y * c[:, None], se * c[:, None])
        assert b.converged.all()
        np.testing.assert_allclose(b.tau2 / c**2, t, rtol=1e-9)


def test_paule_mandel_with_knha_leaves_the_se_unscaled():
    # PM solves Q(tau2) = k - 1, so the Knapp-Hartung factor sum w r^2 / (k - 1) is exactly 1.
    z = meta.random_effects(BCG_YI, BCG_SEI, method="PM", test="z")
    t = meta.random_effects(BCG_YI, BCG_SEI, method="PM", test="knha")
    assert t.se == pytest.approx(z.se, rel=1e-10)
    assert t.ci_high - t.estimate == pytest.approx(stats.t.isf(0.025, 12) * z.se, rel=1e-10)


@pytest.mark.parametrize("method", ["DL", "REML", "PM"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_equal_estimates_give_no_heterogeneity(method, test):
    se = np.array([0.1, 0.2, 0.3, 0.15, 0.25])
    r = meta.random_effects(np.full(5, 0.7), se, method=method, test=test)
    assert r.tau2 == 0.0 and r.q == pytest.approx(0.0, abs=1e-12)
    assert r.i2 == 0.0 and r.h2 == 1.0 and r.q_pvalue == pytest.approx(1.0)
    assert r.estimate == pytest.approx(0.7, rel=1e-14)
    fixed_se = np.sqrt(1 / np.sum(1 / se**2))
    # With identical estimates the Knapp-Hartung residual sum is 0 and metafor sets s2w = 0.
    assert r.se == pytest.approx(0.0 if test == "knha" else fixed_se, abs=1e-15)


def test_reml_boundary_is_exactly_zero_with_non_positive_score():
    rng = np.random.default_rng(3)
    se = rng.uniform(0.5, 1.0, 12)
    y = 0.1 * rng.standard_normal(12)  # far less spread than the sampling error
    r = meta.random_effects(y, se, method="REML")
    assert r.tau2 == 0.0 and r.converged
    w = 1 / se**2
    resid = y - np.sum(w * y) / np.sum(w)
    assert np.sum(w**2 * resid**2) - (w.sum() - (w**2).sum() / w.sum()) <= 0  # REML score at 0
    assert r.i2 == 0.0 and r.h2 == 1.0
    assert (r.pi_low, r.pi_high) == pytest.approx((r.ci_low, r.ci_high), rel=1e-14)


def test_single_study_is_reported_not_raised():
    r = meta.random_effects([0.4], [0.2], method="REML", test="knha")
    assert r.k == 1 and r.tau2 == 0.0 and r.test == "z"
    assert r.estimate == pytest.approx(0.4, rel=1e-15) and r.se == pytest.approx(0.2)
    assert r.ci_low == pytest.approx(0.4 - stats.norm.isf(0.025) * 0.2, rel=1e-12)
    assert np.isnan(r.q) and np.isnan(r.i2) and np.isnan(r.h2) and np.isnan(r.q_pvalue)
    assert r.q_df == 0 and "single study" in r.message


def test_two_studies_knha_uses_t_with_one_df():
    r = meta.random_effects([0.1, 0.5], [0.1, 0.2], method="DL", test="knha")
    assert r.ci_high - r.estimate == pytest.approx(stats.t.isf(0.025, 1) * r.se, rel=1e-12)


def test_non_convergence_falls_back_to_dl_and_says_so():
    r = meta.random_effects(BCG_YI, BCG_SEI, method="REML", maxiter=1)
    assert not r.converged and "did not converge" in r.message
    assert r.tau2 == pytest.approx(0.30876026, abs=1e-6)  # the DL estimate
    b = meta.random_effects_batched(BCG_YI, BCG_SEI, method="PM", maxiter=1)
    assert int(b.reason) == 5 and not bool(b.converged)
    assert float(b.tau2) == pytest.approx(0.30876026, abs=1e-6)


def _ragged(rng, n_cells, kmax):
    se = rng.uniform(0.02, 0.6, (n_cells, kmax))
    tau = rng.choice([0.0, 0.01, 0.05, 0.3, 2.0], n_cells)[:, None]
    y = rng.normal(rng.normal(0, 1, (n_cells, 1)), np.sqrt(se**2 + tau**2))
    mask = rng.random((n_cells, kmax)) < rng.uniform(0.1, 1.0, (n_cells, 1))
    mask[:3] = False
    mask[0, 0] = True  # k = 1
    mask[1, :2] = True  # k = 2
    y[~mask] = np.nan  # excluded entries are never read
    se[~mask] = np.nan
    return y, se, mask


@pytest.mark.parametrize("method", ["DL", "REML", "PM"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_batched_agrees_with_scalar_on_ragged_data(method, test):
    rng = np.random.default_rng(5)
    y, se, mask = _ragged(rng, 60, 30)
    b = meta.random_effects_batched(
        y.reshape(6, 10, 30),
        se.reshape(6, 10, 30),
        mask.reshape(6, 10, 30),
        method=method,
        test=test,
        level=0.9,
    )
    assert b.estimate.shape == (6, 10)
    fields = (
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "pvalue",
        "tau2",
        "tau2_se",
        "i2",
        "h2",
        "q",
        "q_pvalue",
        "pi_low",
        "pi_high",
    )
    for i in range(60):
        cell = np.unravel_index(i, (6, 10))
        if not mask[i].any():
            assert int(b.reason[cell]) == 1 and np.isnan(b.estimate[cell])
            continue
        r = meta.random_effects(y[i, mask[i]], se[i, mask[i]], method, test, level=0.9)
        assert int(b.k[cell]) == r.k and int(b.q_df[cell]) == r.q_df
        assert bool(b.converged[cell]) == r.converged
        assert meta.REASONS[int(b.reason[cell])] == r.message
        for name in fields:
            np.testing.assert_allclose(
                b.__dict__[name][cell],
                getattr(r, name),
                rtol=1e-9,
                atol=1e-12,
                err_msg=f"{name} cell {i}",
            )


def test_batched_reports_bad_cells_and_carries_on():
    y = np.tile(BCG_YI, (5, 1))
    se = np.tile(BCG_SEI, (5, 1))
    mask = np.ones_like(y, dtype=bool)
    y[1, 3] = np.nan
    se[2, 4] = 0.0
    se[3, 0] = np.inf
    mask[4] = False
    b = meta.random_effects_batched(y, se, mask)
    assert b.reason.tolist() == [0, 2, 3, 3, 1]
    assert np.isnan(b.estimate[1:]).all() and np.isnan(b.tau2[1:]).all()
    assert b.estimate[0] == pytest.approx(-0.71453234, abs=1e-6)
    # The same bad entries are ignored once masked out.
    ok = meta.random_effects_batched(
        y[:4], se[:4], np.isfinite(y[:4]) & (se[:4] > 0) & np.isfinite(se[:4])
    )
    assert (ok.reason == 0).all() and (ok.k == [13, 12, 12, 12]).all()


@pytest.mark.parametrize("method", ["REML", "DL", "PM"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_a_study_holding_all_the_weight_warns_nothing(method, test):
    """Two studies, one with an SE of 1e160: the weights are (1, 1e-320), tr P0 = 0 in floating
    point. The fixed-effect answer (the first study) and tau2 = 0 come back, with no numpy warning
    per cell (a DeepSEA-scale run has many such cells)."""
    import warnings

    y = np.array([[0.1, 0.3], [0.2, 0.5]])
    se = np.array([[1.0, 1e160], [1.0, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        b = meta.random_effects_batched(y, se, method=method, test=test)
    assert b.estimate[0] == pytest.approx(0.1) and b.tau2[0] == 0.0
    # the ordinary cell beside it is the scalar fit
    ref = meta.random_effects(y[1], se[1], method=method, test=test)
    assert b.estimate[1] == pytest.approx(ref.estimate, rel=1e-10)


def test_batched_broadcasts_shared_ses():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(4, 13))
    b = meta.random_effects_batched(y, BCG_SEI)
    r = meta.random_effects(y[2], BCG_SEI)
    assert b.tau2.shape == (4,) and b.tau2[2] == pytest.approx(r.tau2, rel=1e-10)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([0.1, 0.2], [0.1]), {}, "equal length"),
        (([], []), {}, "no studies"),
        (([0.1, np.nan], [0.1, 0.1]), {}, "NaN"),
        (([0.1, 0.2], [0.1, 0.0]), {}, "positive"),
        (([0.1, 0.2], [0.1, -1.0]), {}, "positive"),
        (([0.1, 0.2], [0.1, 0.2]), {"method": "ML"}, "method"),
        (([0.1, 0.2], [0.1, 0.2]), {"test": "t"}, "test"),
        (([0.1, 0.2], [0.1, 0.2]), {"level": 95}, r"level must be a confidence level in \(0, 1\)"),
    ],
)
def test_scalar_api_rejects_bad_input_with_one_line_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        meta.random_effects(*args, **kwargs)
    assert "\n" not in str(err.value)


def test_batched_rejects_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match="broadcast"):
        meta.random_effects_batched(np.zeros((3, 4)), np.ones((3, 5)))
