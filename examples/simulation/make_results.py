"""Print the tables of RESULTS.md from a ``deepmr simulate`` results folder.

Usage::

    python examples/simulation/make_results.py SIM_OUT [--copy-to examples/simulation]
    python examples/simulation/make_results.py --targets CALIBRATED_OUT UNCALIBRATED_OUT

``--targets`` prints the issue's targets table for two analyses of the same ensembles (with and
without the calibration table): per regime, null pairs called causal, the planted pair causal
with the right sign and the direction named, each with its Wilson 95% interval and the target.

Reads ``SIM_OUT/rounds.csv`` (one row per round, regime, method and ordered pair) and prints, as
Markdown: the verdict targets per regime (null pairs called causal, all of them in the denominator
and the estimable ones; the planted pair causal with the right sign; the direction named; with
Wilson 95% intervals; ``scoring.summarize_verdicts``), the planted pair per regime and method
(correlation, bias, coverage with its Wilson 95% interval, power), the null pairs (share flagged
significant per method, by role), the verdicts by role, the direction verdicts of the planted
pair, and the run's timings and calibration factors.
With ``--copy-to`` it also copies ``summary.csv``, ``rounds.csv`` and the figure there.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi.simulate import scoring


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "nan" if not np.isfinite(v) else f"{v:.3f}"
    return str(v)


def markdown(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def interval(share, low, high) -> str:
    return f"{share:.2f} [{low:.2f}, {high:.2f}]" if np.isfinite(share) else "nan"


#: Targets per regime: (null causal at most, planted causal at least calibrated, uncalibrated).
TARGETS = {
    "none": (0.05, 0.90, 0.80),
    "random": (0.05, 0.90, 0.80),
    "reverse": (0.05, 0.90, 0.80),
    "sequence": (0.05, 0.70, 0.70),
    "both": (0.05, 0.70, 0.70),
    "pleiotropy": (0.05, None, None),
}


def _cell(row, col: str, target, at_most: bool) -> str:
    share, n = row[col], int(row[f"{col}_n"])
    text = f"{interval(share, row[f'{col}_low'], row[f'{col}_high'])} (n={n})"
    if target is None or not np.isfinite(share):
        return text
    met = share <= target if at_most else share >= target
    return f"{text} {'met' if met else '**missed**'}"


def targets(calibrated: Path, uncalibrated: Path) -> str:
    """The targets table of two analyses of the same ensembles, as Markdown."""
    rows = []
    for label, folder in (("calibrated", calibrated), ("uncalibrated", uncalibrated)):
        v = scoring.summarize_verdicts(pd.read_csv(folder / "rounds.csv")).set_index("regime")
        for regime, (null_max, cal_min, uncal_min) in TARGETS.items():
            if regime not in v.index:
                continue
            r = v.loc[regime]
            planted_min = cal_min if label == "calibrated" else uncal_min
            rows.append(
                {
                    "regime": regime,
                    "analysis": label,
                    "null pairs causal (target <= 0.05)": _cell(r, "null_causal", null_max, True),
                    "planted causal, right sign (target)": _cell(
                        r, "planted_causal", planted_min, False
                    )
                    + ("" if planted_min is None else f" [>= {planted_min:.2f}]"),
                    "direction named (target >= 0.80)": _cell(
                        r, "direction_right", None if regime == "pleiotropy" else 0.8, False
                    ),
                    "planted verdicts": r["planted_verdicts"],
                }
            )
    return markdown(pd.DataFrame(rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sim_out", nargs="?")
    p.add_argument("--copy-to", default=None)
    p.add_argument("--targets", nargs=2, metavar=("CALIBRATED", "UNCALIBRATED"), default=None)
    args = p.parse_args(argv)
    if args.targets:
        print(targets(Path(args.targets[0]), Path(args.targets[1])))
        return 0
    out = Path(args.sim_out)
    rounds = pd.read_csv(out / "rounds.csv")
    summary = scoring.summarize(rounds)
    n_rounds = rounds.groupby("regime")["round"].nunique().to_dict()
    print(f"rounds per regime: {n_rounds}\n")

    planted = summary.assign(
        coverage_95=[
            interval(*r) for r in summary[["coverage", "coverage_low", "coverage_high"]].to_numpy()
        ],
        power_95=[interval(*r) for r in summary[["power", "power_low", "power_high"]].to_numpy()],
        null_flagged_95=[
            interval(*r)
            for r in summary[["null_flagged", "null_flagged_low", "null_flagged_high"]].to_numpy()
        ],
    )
    print("## Verdicts (one per ordered pair; share of pair-rounds, Wilson 95% interval)\n")
    verdicts = scoring.summarize_verdicts(rounds)
    ivw_cov = summary[summary["method"] == "ivw"].set_index("regime")
    columns = {
        "null_causal": "null pairs causal (all)",
        "null_causal_estimable": "null pairs causal (estimable)",
        "planted_causal": "planted causal, right sign",
        "direction_right": "direction named",
        "confounded_causal": "confounded causal",
    }
    table = pd.DataFrame({"regime": verdicts["regime"]})
    for col, label in columns.items():
        table[label] = [
            f"{interval(*r[:3])} (n={int(r[3])})"
            for r in verdicts[[col, f"{col}_low", f"{col}_high", f"{col}_n"]].to_numpy()
        ]
    table["IVW headline coverage"] = [
        interval(*ivw_cov.loc[r, ["coverage", "coverage_low", "coverage_high"]].to_numpy(float))
        if r in ivw_cov.index
        else "nan"
        for r in verdicts["regime"]
    ]
    table["planted verdicts"] = verdicts["planted_verdicts"]
    print(markdown(table))
    if "verdict" in rounds.columns:
        print("\n## Verdicts by role (share of pair-rounds)\n")
        pairs = rounds[rounds["method"] == "ivw"]
        by_role = pairs.groupby(["regime", "role"])["verdict"].value_counts(normalize=True)
        print(markdown(by_role.unstack(fill_value=0.0).reset_index()))
        print("\n## Reasons of the null pairs called causal and of the planted pairs not causal\n")
        wrong = pairs[
            (pairs["role"].isin(scoring.NULL_ROLES) & (pairs["verdict"] == "causal"))
            | ((pairs["role"] == "planted") & (pairs["verdict"] != "causal"))
        ]
        print(
            markdown(
                wrong.groupby(["regime", "role", "verdict", "verdict_reason"])
                .size()
                .rename("pair_rounds")
                .reset_index()
            )
        )

    print("\n## Planted pair and null pairs, per method (secondary: flagged significant)\n")
    print(
        markdown(
            planted[
                [
                    "regime",
                    "method",
                    "rounds",
                    "pearson_r",
                    "r_within_high",
                    "r_within_low",
                    "bias",
                    "mae",
                    "coverage_95",
                    "meta_coverage",
                    "paper_coverage",
                    "power_95",
                    "null_pair_rounds",
                    "null_flagged_95",
                    "null_flagged_estimable",
                    "null_coverage",
                    "confounded_coverage",
                    "median_df",
                ]
            ]
        )
    )

    print("\n## Flagged significant, by role (share of pair-rounds)\n")
    flagged = (
        rounds.assign(significant=rounds["significant"].astype(bool))
        .groupby(["regime", "method", "role"])["significant"]
        .mean()
        .unstack("role")
    )
    print(markdown(flagged.reset_index()))

    print("\n## Direction verdicts of the planted pair (share of rounds)\n")
    ivw = rounds[(rounds["method"] == "ivw") & (rounds["role"] == "planted")]
    verdicts = (
        ivw.groupby("regime")["direction"].value_counts(normalize=True).unstack(fill_value=0.0)
    )
    print(markdown(verdicts.reset_index()))

    print("\n## Timings (seconds per job, mean) and calibration factors (mean)\n")
    per_job = rounds.drop_duplicates(["round", "regime"])
    timing = per_job.filter(like="seconds_").mean().round(1).to_dict()
    calib = per_job.filter(like="calibration_scale_").mean().round(2).to_dict()
    print(f"{len(per_job)} jobs; {timing}; {calib}")

    if args.copy_to:
        dest = Path(args.copy_to)
        tag = f"rounds{max(n_rounds.values())}"
        summary.to_csv(dest / f"summary_{tag}.csv", index=False)
        rounds.to_csv(dest / f"rounds_{tag}.csv", index=False)
        figure = out / "estimated_vs_true.png"
        if figure.exists():
            shutil.copy(figure, dest / f"estimated_vs_true_{tag}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
