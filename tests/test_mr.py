"""MR estimators: golden values from the R packages, independent references, analytic cases,
degenerate input, and the batched API against the scalar one."""

import numpy as np
import pytest
from scipy import stats

from deepmr_kipoi import mr
from deepmr_kipoi.mr import batched as mr_batched
from deepmr_kipoi.mr.mode import mode_rows

# Waterworth et al. 2010 LDL-C -> CHD data as shipped in MendelianRandomization (28 variants).
LDLC = [
    0.026,
    -0.044,
    -0.038,
    -0.023,
    -0.017,
    -0.031,
    -0.018,
    0.046,
    0.059,
    0.004,
    0.011,
    -0.005,
    0.004,
    0.022,
    -0.005,
    -0.002,
    -0.002,
    0.004,
    0.011,
    0.009,
    -0.011,
    -0.003,
    -0.012,
    0.0003,
    -0.015,
    -0.008,
    0.009,
    -0.036,
]
LDLCSE = [
    0.004,
    0.004,
    0.004,
    0.003,
    0.003,
    0.006,
    0.004,
    0.007,
    0.004,
    0.003,
    0.004,
    0.005,
    0.005,
    0.005,
    0.004,
    0.004,
    0.003,
    0.004,
    0.004,
    0.003,
    0.004,
    0.003,
    0.004,
    0.003,
    0.003,
    0.004,
    0.003,
    0.007,
]
CHD = [
    0.0677,
    -0.1625,
    -0.1054,
    -0.0619,
    -0.0834,
    -0.1278,
    -0.0408,
    0.0770,
    0.1570,
    -0.0305,
    0.0100,
    0.1823,
    -0.0408,
    0.1989,
    0.0100,
    0.0488,
    0.0100,
    -0.0408,
    -0.0305,
    -0.0408,
    -0.0202,
    -0.0619,
    0.0296,
    0.0677,
    -0.0726,
    -0.0726,
    0.0000,
    0.0198,
]
CHDSE = [
    0.0286,
    0.0300,
    0.0310,
    0.0243,
    0.0222,
    0.0667,
    0.0373,
    0.0543,
    0.0306,
    0.0236,
    0.0277,
    0.0403,
    0.0344,
    0.0335,
    0.0378,
    0.0292,
    0.0253,
    0.0319,
    0.0316,
    0.0241,
    0.0285,
    0.0217,
    0.0298,
    0.0239,
    0.0220,
    0.0246,
    0.0255,
    0.0647,
]
DATA = tuple(np.array(a) for a in (LDLC, CHD, LDLCSE, CHDSE))  # bx, by, se_bx, se_by


def near(value, ref: str, tol=1e-5):
    """|value - ref| <= max(tol, half a unit in the last printed digit of ref)."""
    decimals = len(ref.split(".")[1]) if "." in ref else 0
    assert abs(value - float(ref)) <= max(tol, 0.5 * 10.0**-decimals), (value, ref)


# ------------------------------------------------------------------------------------------------
# golden values: TwoSampleMR 0.7.9 and MendelianRandomization 0.10.0 on the LDL-C -> CHD data


def test_golden_ivw():
    r = mr.ivw(*DATA)
    near(r.estimate, "2.834214")
    near(r.se, "0.529799")
    near(r.q, "99.5304")
    assert r.q_df == 27 and r.n_instruments == 28
    fe = mr.ivw_fe(*DATA)
    near(fe.estimate, "2.834214")
    near(fe.se, "0.275941")
    assert r.se == pytest.approx(fe.se * r.residual_se, rel=1e-14)  # sigma > 1 here
    # TwoSampleMR: normal p-value; chi-square p of Q on K - 1 df
    assert r.pvalue == pytest.approx(2 * stats.norm.sf(r.estimate / r.se), rel=1e-12)
    assert r.q_pvalue == pytest.approx(stats.chi2.sf(r.q, 27), rel=1e-12)


def test_golden_egger():
    r = mr.egger(*DATA)
    near(r.estimate, "3.252890")
    near(r.se, "0.770129")
    near(r.intercept, "-0.011461")
    near(r.intercept_se, "0.015188")
    near(r.q, "97.3975")
    near(r.i2_gx, "91.9")  # MendelianRandomization, percent
    assert r.q_df == 26
    # TwoSampleMR's p-values: t with K - 2 df; the interval uses the same distribution
    assert r.pvalue == pytest.approx(2 * stats.t.sf(r.estimate / r.se, 26), rel=1e-12)
    assert r.intercept_pvalue == pytest.approx(
        2 * stats.t.sf(abs(r.intercept / r.intercept_se), 26), rel=1e-12
    )
    assert r.ci_high - r.estimate == pytest.approx(stats.t.ppf(0.975, 26) * r.se, rel=1e-12)


def test_golden_medians_and_mode():
    near(mr.weighted_median(*DATA, n_boot=50).estimate, "2.677244")
    near(mr.simple_median(*DATA, n_boot=50).estimate, "1.755138")
    near(mr.weighted_median(*DATA, weights="first", n_boot=50).estimate, "2.683")
    mode = mr.weighted_mode(*DATA, n_boot=50)
    near(mode.estimate, "2.946301")
    assert mode.pvalue == pytest.approx(2 * stats.t.sf(mode.estimate / mode.se, 27), rel=1e-12)


def test_golden_weighted_median_bootstrap_se():
    # MendelianRandomization: first-order weights, 10000 replicates, SE 0.419
    r = mr.weighted_median(*DATA, weights="first", n_boot=10000, seed=2024)
    assert abs(r.se / 0.419 - 1) < 0.10
    assert r.pvalue == pytest.approx(2 * stats.norm.sf(r.estimate / r.se), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# independent references


def _random_set(rng, k=15, slope=0.4, pleio=0.0):
    bx = rng.normal(0.0, 0.3, k)
    bx[np.abs(bx) < 0.05] = 0.1
    se_bx = rng.uniform(0.02, 0.08, k)
    se_by = rng.uniform(0.02, 0.1, k)
    by = pleio + slope * bx + rng.normal(0, 1, k) * se_by * rng.uniform(0.5, 2.5)
    return bx, by, se_bx, se_by


def test_ivw_and_egger_match_statsmodels_wls(rng):
    sm = pytest.importorskip("statsmodels.api")
    for _ in range(5):
        bx, by, se_bx, se_by = _random_set(rng)
        w = se_by**-2
        fit = sm.WLS(by, bx[:, None], weights=w).fit()
        sigma = np.sqrt(fit.scale)
        r = mr.ivw(bx, by, se_bx, se_by)
        assert r.estimate == pytest.approx(fit.params[0], rel=1e-10)
        assert r.se == pytest.approx(fit.bse[0] / min(1.0, sigma), rel=1e-10)
        assert mr.ivw_fe(bx, by, se_bx, se_by).se == pytest.approx(fit.bse[0] / sigma, rel=1e-10)
        assert r.q == pytest.approx(fit.ssr, rel=1e-10)

        sign = np.where(bx < 0, -1.0, 1.0)
        efit = sm.WLS(by * sign, sm.add_constant(np.abs(bx)), weights=w).fit()
        es = np.sqrt(efit.scale)
        e = mr.egger(bx, by, se_bx, se_by)
        assert e.estimate == pytest.approx(efit.params[1], rel=1e-10)
        assert e.intercept == pytest.approx(efit.params[0], rel=1e-10, abs=1e-14)
        assert e.se == pytest.approx(efit.bse[1] / min(1.0, es), rel=1e-10)
        assert e.intercept_se == pytest.approx(efit.bse[0] / min(1.0, es), rel=1e-10)
        assert e.q == pytest.approx(efit.ssr, rel=1e-10)


def test_simple_median_is_the_median_and_weighted_median_interpolates(rng):
    for k in (5, 6, 11):
        bx, by, se_bx, se_by = _random_set(rng, k=k)
        r = mr.simple_median(bx, by, se_bx, se_by, n_boot=10)
        assert r.estimate == pytest.approx(np.median(by / bx), rel=1e-13)
        wm = mr.weighted_median(bx, by, se_bx, se_by, n_boot=10)
        # Bowden's definition: the standardised cumulative weight, interpolated linearly between
        # the sorted ratios, is exactly one half at the estimate.
        ratio = by / bx
        w = 1 / (se_by**2 / bx**2 + by**2 * se_bx**2 / bx**4)
        order = np.argsort(ratio)
        cum = (np.cumsum(w[order]) - 0.5 * w[order]) / w.sum()
        assert np.interp(wm.estimate, ratio[order], cum) == pytest.approx(0.5, abs=1e-12)


def test_mode_agrees_with_exact_kernel_density(rng):
    """R's binned FFT density has the same argmax as the exact weighted KDE on the same grid,
    up to near-ties (allow one grid step), and the bandwidth follows the modified Silverman rule."""
    for _ in range(20):
        k = int(rng.integers(3, 40))
        r = np.concatenate([rng.normal(1.0, 0.3, k), rng.normal(-2, 2, k // 3)])
        w = rng.uniform(0.2, 3.0, r.size)
        est, h = mode_rows(r[None], w[None])
        mad = 1.4826 * np.median(np.abs(r - np.median(r)))
        assert h[0] == pytest.approx(0.9 * min(np.std(r, ddof=1), mad) / r.size**0.2, rel=1e-12)
        grid = np.linspace(r.min() - 3 * h[0], r.max() + 3 * h[0], 512)
        dens = (w * stats.norm.pdf((grid[:, None] - r) / h[0])).sum(axis=1)
        assert abs(est[0] - grid[np.argmax(dens)]) <= 1.0001 * (grid[1] - grid[0])


# ------------------------------------------------------------------------------------------------
# analytic cases


@pytest.mark.parametrize("method", mr.METHODS)
def test_exact_proportional_effects_give_the_slope(method):
    bx = np.array([0.1, -0.2, 0.3, 0.25, -0.05, 0.4])
    se_bx = np.full(6, 0.02)
    se_by = np.array([0.05, 0.04, 0.06, 0.05, 0.03, 0.07])
    kw = {} if method in ("ivw", "ivw_fe", "egger") else {"n_boot": 100, "seed": 1}
    r = mr.ESTIMATORS[method](bx, 2.0 * bx, se_bx, se_by, **kw)
    assert r.estimate == pytest.approx(2.0, abs=1e-9)
    assert r.ci_low < 2.0 < r.ci_high and r.se > 0
    if method in ("ivw", "ivw_fe", "egger"):
        assert r.q == pytest.approx(0.0, abs=1e-20) and r.q_pvalue == pytest.approx(1.0)
        assert r.residual_se == pytest.approx(0.0, abs=1e-10)
    if method == "ivw":
        assert r.se == r.se_fixed  # max(1, sigma) = 1
    if method == "egger":
        assert r.intercept == pytest.approx(0.0, abs=1e-12)


def test_egger_recovers_intercept_and_orientation():
    bx = np.array([0.1, -0.2, 0.3, 0.25, -0.05, 0.4])
    by = 0.03 * np.sign(bx) + 1.5 * bx  # oriented: b_y* = 0.03 + 1.5 |b_x|
    se = np.full(6, 0.05)
    r = mr.egger(bx, by, se, se)
    assert r.estimate == pytest.approx(1.5, rel=1e-12)
    assert r.intercept == pytest.approx(0.03, rel=1e-10)
    flipped = mr.egger(-bx, -by, se, se)  # allele coding does not matter
    assert flipped.estimate == pytest.approx(r.estimate, rel=1e-12)
    assert flipped.intercept == pytest.approx(r.intercept, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# degenerate input: scalar raises, batched flags


@pytest.mark.parametrize(
    ("method", "args", "match"),
    [
        ("egger", ([0.1, 0.2], [0.1, 0.2], [0.1, 0.1], [0.1, 0.1]), "at least 3 instruments"),
        ("ivw", ([0.1], [0.1], [0.1], [0.1]), "at least 2 instruments"),
        ("ivw", ([0.1, np.nan, 0.2], [0.1, 0.2, 0.3], [0.1] * 3, [0.1] * 3), "bx is NaN"),
        ("ivw", ([0.1, 0.3, 0.2], [0.1, 0.2, 0.3], [0.1] * 3, [0.1, 0.0, 0.1]), "se_by is zero"),
        ("egger", ([0.0] * 3, [0.1, 0.2, 0.3], [0.1] * 3, [0.1] * 3), "all b_x are zero"),
        ("weighted_median", ([0.1, 0, 0.2], [0.1, 0.2, 0.3], [0.1] * 3, [0.1] * 3), "zero"),
        ("egger", ([0.1, -0.1, 0.1], [0.1, 0.2, 0.3], [0.1] * 3, [0.1] * 3), "not identifiable"),
        ("ivw", ([0.1, 0.2], [0.1, 0.2, 0.3], [0.1] * 3, [0.1] * 3), "equal length"),
    ],
)
def test_scalar_degenerate_input_raises(method, args, match):
    with pytest.raises(ValueError, match=match):
        mr.ESTIMATORS[method](*args)


def test_scalar_bad_options_raise():
    with pytest.raises(ValueError, match="weights"):
        mr.weighted_median(*DATA, weights="third")
    with pytest.raises(ValueError, match="level"):
        mr.ivw(*DATA, level=95)
    with pytest.raises(ValueError, match="seed"):
        mr.weighted_mode(*DATA, seed=-1)
    with pytest.raises(ValueError, match="unknown MR method"):
        mr.run_batched("ols", *DATA)


@pytest.mark.parametrize("method", mr.METHODS)
def test_batched_degenerate_cells_get_reasons(method):
    k = 5
    base = np.array([0.1, -0.2, 0.3, 0.25, 0.4])
    bx = np.tile(base, (8, 1))
    by = 1.3 * bx + np.array([0.01, -0.02, 0.015, 0.0, -0.01])
    se_bx = np.full((8, k), 0.02)
    se_by = np.full((8, k), 0.05)
    mask = np.ones((8, k), dtype=bool)
    mask[1, 2:] = False  # 2 instruments
    by[2, 0] = np.nan  # non-finite
    se_by[3, 1] = 0.0  # zero SE
    bx[4] = 0.0  # all b_x zero
    bx[5, 3] = 0.0  # one b_x zero
    bx[6] = [0.2, -0.2, 0.2, 0.2, -0.2]  # all |b_x| equal
    bx[7, 4] = np.nan  # NaN outside the mask is ignored
    mask[7, 4] = False
    b = mr.run_batched(method, bx, by, se_bx, se_by, mask, n_boot=20, seed=0)
    need = mr.MIN_INSTRUMENTS[method]
    ratio = method in ("weighted_median", "simple_median", "weighted_mode")
    egger = method == "egger"
    expected = [0, int(need > 2), 2, 3, 4, 5 if ratio else 0, 6 if egger else 0, 0]
    assert b.reason.tolist() == expected
    assert set(expected) <= set(mr.REASONS)
    assert np.isnan(b.estimate[b.reason != 0]).all()
    assert np.isfinite(b.estimate[b.reason == 0]).all()
    assert b.n_instruments.tolist() == [5, 2, 5, 5, 5, 5, 5, 4]
    # drop_invalid: the NaN and zero-SE instruments are dropped instead
    d = mr.run_batched(method, bx, by, se_bx, se_by, mask, n_boot=20, seed=0, drop_invalid=True)
    assert d.reason[2] == 0 and d.reason[3] == 0 and d.n_instruments[2] == 4
    kw = {} if not ratio else {"n_boot": 20, "seed": np.random.SeedSequence(0, spawn_key=(2,))}
    keep = np.arange(k) != 0
    ref = mr.ESTIMATORS[method](bx[2, keep], by[2, keep], se_bx[2, keep], se_by[2, keep], **kw)
    assert d.estimate[2] == pytest.approx(ref.estimate, rel=1e-10)
    assert d.se[2] == pytest.approx(ref.se, rel=1e-10)


# ------------------------------------------------------------------------------------------------
# batched API against the scalar API


def _ragged_problem(rng, n=3, e=3, o=4, k=9):
    bx = rng.normal(0.0, 0.3, (n, e, 1, k))
    bx[np.abs(bx) < 0.03] = 0.05
    se_bx = rng.uniform(0.02, 0.08, (n, e, 1, k))
    by = 0.5 * bx + rng.normal(0.0, 0.1, (n, e, o, k))  # depends on both sides: shape (n, e, o, k)
    se_by = rng.uniform(0.03, 0.1, (n, 1, o, k))
    return bx, by, se_bx, se_by


def _scalar_loop(method, bx, by, se_bx, se_by, mask, **kw):
    full = np.broadcast_shapes(bx.shape, by.shape, se_bx.shape, se_by.shape, mask.shape)
    rows = []
    for c, idx in enumerate(np.ndindex(full[:-1])):
        m = np.broadcast_to(mask, full)[idx]
        args = [np.broadcast_to(a, full)[idx][m] for a in (bx, by, se_bx, se_by)]
        if "n_boot" in kw:
            kw = dict(kw, seed=np.random.SeedSequence(7, spawn_key=(c,)))
        try:
            rows.append((idx, mr.ESTIMATORS[method](*args, **kw)))
        except ValueError:
            rows.append((idx, None))
    return rows


FIELDS = {
    "ivw": ("q", "q_pvalue", "residual_se"),
    "ivw_fe": ("q", "q_pvalue"),
    "egger": ("q", "q_pvalue", "intercept", "intercept_se", "intercept_pvalue", "i2_gx"),
}


@pytest.mark.parametrize("method", mr.METHODS)
def test_batched_matches_scalar_on_ragged_data(method, rng):
    bx, by, se_bx, se_by = _ragged_problem(rng)
    mask = rng.random(bx.shape) < 0.6  # exposure-side mask: matrix-product path for IVW/Egger
    mask[0, 0, 0, :] = [True, True] + [False] * 7  # a too-small cell
    kw = {} if method in FIELDS else {"n_boot": 30}
    b = mr.run_batched(method, bx, by, se_bx, se_by, mask, seed=7, **kw)
    assert b.estimate.shape == (3, 3, 4)
    n_ok = 0
    for idx, r in _scalar_loop(method, bx, by, se_bx, se_by, mask, **kw):
        if r is None:
            assert b.reason[idx] != 0 and np.isnan(b.estimate[idx])
            continue
        n_ok += 1
        assert b.reason[idx] == 0 and b.n_instruments[idx] == r.n_instruments
        for f in ("estimate", "se", "ci_low", "ci_high", "pvalue", *FIELDS.get(method, ())):
            assert getattr(b, f)[idx] == pytest.approx(getattr(r, f), rel=1e-10, abs=1e-13), f
    assert n_ok >= 30


def test_batched_paths_agree(rng):
    """The GEMM path (mask on one side) and the einsum path (mask on both sides) agree."""
    bx, by, se_bx, se_by = _ragged_problem(rng)
    by = by[:, :1]  # outcome side only: (n, 1, o, k)
    mask_x = rng.random(bx.shape) < 0.7
    full_mask = np.broadcast_to(mask_x, (3, 3, 4, 9)).copy()
    for method in ("ivw", "egger"):
        a = mr.run_batched(method, bx, by, se_bx, se_by, mask_x)
        b = mr.run_batched(method, bx, by, se_bx, se_by, full_mask)
        for f in ("estimate", "se", "q", "i2_gx", "intercept"):
            np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-11, atol=1e-14)


def test_batched_broadcasting_shapes():
    bx, by, se_bx, se_by = DATA
    outcomes = np.stack([by, 2 * by, -by])
    b = mr.run_batched("ivw", bx, outcomes, se_bx, se_by)
    assert b.shape == (3,)
    np.testing.assert_allclose(b.estimate, [2.834214, 2 * 2.834214, -2.834214], atol=3e-6)
    one = mr.run_batched("egger", *DATA)
    assert one.estimate.shape == () and one.reason == 0
    assert float(one.estimate) == pytest.approx(mr.egger(*DATA).estimate, rel=1e-12)
    with pytest.raises(ValueError, match="do not broadcast"):
        mr.run_batched("ivw", bx, by[:5], se_bx, se_by)


# ------------------------------------------------------------------------------------------------
# bootstrap reproducibility


def test_bootstrap_reproducible_with_seed():
    a = mr.weighted_median(*DATA, n_boot=200, seed=3)
    b = mr.weighted_median(*DATA, n_boot=200, seed=3)
    c = mr.weighted_median(*DATA, n_boot=200, seed=4)
    assert a == b and a.se != c.se and a.estimate == c.estimate
    m1 = mr.weighted_mode(*DATA, n_boot=100, seed=3)
    assert m1 == mr.weighted_mode(*DATA, n_boot=100, seed=3)


def test_batched_bootstrap_independent_of_chunking(rng, monkeypatch):
    bx, by, se_bx, se_by = _ragged_problem(rng, n=2, e=2, o=3)
    mask = rng.random(bx.shape) < 0.8
    for method in ("weighted_median", "weighted_mode"):
        ref = mr.run_batched(method, bx, by, se_bx, se_by, mask, n_boot=25, seed=11)
        with monkeypatch.context() as m:
            m.setattr(mr_batched, "CHUNK_ELEMENTS", 20)
            m.setattr(mr_batched, "BOOT_ELEMENTS", 100)
            small = mr.run_batched(method, bx, by, se_bx, se_by, mask, n_boot=25, seed=11)
        np.testing.assert_allclose(small.estimate, ref.estimate, rtol=1e-13)
        np.testing.assert_allclose(small.se, ref.se, rtol=1e-13)


def test_batch_result_has_pipeline_fields():
    b = mr.run_batched("weighted_median", *DATA, n_boot=10)
    for f in (
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "pvalue",
        "q",
        "q_pvalue",
        "intercept",
        "intercept_se",
        "intercept_pvalue",
        "i2_gx",
        "n_instruments",
        "reason",
    ):
        assert hasattr(b, f)
    assert np.isnan(b.q) and np.isnan(b.intercept) and b.reason == 0
