"""Compare two ``deepmr simulate`` folders that differ only in the ensemble size, job by job.

Usage::

    python examples/simulation/compare_members.py SIM_A SIM_B

Both folders hold the same (round, regime) jobs with the same seeds: every job's data, and the
first members of its ensemble (member ``m`` is trained from seed ``seed * 1000 + m + 1`` on the
same split), are the same; only the number of members differs. Restricted to the jobs both
folders have, it prints per folder and regime: the median degrees of freedom of the planted pair's
IVW headline, its median SE, its interval's coverage of the learnable truth, the null pairs flagged
significant by IVW (every null pair-round in the denominator), and the verdict targets
(``scoring.summarize_verdicts``) where the records have verdicts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.simulate import scoring


def _members(folder: Path) -> int:
    import json

    with open(folder / "config.json") as fh:
        return int(json.load(fh)["training"]["n_members"])


def table(rounds: pd.DataFrame, label: str) -> pd.DataFrame:
    """One row per regime: the IVW headline of the planted pair and the null pairs' flags."""
    ivw = rounds[rounds["method"] == "ivw"]
    verdicts = scoring.summarize_verdicts(rounds).set_index("regime")
    rows = []
    for regime, g in ivw.groupby("regime", sort=False):
        planted = g[g["role"] == "planted"]
        fitted = planted[np.isfinite(planted["estimate"])]
        inside = (fitted["ci_low"] <= fitted["truth"]) & (fitted["truth"] <= fitted["ci_high"])
        nulls = g[g["role"].isin(scoring.NULL_ROLES)]
        v = verdicts.loc[regime]
        rows.append(
            {
                "ensemble": label,
                "regime": regime,
                "rounds": len(planted),
                "planted_estimable": len(fitted),
                "median_df": float(np.nanmedian(fitted["df"])),
                "median_se": float(np.nanmedian(fitted["se"])),
                "coverage": float(inside.mean()),
                "null_flagged_ivw": float(nulls["significant"].astype(bool).mean()),
                "null_causal": v["null_causal"],
                "planted_causal": v["planted_causal"],
                "direction_right": v["direction_right"],
            }
        )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sim_a")
    p.add_argument("sim_b")
    args = p.parse_args(argv)
    folders = [Path(args.sim_a), Path(args.sim_b)]
    frames = [pd.read_csv(f / "rounds.csv") for f in folders]
    jobs = set.intersection(*(set(zip(r["round"], r["regime"])) for r in frames))
    if not jobs:
        raise SystemExit("the two folders have no (round, regime) job in common")
    out = []
    for folder, rounds in zip(folders, frames):
        keep = [(a, b) in jobs for a, b in zip(rounds["round"], rounds["regime"])]
        out.append(table(rounds[keep], f"{folder.name}: {_members(folder)} members"))
    both = pd.concat(out, ignore_index=True).sort_values(["regime", "ensemble"])
    print(f"{len(jobs)} jobs in common\n")
    print(scoring.to_markdown(both))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
