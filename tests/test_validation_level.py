"""One check of a confidence level for the whole package: every public entry point that takes a
level refuses the same bad values with the same one-line message."""

import numpy as np
import pytest

from deepmr_kipoi import mr

BX = np.array([0.12, -0.21, 0.33, 0.25, -0.07, 0.41])
BY = 0.8 * BX
SE_X = np.full(6, 0.02)
SE_Y = np.array([0.05, 0.04, 0.06, 0.05, 0.03, 0.07])


def _level_checks():
    from deepmr_kipoi import calibration, inference, meta, validation
    from deepmr_kipoi.run.config import RunConfig, validate

    cal = calibration.fit(np.zeros((20, 1)), np.ones((20, 1)), np.zeros((20, 1)), "sigma")
    return {
        "validation": lambda lv: validation.level(lv),
        "mr scalar": lambda lv: mr.ivw(BX, BY, SE_X, SE_Y, level=lv),
        "mr batched": lambda lv: mr.run_batched("egger", BX, BY, SE_X, SE_Y, level=lv),
        "mr all_pairs": lambda lv: mr.all_pairs(
            np.ones((1, 2, 3)), se_bx=np.ones((1, 2, 3)), level=lv
        ),
        "meta": lambda lv: meta.random_effects([0.1, 0.2], [0.1, 0.2], level=lv),
        "calibration": lambda lv: cal.interval(np.zeros(1), np.ones(1), level=lv),
        "calibration fit": lambda lv: calibration.fit(
            np.zeros((20, 1)), np.ones((20, 1)), np.zeros((20, 1)), "quantile", se_level=lv
        ),
        "inference": lambda lv: inference.crossed(np.arange(6.0).reshape(2, 3), level=lv),
        "config": lambda lv: validate(
            RunConfig(model="m", exposures=["a"], outcomes=["b"], level=lv)
        ),
    }


@pytest.mark.parametrize("bad", [95, 0.0, 1.0, float("nan"), "0.9", True])
def test_one_confidence_level_check_with_one_message(bad):
    for where, call in _level_checks().items():
        with pytest.raises(ValueError, match=r"level must be a confidence level in \(0, 1\)") as e:
            call(bad)
        assert "\n" not in str(e.value), where
        assert str(e.value).endswith(f"got {bad!r}"), where
