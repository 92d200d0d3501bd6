"""Instrument selection against brute-force loops and the reference code's pooled rule."""

import numpy as np
import pytest

from deepmr_kipoi import instruments


def _effects(rng, n=3, w=7, e=2):
    bx = rng.normal(0, 1, (n, w, 3, e))
    se = rng.uniform(0.2, 1.0, (n, w, 3, e))
    bx[0, 2, :, :] = np.nan  # an N position
    se[1, 3, 1, 0] = 0.0  # a mutant without spread
    return bx, se


def test_wald_rule_matches_a_loop(rng):
    bx, se = _effects(rng)
    sel = instruments.select(bx, se, z=1.5, min_count=4)
    n, w, _, e = bx.shape
    for i in range(n):
        for k in range(e):
            count = 0
            for p in range(w):
                for a in range(3):
                    b, s = bx[i, p, a, k], se[i, p, a, k]
                    want = bool(np.isfinite(b) and s > 0 and abs(b / s) >= 1.5)
                    assert sel.mask[i, p, a, k] == want
                    count += want
            assert sel.counts[i, k] == count
            assert sel.enough[i, k] == (count >= 4)
    assert not sel.mask[0, 2].any() and not sel.mask[1, 3, 1, 0]


def test_pooled_rule_is_the_reference_code_standardisation(rng):
    bx, se = _effects(rng)
    sel = instruments.select(bx, se, z=1.0, rule="pooled")
    for k in range(bx.shape[-1]):
        pool = bx[..., k][np.isfinite(bx[..., k]) & (se[..., k] > 0)]
        zk = np.abs(
            (bx[..., k] - pool.mean()) / pool.std()
        )  # numpy std: ddof=0 as in the paper's code
        want = np.isfinite(bx[..., k]) & (se[..., k] > 0) & (zk >= 1.0)
        np.testing.assert_array_equal(sel.mask[..., k], want)


def test_one_allele_per_position_keeps_the_strongest(rng):
    bx, se = _effects(rng, n=2, w=20, e=3)
    full = instruments.select(bx, se, z=0.5)
    one = instruments.select(bx, se, z=0.5, one_per_position=True)
    assert (one.mask.sum(axis=2) <= 1).all()
    assert (one.mask <= full.mask).all()
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(full.mask, np.abs(bx / se), -1)
    best = score.argmax(axis=2)
    has = full.mask.any(axis=2)
    picked = one.mask.argmax(axis=2)
    np.testing.assert_array_equal(picked[has], best[has])
    np.testing.assert_array_equal(one.mask.any(axis=2), has)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rule": "magic"}, "unknown instrument rule"),
        ({"z": -1}, "z must be"),
        ({"min_count": 0}, "min_count"),
    ],
)
def test_bad_settings_raise_one_line(rng, kwargs, message):
    bx, se = _effects(rng)
    with pytest.raises(ValueError, match=message):
        instruments.select(bx, se, **kwargs)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, W, 3, E\)"):
        instruments.select(np.zeros((2, 3, 4)), np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="differs"):
        instruments.select(np.zeros((1, 2, 3, 1)), np.ones((1, 2, 3, 2)))
