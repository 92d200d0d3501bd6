"""mr.all_pairs: the matrix-product IVW / Egger for all pairs against run_batched and the scalar
estimators, with a sample axis, pair-dependent masks and self-pair exclusion."""

import numpy as np
import pytest

from deepmr_kipoi import mr
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr import pairwise

FIELDS = (
    "estimate",
    "se",
    "ci_low",
    "ci_high",
    "pvalue",
    "q",
    "q_df",
    "q_pvalue",
    "residual_se",
    "intercept",
    "intercept_se",
    "intercept_pvalue",
    "i2_gx",
)


def _problem(rng, s=None, n=3, f=6, k=12):
    lead = (n, f, k) if s is None else (s, n, f, k)
    latent = rng.normal(size=lead[:-2] + (1, k))
    b = 0.5 * latent + rng.normal(0.0, 0.3, lead)
    se = rng.uniform(0.05, 0.3, (n, f, k))
    mask = rng.random((n, f, k)) < 0.6
    mask[0, 1] = False
    mask[0, 1, :2] = True  # 2 instruments: IVW defined, Egger too few
    mask[1, 2] = False
    mask[1, 2, 5] = True  # 1 instrument: nothing defined
    return b, se, mask


def _assert_cells(got, ref, cells):
    for name in FIELDS:
        a, b = getattr(got, name)[cells], getattr(ref, name)[cells]
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("method", mr.PAIR_METHODS)
def test_all_pairs_equals_run_batched_and_scalar(method, rng):
    b, se, mask = _problem(rng)
    res = mr.all_pairs(b, se_bx=se, selection=mask)[method]
    ref = mr.run_batched(
        method, b[:, :, None], b[:, None], se[:, :, None], se[:, None], mask[:, :, None]
    )
    off = ~np.eye(b.shape[1], dtype=bool)[None].repeat(b.shape[0], 0)
    _assert_cells(res, ref, off)
    np.testing.assert_array_equal(res.reason[off], ref.reason[off])
    np.testing.assert_array_equal(res.n_instruments[off], ref.n_instruments[off])
    diag = ~off
    assert np.all(res.reason[diag] == 8) and np.all(np.isnan(res.estimate[diag]))
    assert (res.reason[off] == 1).any() and (res.reason[off] == 0).sum() > 50
    # scalar functions on a few defined cells
    scalar = mr.ESTIMATORS[method]
    ok = np.argwhere(off & (res.reason == 0))
    for n, x, y in ok[:: max(1, len(ok) // 10)]:
        m = mask[n, x]
        r = scalar(b[n, x, m], b[n, y, m], se[n, x, m], se[n, y, m])
        assert res.estimate[n, x, y] == pytest.approx(r.estimate, rel=1e-9)
        assert res.se[n, x, y] == pytest.approx(r.se, rel=1e-9)
        assert res.pvalue[n, x, y] == pytest.approx(r.pvalue, rel=1e-9, abs=1e-15)


def test_all_pairs_sample_axis_equals_per_sample_runs(rng):
    s_b, se, mask = _problem(rng, s=3)
    res = mr.all_pairs(s_b, se_bx=se, selection=mask)
    est = mr.all_pairs(s_b, se_bx=se, selection=mask, output="estimates")
    off = ~np.eye(s_b.shape[2], dtype=bool)[None].repeat(s_b.shape[1], 0)
    for s in range(3):
        for method in mr.PAIR_METHODS:
            ref = mr.run_batched(
                method,
                s_b[s, :, :, None],
                s_b[s, :, None],
                se[:, :, None],
                se[:, None],
                mask[:, :, None],
            )
            got = res[method]
            for name in FIELDS:
                np.testing.assert_allclose(
                    getattr(got, name)[s][off],
                    getattr(ref, name)[off],
                    rtol=1e-9,
                    atol=1e-12,
                    err_msg=name,
                )
            for name in ("estimate", "se"):
                np.testing.assert_allclose(
                    getattr(est[method], name)[s], getattr(got, name)[s], rtol=1e-12, equal_nan=True
                )
    assert np.all(np.isnan(est["egger"].se[:, ~off]))


def test_all_pairs_separate_outcomes_and_exposure_index(rng):
    b, se, mask = _problem(rng, f=7)
    bx, sx, mx = b[:, 4:], se[:, 4:], mask[:, 4:]  # exposures = features 4, 5, 6
    res = mr.all_pairs(bx, b, sx, se, mr.PairSelection(mask=mx, exposure_index=[4, 5, 6]))["egger"]
    full = mr.all_pairs(b, se_bx=se, selection=mask)["egger"]
    np.testing.assert_array_equal(res.estimate, full.estimate[:, 4:])
    none_excluded = mr.all_pairs(bx, b, sx, se, mx)["ivw"]
    assert not (none_excluded.reason == 8).any()


@pytest.mark.parametrize("method", mr.PAIR_METHODS)
def test_pair_mask_path_equals_run_batched_with_full_mask(method, rng, monkeypatch):
    s_b, se, mask = _problem(rng, s=2, f=5, k=15)
    sd = s_b.mean(0).std(axis=(0, 2))  # feature spread
    score = np.abs(s_b.mean(0)) / sd[None, :, None]
    pair = rng.random((3, 5, 5, 15)) < 0.9
    # blocks of 2 exposures, so that the exposure blocking is exercised
    monkeypatch.setattr(pairwise, "PAIR_BLOCK_ELEMENTS", 2 * 5 * 15)
    rule = mr.PairSelection(mask=mask, pair_mask=pair, pair_scores=(score, score))
    res = mr.all_pairs(s_b, se_bx=se, selection=rule)[method]
    full = mask[:, :, None] & pair & (score[:, :, None] > score[:, None])
    off = ~np.eye(5, dtype=bool)[None].repeat(3, 0)
    assert (full.sum(-1)[off] < mask[:, :, None].sum(-1).repeat(5, 2)[off]).any()
    for s in range(2):
        ref = mr.run_batched(
            method, s_b[s, :, :, None], s_b[s, :, None], se[:, :, None], se[:, None], full
        )
        for name in FIELDS:
            np.testing.assert_allclose(
                getattr(res, name)[s][off],
                getattr(ref, name)[off],
                rtol=1e-9,
                atol=1e-12,
                err_msg=name,
            )
        np.testing.assert_array_equal(res.reason[s][off], ref.reason[off])


def test_all_pairs_rejects_bad_input(rng):
    b, se, mask = _problem(rng)
    bad = se.copy()
    bad[0, 0, 0] = 0.0
    with pytest.raises(DeepMRInputError, match="se_bx must be finite and positive"):
        mr.all_pairs(b, se_bx=bad)
    with pytest.raises(DeepMRInputError, match="mask must have shape"):
        mr.all_pairs(b, se_bx=se, selection=mask[:, :2])
    with pytest.raises(DeepMRInputError, match="shapes do not match"):
        mr.all_pairs(b, se_bx=se[:, :2])
    with pytest.raises(DeepMRInputError, match="unknown all_pairs method"):
        mr.all_pairs(b, se_bx=se, methods=("weighted_median",))
    with pytest.raises(DeepMRInputError, match="pair_mask"):
        mr.all_pairs(
            b, se_bx=se, selection=mr.PairSelection(pair_mask=np.ones((2, 2, 2, 2), dtype=bool))
        )
    with pytest.raises(DeepMRInputError, match="se_bx is missing"):
        mr.all_pairs(b, b)


@pytest.mark.parametrize("method", ["weighted_median", "simple_median"])
def test_median_analytic_se_matches_monte_carlo_sd(method):
    """Homogeneous valid instruments: the analytic SE is the sampling SD of the estimate."""
    rng = np.random.default_rng(5)
    cells, k, theta = 2000, 80, 0.4
    bx_true = rng.uniform(0.3, 1.0, k) * rng.choice([-1, 1], k)
    se_bx = np.full(k, 0.01)
    se_by = rng.uniform(0.05, 0.2, k)
    bx = bx_true + se_bx * rng.standard_normal((cells, k))
    by = theta * bx_true + se_by * rng.standard_normal((cells, k))
    res = mr.run_batched(method, bx, by, se_bx, se_by, se_method="analytic")
    sd = np.std(res.estimate, ddof=1)
    assert np.mean(res.se) == pytest.approx(sd, rel=0.08)
    boot = mr.run_batched(method, bx[:50], by[:50], se_bx, se_by, n_boot=400, seed=1)
    assert np.median(boot.se / res.se[:50]) == pytest.approx(1.0, rel=0.15)
    with pytest.raises(DeepMRInputError, match="se_method='analytic' is available"):
        mr.run_batched("weighted_mode", bx[:2], by[:2], se_bx, se_by, se_method="analytic")


@pytest.mark.parametrize("name", ["bx", "se_bx", "by", "se_by"])
@pytest.mark.parametrize("slow", [False, True])
def test_all_pairs_names_every_bad_value(name, slow, rng):
    # The plain path checks bx, by and se_by while it builds its operands, the slow path before;
    # either way a bad value anywhere (selected or not, any sample) is named.
    s_b, se, mask = _problem(rng, s=2)
    arrays = {"bx": s_b[:, :, :4], "se_bx": se[:, :4], "by": s_b.copy(), "se_by": se.copy()}
    bad = arrays[name].copy()
    bad[(1,) * bad.ndim] = np.nan if name in ("bx", "by") else -1.0
    arrays[name] = bad
    selection = mask[:, :4]
    if slow:
        selection = mr.PairSelection(mask=selection, pair_mask=np.ones((1, 4, 6, 1), dtype=bool))
    with pytest.raises(DeepMRInputError, match=f"{name} must be finite"):
        mr.all_pairs(arrays["bx"], arrays["by"], arrays["se_bx"], arrays["se_by"], selection)
