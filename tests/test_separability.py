"""Whether an exposure's instruments can tell it from a third feature: the signed cross-products
of standardized instrument effects (``local_checks.steiger_sums``) and their pooled squared cosine
(``aggregate`` column ``other_r2``), against brute-force sums and analytic cases."""

import numpy as np
import pandas as pd

from deepmr_kipoi import instruments
from deepmr_kipoi.run import aggregate, local_checks


def _effects(seed=0, n=4, w=6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, w, 3, 4))


def test_cross_products_equal_brute_force_sums():
    effects = _effects()
    mask = np.random.default_rng(1).random((4, 6, 3, 2)) < 0.5
    exposures, outcomes = [0, 2], [1, 3]
    got = local_checks.steiger_sums(effects, mask, exposures, outcomes)
    spread = instruments.effect_spread(effects)
    for i in range(4):
        t = effects[i] / spread[i]
        for a, e in enumerate(exposures):
            for b, o in enumerate(outcomes):
                f = got["other_feature"][i, a, b]
                assert f not in (e, o)
                keep = mask[i, ..., a]
                cross = (t[..., e] * t[..., f])[keep].sum()
                own = (t[..., e] ** 2)[keep].sum()
                theirs = (t[..., f] ** 2)[keep].sum()
                np.testing.assert_allclose(got["cross_other"][i, a, b], cross, rtol=1e-12)
                np.testing.assert_allclose(got["r2_exposure"][i, a, b], own, rtol=1e-12)
                np.testing.assert_allclose(got["r2_other"][i, a, b], theirs, rtol=1e-12)


def _pair_level(local_rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """The pair-level strength columns the global table gets (every sequence fitted)."""
    ordered = local_rows.sort_values(["exposure", "outcome", "sequence_index"], kind="stable")
    pairs = len(ordered) // n
    table = ordered.iloc[::n][["exposure", "outcome"]].reset_index(drop=True)

    def grid(col, dtype=np.float64):
        return ordered[col].to_numpy(dtype=dtype).reshape(pairs, n)

    aggregate._steiger(table, ordered, np.ones((pairs, n), dtype=bool), grid)
    return table


def _local_rows(cross, own, theirs, other):
    n = len(cross)
    return pd.DataFrame(
        {
            "exposure": "x",
            "outcome": "y",
            "sequence_index": np.arange(n),
            "r2_exposure": own,
            "r2_outcome": 0.2 * np.asarray(own),
            "r2_other": theirs,
            "cross_other": cross,
            "other_feature": pd.Categorical(other, categories=["z", "w"]),
        }
    )


def test_pooled_squared_cosine_over_the_sequences_of_the_named_feature():
    # three sequences name z, one names w; only the named feature's sequences are pooled
    own, theirs = [4.0, 9.0, 1.0, 5.0], [1.0, 4.0, 1.0, 100.0]
    cross = [2.0, -6.0, 1.0, 3.0]
    other = ["z", "z", "z", "w"]
    table = _pair_level(_local_rows(cross, own, theirs, other), 4)
    # the named feature is the one moved most in any fitted sequence: w (100)
    assert table["other_feature"].iloc[0] == "w"
    np.testing.assert_allclose(table["other_r2"].iloc[0], 3.0**2 / (5.0 * 100.0), rtol=1e-12)
    other = ["z", "z", "z", "z"]
    table = _pair_level(_local_rows(cross, own, theirs, other), 4)
    expected = (2.0 - 6.0 + 1.0 + 3.0) ** 2 / ((4 + 9 + 1 + 5) * (1 + 4 + 1 + 100))
    np.testing.assert_allclose(table["other_r2"].iloc[0], expected, rtol=1e-12)


def test_lockstep_instruments_give_one_and_independent_ones_about_none():
    rng = np.random.default_rng(3)
    n, w = 30, 40
    effects = rng.normal(size=(n, w, 3, 3))
    effects[..., 2] = -0.5 * effects[..., 0]  # feature 2 moves in a fixed ratio to feature 0
    mask = np.ones((n, w, 3, 2), dtype=bool)
    sums = local_checks.steiger_sums(effects, mask, [0, 1], [1, 0])
    rows = []
    for a, (e, o) in enumerate([(0, 1), (1, 0)]):
        frame = _local_rows(
            sums["cross_other"][:, a, 0],
            sums["r2_exposure"][:, a, 0],
            sums["r2_other"][:, a, 0],
            ["z"] * n,
        ).assign(exposure=f"f{e}", outcome=f"f{o}")
        rows.append(frame)
    table = _pair_level(pd.concat(rows, ignore_index=True), n)
    r2 = dict(zip(table["exposure"], table["other_r2"]))
    np.testing.assert_allclose(r2["f0"], 1.0, rtol=1e-12)  # lockstep: the instruments cannot tell
    # f1's instruments move the other feature independently: the pooled cosine is about 1/(n w 3)
    assert r2["f1"] < 0.01
