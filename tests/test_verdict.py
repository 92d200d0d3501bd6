"""One verdict per ordered pair: the minimum-effect intersection-union test with Benjamini-Hochberg
over pairs, equivalence for `not causal`, the instrument-strength and direction checks, and the
IVW-versus-robust disagreement flags."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepmr_kipoi import verdict
from deepmr_kipoi.errors import DeepMRInputError

DF = 20.0
CRIT = stats.t.ppf(0.975, DF)


def _rows(
    x, y, ivw, egger, n=20, het=False, scale=1.0, steiger=0.5, other=0.1, extra=(), other_r2=0.1
):
    """Rows of one ordered pair; ``ivw``, ``egger``: (estimate, se); ``extra``: (method, est, se)."""
    rows = []
    for method, (est, se) in (("ivw", ivw), ("egger", egger), *((m, e) for m, *e in extra)):
        rows.append(
            {
                "exposure": x,
                "outcome": y,
                "method": method,
                "estimate": est,
                "se": se,
                "df": DF,
                "ci_low": est - CRIT * se,
                "ci_high": est + CRIT * se,
                "pvalue": 2 * stats.t.sf(abs(est) / se, DF),
                "n_sequences": n,
                "n_analysed": 20,
                "heterogeneity_share": 0.4 if het else 0.0,
                "heterogeneity_excess": het,
                "effect_scale": scale,
                "steiger_ratio": steiger,
                "other_ratio": other,
                "other_feature": "Z",
                "other_r2": other_r2,
            }
        )
    return rows


def _by_pair(t, out):
    both = pd.concat([t[["exposure", "outcome", "method"]], out], axis=1)
    # the verdict is the same on every method row of a pair
    same = both.groupby(["exposure", "outcome"])[["verdict", "verdict_reason", "direction"]]
    assert (same.nunique() == 1).all().all()
    return both.drop_duplicates(["exposure", "outcome"]).set_index(["exposure", "outcome"])


NULL = (0.0, 0.02)


def test_min_effect_pvalue_matches_the_interval_and_the_t_test():
    est = np.array([1.0, -1.0, 0.3, 0.0, 0.6])
    se = np.array([0.2, 0.2, 0.2, 0.1, 0.0])
    got = verdict.min_effect_pvalue(est, se, DF, 0.5)
    expected = [2 * stats.t.sf(2.5, DF), 2 * stats.t.sf(2.5, DF), 1.0, 1.0, 0.0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # below 0.05 exactly when the 95% interval excludes the whole band [-0.5, 0.5]
    lo, hi = est[:4] - CRIT * se[:4], est[:4] + CRIT * se[:4]
    assert ((got[:4] < 0.05) == ((lo > 0.5) | (hi < -0.5))).all()
    # margin 0: the ordinary two-sided t test
    np.testing.assert_allclose(
        verdict.min_effect_pvalue(est[:4], se[:4], DF, 0.0),
        2 * stats.t.sf(np.abs(est[:4]) / se[:4], DF),
    )


def test_pair_pvalue_is_the_intersection_union_test_adjusted_over_estimable_pairs():
    t = pd.DataFrame(
        _rows("A", "B", (1.0, 0.1), (0.9, 0.2))
        + _rows("B", "A", (0.5, 0.1), (-0.6, 0.2))
        + _rows("A", "C", (0.8, 0.2), (0.7, 0.3))
        + _rows("C", "A", (0.8, 0.2), (0.7, 0.3), n=3)
    )
    s = verdict.statistics(t, min_sequences=5, min_effect=0.1)
    p_me = [2 * stats.t.sf((abs(e) - 0.1) / sd, DF) for e, sd in zip(t["estimate"], t["se"])]
    np.testing.assert_allclose(s["pvalue_min_effect"], np.minimum(p_me, 1.0), rtol=1e-12)
    pair = s["pair_pvalue"].to_numpy()
    assert pair[0] == pair[1] == max(p_me[0], p_me[1])  # the larger of IVW's and Egger's
    assert pair[2] == 1.0  # IVW and Egger differ in sign
    assert np.isnan(pair[6])  # 3 fitted sequences: not tested
    raw = np.array([pair[0], 1.0, pair[4]])
    order = np.argsort(raw)
    bh = np.minimum.accumulate((raw[order] * 3 / np.arange(1, 4))[::-1])[::-1]
    expected = np.empty(3)
    expected[order] = np.minimum(bh, 1)
    np.testing.assert_allclose(s["pair_qvalue"].to_numpy()[[0, 2, 4]], expected)
    # the margin is min_effect in the pair's own units (standardized / effect_scale)
    t["effect_scale"] = 2.0
    assert verdict.statistics(t, min_effect=0.1)["min_effect"].eq(0.05).all()


def test_verdicts_for_every_rule():
    t = pd.DataFrame(
        _rows("A", "B", (1.0, 0.1), (0.9, 0.1))
        + _rows("B", "A", NULL, NULL)
        + _rows("A", "C", (1.0, 0.1), (1.1, 0.1))
        + _rows("C", "A", (0.5, 0.1), (0.4, 0.1))
        + _rows("B", "C", (0.3, 0.5), (0.1, 0.5))
        + _rows("C", "B", NULL, NULL)
        + _rows("A", "D", (0.3, 0.05), (0.3, 0.05), n=3)
        + _rows("D", "A", NULL, NULL)
        + _rows("E", "F", (0.5, 0.1), (0.1, 0.3))
        + _rows("F", "E", NULL, NULL)
        + _rows("G", "H", (0.5, 0.1), (0.5, 0.1), het=True)
        + _rows("H", "G", NULL, NULL)
        + _rows("J", "K", (0.5, 0.1), (0.5, 0.1), extra=[("weighted_median", -0.5, 0.1)])
        + _rows("K", "J", NULL, NULL, extra=[("weighted_median", 0.0, 0.1)])
        + _rows("L", "M", (0.5, 0.1), (0.5, 0.1), steiger=1.05)
        + _rows("M", "L", NULL, NULL)
        + _rows("N", "O", (0.5, 0.1), (0.5, 0.1), other=1.3)
        + _rows("O", "N", NULL, NULL)
        + _rows("P", "Q", (0.5, 0.1), (0.5, 0.1))
        + _rows("Q", "P", NULL, NULL, n=4)
        + _rows("R", "S", (0.5, 0.1), (0.5, 0.1))
        + _rows("V", "W", (0.5, 0.1), (0.5, 0.1))
        + _rows("W", "V", NULL, NULL, n=2, steiger=1.2)
        + _rows("T", "U", (0.05, 0.01), (0.06, 0.01))
        + _rows("U", "T", NULL, NULL)
        + _rows("X", "Y", (0.5, 0.1), (0.5, 0.1), other_r2=0.93)
        + _rows("Y", "X", NULL, NULL)
        + _rows("X1", "Y1", (0.5, 0.1), (0.5, 0.1), other_r2=0.49)
        + _rows("Y1", "X1", NULL, NULL)
    )
    got = _by_pair(t, verdict.verdicts(t, min_sequences=5, min_effect=0.1))
    assert got.loc[("A", "B"), "verdict"] == "causal"
    assert got.loc[("A", "B"), "verdict_reason"].startswith("IVW and MR-Egger agree (pair q ")
    assert got.loc[("A", "B"), "verdict_reason"].endswith(
        "reverse direction tested and not supported"
    )
    assert got.loc[("A", "B"), "direction"] == got.loc[("B", "A"), "direction"] == "A -> B"
    # the reverse of a claim: the interval [-0.04, 0.04] lies inside +-0.1: not causal
    assert got.loc[("B", "A"), "verdict"] == "not causal"
    assert got.loc[("B", "A"), "verdict_reason"].startswith("effect within +-0.1 standardized")
    for pair in (("A", "C"), ("C", "A")):  # both directions pass: neither is claimed
        assert got.loc[pair, "verdict"] == "undetermined"
        assert got.loc[pair, "verdict_reason"].startswith("both directions supported")
        assert got.loc[pair, "direction"] == "both"
    # nothing found, but the interval reaches effects of interest: no `not causal`
    assert got.loc[("B", "C"), "verdict"] == "undetermined"
    assert (
        "Effects of interest are not excluded (up to 1.34: IVW 95% interval [-0.743, 1.34]"
        in (got.loc[("B", "C"), "verdict_reason"])
    )
    assert got.loc[("B", "C"), "verdict_reason"].startswith(
        "no effect beyond +-0.1 standardized found (pair q 1)"
    )
    assert got.loc[("A", "D"), "verdict_reason"] == (
        "too few sequences with a local fit (3 of 20; a verdict needs 5)"
    )
    assert got.loc[("E", "F"), "verdict_reason"].startswith(
        "IVW finds an effect beyond +-0.1 standardized that MR-Egger does not"
    )
    assert got.loc[("G", "H"), "verdict_reason"].startswith("instruments disagree: heterogeneity")
    # a robust estimator that excludes the band with the opposite sign blocks the claim
    assert got.loc[("J", "K"), "verdict_reason"] == "estimators disagree in sign"
    assert got.loc[("L", "M"), "verdict_reason"].startswith(
        "the exposure's instruments move the outcome as much as the exposure (Steiger ratio 1.05)"
    )
    assert got.loc[("N", "O"), "verdict_reason"].startswith(
        "the exposure's instruments act more strongly on Z than on the exposure (ratio 1.30)"
    )
    assert got.loc[("P", "Q"), "verdict"] == "undetermined"
    assert got.loc[("P", "Q"), "verdict_reason"].endswith(
        "reverse direction could not be tested (4 of 20 sequences with a local fit)"
    )
    assert "reverse direction not analysed" in got.loc[("R", "S"), "verdict_reason"]
    # a reverse without enough fits is not tested, whatever its instruments' strengths
    assert got.loc[("V", "W"), "verdict"] == "undetermined"
    assert got.loc[("V", "W"), "verdict_reason"].endswith(
        "reverse direction could not be tested (2 of 20 sequences with a local fit)"
    )
    # instruments that move a third feature in lockstep with the exposure cannot separate them
    assert got.loc[("X", "Y"), "verdict"] == "undetermined"
    assert got.loc[("X", "Y"), "verdict_reason"].startswith(
        "the exposure's instruments move Z in a fixed ratio to the exposure (R2 0.93)"
    )
    assert got.loc[("X1", "Y1"), "verdict"] == "causal"  # below verdict.OTHER_R2
    # an effect distinguishable from 0 but inside the smallest effect of interest
    assert got.loc[("T", "U"), "verdict"] == "not causal"
    assert set(got["verdict"]) <= set(verdict.VERDICTS)


def test_the_margin_is_standardized_and_zero_without_spreads():
    t = pd.DataFrame(_rows("A", "B", (0.3, 0.05), (0.3, 0.05)) + _rows("B", "A", NULL, NULL))
    assert (_by_pair(t, verdict.verdicts(t, min_effect=0.1))["verdict"] == "causal").any()
    # the same raw effect is 0.03 standardized when sd_B is 10 times sd_A: not of interest
    t["effect_scale"] = np.where(t["exposure"] == "A", 0.1, 10.0)
    got = _by_pair(t, verdict.verdicts(t, min_effect=0.1))
    assert got.loc[("A", "B"), "verdict"] == "not causal"
    # without spreads the margin is 0: the effect 0.3 is distinguishable from 0
    t = t.drop(columns="effect_scale")
    assert _by_pair(t, verdict.verdicts(t, min_effect=0.1)).loc[("A", "B"), "verdict"] == "causal"


def test_a_single_method_run_decides_on_it_alone():
    t = pd.DataFrame(_rows("A", "B", (1.0, 0.1), NULL) + _rows("B", "A", NULL, NULL))
    t = t[t["method"] == "ivw"].reset_index(drop=True)
    got = _by_pair(t, verdict.verdicts(t))
    assert got.loc[("A", "B"), "verdict"] == "causal"
    assert got.loc[("A", "B"), "verdict_reason"].startswith("IVW agree")


def test_heterogeneity_excess_is_a_binomial_test_against_the_level():
    def binom_sf(k, n, p):  # P(X >= k), brute force
        return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(k, n + 1))

    n = np.array([15, 15, 100, 100, 40, 0])
    count = np.array([2, 5, 9, 30, 9, 0])
    got = verdict.heterogeneity_excess(count / np.maximum(n, 1), n, 0.05)
    expected = [
        binom_sf(int(k), int(m), 0.05) < 0.05 and k / m >= verdict.HETEROGENEITY_SHARE
        if m
        else False
        for k, m in zip(count, n)
    ]
    # 5 of 15 and 9 of 40 reject far more often than 5% but 9 of 40 is under a quarter
    assert got.tolist() == expected == [False, True, False, True, False, False]


def test_robust_disagreement_needs_disjoint_intervals():
    t = pd.DataFrame(
        [
            ("A", "B", "ivw", 0.8, 1.2),
            ("A", "B", "egger", -0.1, 0.5),
            ("B", "A", "ivw", 0.8, 1.2),
            ("B", "A", "egger", 0.5, 1.3),
            ("C", "A", "egger", 0.5, 1.3),
        ],
        columns=["exposure", "outcome", "method", "ci_low", "ci_high"],
    )
    assert verdict.robust_disagreement(t).tolist() == [True, True, False, False, False]


def test_a_table_without_the_rule_s_columns_is_refused_in_one_line():
    with pytest.raises(DeepMRInputError, match="n_sequences, n_analysed") as err:
        verdict.verdicts(
            pd.DataFrame(
                {
                    "exposure": ["A"],
                    "outcome": ["B"],
                    "method": ["ivw"],
                    "estimate": [1.0],
                    "se": [0.1],
                    "df": [5.0],
                    "ci_low": [0.0],
                    "ci_high": [2.0],
                    "pvalue": [0.01],
                }
            )
        )
    assert "\n" not in str(err.value)
