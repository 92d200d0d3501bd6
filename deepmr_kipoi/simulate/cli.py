"""``deepmr simulate``: arguments and entry point (wired into ``deepmr_kipoi.cli``)."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

logger = logging.getLogger(__name__)

EXAMPLES = """\
examples:
  deepmr simulate --rounds 10 --out sim_results
  deepmr simulate --rounds 2 --regimes none random --n-train 6000 --out quick
  deepmr simulate --rounds 50 --calibration none --seed 1 --out full_run
  deepmr simulate --rounds 50 --reanalyze --out full_run     # new analysis code, cached models
  deepmr simulate --rounds 50 --reanalyze --calibration none --out full_run_uncalibrated
      # (full_run_uncalibrated/models a link to full_run/models: the same ensembles, no table)
  deepmr simulate --experiment bpnet --quick --out bpnet_quick
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``simulate`` options to ``parser``.

    The options of the experiment's settings are read from the metadata of
    ``ExperimentConfig``'s and ``TrainConfig``'s fields (flag, help, type, choices; their defaults
    are the settings' defaults), as ``deepmr run``'s are from ``RunConfig``'s; the options that
    are no setting (the folder, the experiment, ``--quick``, ``--reanalyze``) are added here.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    from deepmr_kipoi.run.settings import cli_options
    from deepmr_kipoi.simulate.config import ExperimentConfig
    from deepmr_kipoi.simulate.train import TrainConfig

    d = ExperimentConfig()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("--out", required=True, help="results folder (created)")
    parser.add_argument(
        "--experiment",
        choices=("tf-pair", "bpnet"),
        default="tf-pair",
        help="tf-pair (default): the two-motif experiment over confounding regimes; "
        "bpnet: four ES-cell factors, a multi-task BPNet ensemble saved as a "
        "Kipoi model, and the truth of the 12 ordered pairs",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="bpnet: 3000 training sequences, 3 members, at most 8 epochs",
    )
    for settings, defaults in ((ExperimentConfig, d), (TrainConfig, d.training)):
        for flag, dest, kwargs in cli_options(settings):
            default = getattr(defaults, dest)
            default = list(default) if isinstance(default, tuple) else default
            parser.add_argument(flag, dest=dest, default=default, **kwargs)
    parser.add_argument(
        "--reanalyze",
        action="store_true",
        help="recompute every job's analysis (Deep MR and scoring) in --out from its "
        "cached model, without training; the model settings must match",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


#: Summary columns printed on the terminal.
SUMMARY_COLUMNS = (
    "regime",
    "method",
    "rounds",
    "pearson_r",
    "bias",
    "coverage",
    "coverage_low",
    "coverage_high",
    "meta_coverage",
    "power",
    "null_flagged",
    "null_flagged_high",
)


def config_from_args(args: argparse.Namespace):
    """Build the ExperimentConfig of parsed arguments (raises ValueError on bad values)."""
    from deepmr_kipoi.simulate.config import ExperimentConfig

    d = ExperimentConfig()
    training = replace(
        d.training,
        n_members=args.n_members,
        max_epochs=args.max_epochs,
        threads=args.threads,
        bootstrap=args.bootstrap,
    )
    sizes = {
        "rounds": args.rounds,
        "n_train": args.n_train,
        "n_calibration": args.n_calibration,
        "n_analysis": args.n_analysis,
    }
    if getattr(args, "quick", False):
        # a small version: the given sizes only where they were set explicitly
        quick = {"rounds": 2, "n_train": 3000, "n_calibration": 500, "n_analysis": 40}
        sizes = {k: (quick[k] if v == getattr(d, k) else v) for k, v in sizes.items()}
    return ExperimentConfig(
        **sizes,
        regimes=tuple(args.regimes),
        seed=args.seed,
        calibration=args.calibration,
        aleatoric_variance=args.aleatoric_variance,
        methods=tuple(args.methods),
        z=args.z,
        floor=args.floor,
        directional=args.directional,
        one_per_position=args.one_per_position,
        sample_split=args.sample_split,
        min_effect=args.min_effect,
        workers=args.workers,
        training=training,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the experiment; print the summary table. Returns the exit status (2 on bad input).

    Parameters
    ----------
    args : argparse.Namespace
        From a parser prepared by :func:`add_arguments`.

    Returns
    -------
    int
    """
    from deepmr_kipoi.simulate.experiment import run_experiment
    from deepmr_kipoi.simulate.scoring import to_markdown

    if getattr(args, "experiment", "tf-pair") == "bpnet":
        return _run_bpnet(args)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"deepmr simulate: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_experiment(
            config,
            out_dir=args.out,
            progress=not args.quiet,
            reanalyze=getattr(args, "reanalyze", False),
        )
    except ValueError as exc:
        print(f"deepmr simulate: {exc}", file=sys.stderr)
        return 2
    print(to_markdown(result.summary, SUMMARY_COLUMNS))
    resumed = f" ({result.resumed} read back from earlier runs)" if result.resumed else ""
    jobs = result.rounds[["round", "regime"]].drop_duplicates()
    print(
        f"{len(jobs)} (round, regime) runs{resumed} in {result.seconds:.0f} s; results in "
        f"{args.out} (summary.csv has every column)"
    )
    return 0


def _run_bpnet(args: argparse.Namespace) -> int:
    """``--experiment bpnet``: ``--members``, ``--max-epochs``, ``--n-train``, ``--n-analysis``,
    ``--seed`` and ``--threads`` apply when given explicitly; ``--quick`` sets smaller defaults."""
    from deepmr_kipoi.errors import DeepMRInputError
    from deepmr_kipoi.simulate.bpnet.experiment import BPNetExperimentConfig, run_bpnet_experiment
    from deepmr_kipoi.simulate.config import ExperimentConfig

    d = ExperimentConfig()
    base = (
        BPNetExperimentConfig.quick(seed=args.seed, threads=args.threads)
        if args.quick
        else BPNetExperimentConfig(seed=args.seed)
    )
    training = base.training
    overrides = {}
    if args.n_members != d.training.n_members:
        overrides["n_members"] = args.n_members
    if args.max_epochs != d.training.max_epochs:
        overrides["max_epochs"] = args.max_epochs
    try:
        training = replace(training, seed=args.seed, threads=args.threads, **overrides)
        config = replace(
            base,
            training=training,
            n_train=args.n_train if args.n_train != d.n_train else base.n_train,
            n_analysis=args.n_analysis if args.n_analysis != d.n_analysis else base.n_analysis,
        )
        result = run_bpnet_experiment(config, args.out)
    except DeepMRInputError as exc:
        print(f"deepmr simulate: {exc}", file=sys.stderr)
        return 2
    print(result.truth.to_string(index=False))
    print(
        f"BPNet experiment in {result.seconds:.0f} s; Kipoi model in {result.kipoi_model_dir}; "
        f"truth in {args.out}/truth.csv"
    )
    print(f"analyse with: {result.run_command()}")
    return 0
