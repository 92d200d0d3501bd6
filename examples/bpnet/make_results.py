"""Analyse a ``deepmr simulate --experiment bpnet`` run as a user would and tabulate it against the truth.

Usage::

    python examples/bpnet/make_results.py SIM_OUT [--skip-run]

Runs ``deepmr run --model SIM_OUT/kipoi_model --weights SIM_OUT/kipoi_model/member_*.pth --fasta
SIM_OUT/analysis.fa --calibration-table SIM_OUT/calibration.tsv --calibration-method sigma
--aleatoric-variance A --out SIM_OUT/deepmr_run`` with A from ``experiment.json`` (unless
``--skip-run``; the paths are taken from SIM_OUT, so a moved folder still works), then prints a markdown table
of the 12 ordered factor pairs: truth, planted cooperativity, and every estimate/interval/verdict
column of ``global_effects.csv`` that exists (new inference columns are picked up by name).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time

import pandas as pd

# interval/verdict columns shown when present in global_effects.csv (others are left out)
SHOWN = (
    "verdict",
    "verdict_reason",
    "estimate",
    "ci_low",
    "ci_high",
    "df",
    "qvalue",
    "significant",
    "direction",
    "meta_estimate",
    "meta_ci_low",
    "meta_ci_high",
    "median_instruments",
    "k",
)


def run_deepmr(sim_out: str) -> float:
    """Run ``deepmr run`` on the saved ensemble, calibrated on the held-out labelled sequences;
    returns the wall seconds."""
    model = os.path.join(sim_out, "kipoi_model")
    weights = sorted(glob.glob(os.path.join(model, "member_*.pth")))
    with open(os.path.join(sim_out, "experiment.json")) as fh:
        aleatoric = json.load(fh)["aleatoric_variance"]
    cmd = [
        sys.executable,
        "-m",
        "deepmr_kipoi.cli",
        "run",
        "--model",
        model,
        "--weights",
        *weights,
        "--fasta",
        os.path.join(sim_out, "analysis.fa"),
        "--out",
        os.path.join(sim_out, "deepmr_run"),
        "--calibration-table",
        os.path.join(sim_out, "calibration.tsv"),
        "--calibration-method",
        "sigma",
        "--aleatoric-variance",
        str(aleatoric),
        "--no-figures",
        "--force",
    ]
    print("$", " ".join(cmd), file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def table(sim_out: str, method: str = "ivw") -> pd.DataFrame:
    """Truth joined with the global estimates of ``method``, ordered by true effect."""
    truth = pd.read_csv(os.path.join(sim_out, "truth.csv"))
    glob_ = pd.read_csv(os.path.join(sim_out, "deepmr_run", "global_effects.csv"))
    glob_ = glob_[glob_["method"] == method]
    cols = ["exposure", "outcome"] + [c for c in SHOWN if c in glob_.columns]
    out = truth.merge(glob_[cols], on=["exposure", "outcome"], how="left")
    if {"ci_low", "ci_high"} <= set(out.columns):
        out["covers_truth"] = (out["ci_low"] <= out["true_effect"]) & (
            out["true_effect"] <= out["ci_high"]
        )
    return out.sort_values("true_effect", ascending=False, kind="stable")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sim_out")
    p.add_argument("--skip-run", action="store_true", help="reuse SIM_OUT/deepmr_run")
    p.add_argument("--method", default="ivw")
    args = p.parse_args(argv)
    if not args.skip_run:
        seconds = run_deepmr(args.sim_out)
        print(f"deepmr run: {seconds:.0f} s", file=sys.stderr)
    t = table(args.sim_out, args.method)
    print(t.to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
