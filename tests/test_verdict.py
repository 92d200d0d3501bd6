"""One verdict per ordered pair, the direction summary, and IVW-versus-robust disagreement flags."""

import math

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import verdict
from deepmr_kipoi.errors import DeepMRInputError

COLUMNS = [
    "exposure",
    "outcome",
    "method",
    "estimate",
    "significant",
    "ci_low",
    "ci_high",
    "n_sequences",
    "heterogeneity_excess",
]


def _table(rows, n_analysed=20):
    t = pd.DataFrame(rows, columns=COLUMNS)
    t["n_analysed"] = n_analysed
    t["heterogeneity_share"] = np.where(t["heterogeneity_excess"], 0.4, 0.0)
    return t


def _pair(x, y, ivw, egger, n=20, het=False, extra=()):
    """Rows of one ordered pair: (estimate, significant) per method."""
    rows = [
        (x, y, "ivw", ivw[0], ivw[1], ivw[0] - 0.1, ivw[0] + 0.1, n, het),
        (x, y, "egger", egger[0], egger[1], egger[0] - 0.2, egger[0] + 0.2, n, het),
    ]
    rows += [(x, y, m, e, s, e - 0.2, e + 0.2, n, het) for m, e, s in extra]
    return rows


def _by_pair(t, out):
    both = pd.concat([t[["exposure", "outcome", "method"]], out], axis=1)
    # the verdict is the same on every method row of a pair
    assert (
        (
            both.groupby(["exposure", "outcome"])[
                ["verdict", "verdict_reason", "direction"]
            ].nunique()
            == 1
        )
        .all()
        .all()
    )
    return both.drop_duplicates(["exposure", "outcome"]).set_index(["exposure", "outcome"])


def test_verdicts_for_every_rule():
    t = _table(
        _pair("A", "B", (1.0, True), (0.9, True))
        + _pair("B", "A", (0.05, True), (0.0, False))
        + _pair("A", "C", (1.0, True), (1.1, True))
        + _pair("C", "A", (0.5, True), (0.4, True))
        + _pair("B", "C", (0.0, False), (0.1, False))
        + _pair("C", "B", (0.0, False), (0, False))
        + _pair("A", "D", (0.3, True), (0.3, True), n=3)
        + _pair("D", "A", (0.0, False), (0, False))
        + _pair("E", "F", (0.5, True), (-0.4, True))
        + _pair("F", "E", (0.0, False), (0, False))
        + _pair("G", "H", (0.5, True), (0.5, True), het=True)
        + _pair("H", "G", (0.0, False), (0, False))
        + _pair("J", "K", (0.5, True), (0.5, True), extra=[("weighted_median", -0.3, True)])
        + _pair("K", "J", (0.0, False), (0, False), extra=[("weighted_median", 0.0, False)])
    )
    got = _by_pair(t, verdict.verdicts(t, min_sequences=5))
    assert got.loc[("A", "B"), "verdict"] == "causal"
    assert got.loc[("A", "B"), "verdict_reason"] == (
        "IVW and MR-Egger agree, reverse direction not supported"
    )
    assert got.loc[("A", "B"), "direction"] == got.loc[("B", "A"), "direction"] == "A -> B"
    assert got.loc[("B", "A"), "verdict"] == "undetermined"
    assert "MR-Egger does not" in got.loc[("B", "A"), "verdict_reason"]
    for pair in (("A", "C"), ("C", "A")):  # both directions pass: neither is claimed
        assert got.loc[pair, "verdict"] == "undetermined"
        assert got.loc[pair, "verdict_reason"].startswith("both directions supported")
        assert got.loc[pair, "direction"] == "both"
    assert got.loc[("B", "C"), "verdict"] == got.loc[("C", "B"), "verdict"] == "not causal"
    assert got.loc[("B", "C"), "direction"] == "neither"
    assert got.loc[("A", "D"), "verdict"] == "undetermined"
    assert got.loc[("A", "D"), "verdict_reason"] == (
        "too few sequences with a local fit (3 of 20; a verdict needs 5)"
    )
    assert got.loc[("E", "F"), "verdict_reason"] == "estimators disagree in sign"
    assert got.loc[("G", "H"), "verdict"] == "undetermined"
    assert got.loc[("G", "H"), "verdict_reason"].startswith("instruments disagree: heterogeneity")
    # a robust estimator that contradicts the sign blocks the claim
    assert got.loc[("J", "K"), "verdict_reason"] == "estimators disagree in sign"
    assert set(got["verdict"]) <= set(verdict.VERDICTS)


def test_a_single_method_run_decides_on_it_alone():
    t = _table(
        [
            ("A", "B", "ivw", 1.0, True, 0.9, 1.1, 20, False),
            ("B", "A", "ivw", 0.0, False, -0.1, 0.1, 20, False),
        ]
    )
    got = _by_pair(t, verdict.verdicts(t))
    assert got.loc[("A", "B"), "verdict"] == "causal"
    assert got.loc[("A", "B"), "verdict_reason"].startswith("IVW finds an effect")


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
                    "ci_low": [0.0],
                    "ci_high": [2.0],
                    "significant": [True],
                }
            )
        )
    assert "\n" not in str(err.value)
