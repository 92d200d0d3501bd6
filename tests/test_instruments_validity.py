"""Instrument validity rules: the floor, the directionality check and the feature spread."""

import numpy as np
import pytest

from deepmr_kipoi import instruments
from deepmr_kipoi.errors import DeepMRInputError


def test_floor_drops_small_significant_effects():
    bx = np.array([0.001, 0.5, -0.02, 2.0]).reshape(1, 4, 1, 1).repeat(3, axis=2)
    se = np.full_like(bx, 1e-4)  # every effect is "significant"
    sel = instruments.select(bx, se, floor=[0.05], min_count=1)
    assert sel.mask[0, :, 0, 0].tolist() == [False, True, False, True]
    assert instruments.select(bx, se, min_count=1).mask.all()


def test_directional_plain_comparison_in_units_of_spread():
    # X spread 2, Y spread 10: a mutation moving X by 1 and Y by 4 moves X by 0.5 spreads and Y
    # by 0.4 spreads, so it counts for X -> Y and not for Y -> X
    bx = np.array([1.0, 0.1, np.nan])
    by = np.array([4.0, 4.0, 1.0])
    se = np.full(3, 0.1)
    fwd = instruments.directional(bx, by, se, se, 2.0, 10.0, z=0.0)
    rev = instruments.directional(by, bx, se, se, 10.0, 2.0, z=0.0)
    assert fwd.tolist() == [True, False, False]
    assert rev.tolist() == [False, True, False]


def test_directional_test_uses_the_standard_errors_of_the_standardized_effects():
    # t_x = 1 / 2 = 0.5, t_y = 4 / 10 = 0.4; SDs 0.1 / 2 and 0.5 / 10: the difference 0.1 has
    # SD sqrt(0.05^2 + 0.05^2) = 0.0707, a statistic of sqrt(2) = 1.414
    stat = (0.5 - 0.4) / np.hypot(0.05, 0.05)
    assert stat == pytest.approx(np.sqrt(2))
    for z, expected in ((1.0, True), (1.41, True), (1.42, False), (1.645, False)):
        assert instruments.directional(1.0, 4.0, 0.1, 0.5, 2.0, 10.0, z=z) == expected


def test_directional_drops_copies_of_the_exposure_in_both_directions():
    # reverse causation inside one sequence: X = 0.6 Y and nothing else moves X, so every
    # mutation moves both by the same number of spreads; the plain comparison (the default) lets
    # each one count for both directions, a margin of one standard error for neither
    rng = np.random.default_rng(1)
    by = rng.normal(size=50)
    bx = 0.6 * by
    sx, sy = np.sqrt(np.mean(bx**2)), np.sqrt(np.mean(by**2))
    se_y = np.full(50, 0.05)
    se_x = 0.6 * se_y
    plain_fwd = instruments.directional(bx, by, se_x, se_y, sx, sy, z=0.0)
    plain_rev = instruments.directional(by, bx, se_y, se_x, sy, sx, z=0.0)
    assert plain_fwd.all() and plain_rev.all()
    assert not instruments.directional(bx, by, se_x, se_y, sx, sy, z=1.0).any()
    assert not instruments.directional(by, bx, se_y, se_x, sy, sx, z=1.0).any()


def test_directional_broadcasts_pairs_and_skips_undefined_spreads():
    rng = np.random.default_rng(0)
    bx, by = rng.normal(size=(2, 2, 1, 5)), rng.normal(size=(2, 1, 3, 5))
    se_x, se_y = np.full_like(bx, 0.2), np.full_like(by, 0.3)
    spread_x = np.array([1.0, np.nan]).reshape(1, 2, 1, 1)
    spread_y = np.array([1.0, 2.0, 0.0]).reshape(1, 1, 3, 1)
    out = instruments.directional(bx, by, se_x, se_y, spread_x, spread_y, z=1.0)
    assert out.shape == (2, 2, 3, 5)
    for i, k in np.ndindex(2, 5):
        stat = (abs(bx[i, 0, 0, k]) - abs(by[i, 0, 1, k]) / 2.0) / np.hypot(0.2, 0.15)
        assert out[i, 0, 1, k] == (stat >= 1.0)
    assert out[:, 1].all() and out[:, :, 2].all()  # no usable spread: the check is skipped
    with pytest.raises(DeepMRInputError, match="direction threshold"):
        instruments.directional(bx, by, se_x, se_y, 1.0, 1.0, z=-1.0)


def test_feature_spread_is_sd_of_sample_mean_over_sequences():
    ref = np.array([[[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], [[3.0, 7.0], [5.0, 7.0], [7.0, 7.0]]])
    assert instruments.feature_spread(ref).tolist() == pytest.approx([2.0, 0.0])
    with pytest.raises(DeepMRInputError):
        instruments.feature_spread(ref[0])
