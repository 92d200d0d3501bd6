"""Global tables of zoo size for the report tests, synthesised around a real small run's columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

AGREE = "IVW and MR-Egger agree, reverse direction not supported"
NONE = "no estimator finds an effect"


def zoo_table(
    template: pd.DataFrame,
    n: int = 164,
    seed: int = 0,
    methods=("ivw", "egger"),
    claims=(("f000", "f002"), ("f001", "f002")),
) -> pd.DataFrame:
    """All ordered pairs of ``n`` features in two blocks (effects ~ +1 within, ~ 0 across).

    Parameters
    ----------
    template : DataFrame
        A real global table: the result has its columns, in its order (technical columns filled
        with values drawn from the template's own).
    n : int
    seed : int
    methods : sequence of str
    claims : sequence of (exposure, outcome)
        The pairs given a causal verdict; every other pair is not causal.

    Returns
    -------
    DataFrame
        ``n * (n - 1) * len(methods)`` rows; the features' order is shuffled, so only clustering
        brings the blocks together.
    """
    rng = np.random.default_rng(seed)
    names = np.array([f"f{i:03d}" for i in rng.permutation(n)])
    e, o = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    keep = e != o
    e, o = names[e[keep]], names[o[keep]]
    block = np.array([int(x[1:]) < n // 2 for x in names])
    at = {x: i for i, x in enumerate(names)}
    same = block[[at[x] for x in e]] == block[[at[x] for x in o]]
    frames = []
    for m in methods:
        est = np.where(same, 1.0, 0.0) + rng.normal(0, 0.05, len(e))
        se = rng.uniform(0.02, 0.2, len(e))
        df = pd.DataFrame(
            {
                "exposure": e,
                "outcome": o,
                "method": m,
                "estimate": est,
                "se": se,
                "ci_low": est - 1.96 * se,
                "ci_high": est + 1.96 * se,
                "pvalue": 2 * stats.norm.sf(np.abs(est / se)),
            }
        )
        frames.append(df)
    table = pd.concat(frames, ignore_index=True)
    table["qvalue"] = np.minimum(1.0, table["pvalue"] * 3)
    table["significant"] = table["qvalue"] < 0.05
    claimed = pd.Series(list(zip(table["exposure"], table["outcome"]))).isin(set(claims)).to_numpy()
    table["verdict"] = np.where(claimed, "causal", "not causal")
    table["verdict_reason"] = np.where(claimed, AGREE, NONE)
    table["n_sequences"] = 4
    for c in template.columns:
        if c in table:
            continue
        values = template[c].to_numpy()
        table[c] = values[rng.integers(0, len(values), len(table))]
    return table[
        [c for c in template.columns if c in table]
        + [c for c in table.columns if c not in template.columns]
    ]
