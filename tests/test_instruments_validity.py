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


def test_directional_compares_effects_in_units_of_spread():
    # X spread 2, Y spread 10: a mutation moving X by 1 and Y by 4 moves X by 0.5 spreads and Y
    # by 0.4 spreads, so it counts for X -> Y and not for Y -> X
    bx = np.array([1.0, 0.1, np.nan]).reshape(1, 3, 1, 1)
    by = np.array([4.0, 4.0, 1.0]).reshape(1, 3, 1, 1)
    fwd = instruments.directional(bx, by, [2.0], [10.0])[0, :, 0, 0, 0]
    rev = instruments.directional(by, bx, [10.0], [2.0])[0, :, 0, 0, 0]
    assert fwd.tolist() == [True, False, False]
    assert rev.tolist() == [False, True, False]


def test_directional_all_pairs_shape_and_undefined_spread():
    rng = np.random.default_rng(0)
    bx, by = rng.normal(size=(2, 5, 3, 2)), rng.normal(size=(2, 5, 3, 3))
    out = instruments.directional(bx, by, [1.0, np.nan], [1.0, 2.0, 0.0])
    assert out.shape == (2, 5, 3, 2, 3)
    for i, j in np.ndindex(2, 5):
        for a in range(3):
            assert out[i, j, a, 0, 1] == (abs(bx[i, j, a, 0]) / 1.0 > abs(by[i, j, a, 1]) / 2.0)
    assert out[..., 1, :].all() and out[..., :, 2].all()  # no usable spread: the check is skipped


def test_feature_spread_is_sd_of_sample_mean_over_sequences():
    ref = np.array([[[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], [[3.0, 7.0], [5.0, 7.0], [7.0, 7.0]]])
    assert instruments.feature_spread(ref).tolist() == pytest.approx([2.0, 0.0])
    with pytest.raises(DeepMRInputError):
        instruments.feature_spread(ref[0])
