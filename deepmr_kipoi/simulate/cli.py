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
"""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``simulate`` options to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser

    Returns
    -------
    argparse.ArgumentParser
        The same parser.
    """
    from deepmr_kipoi.simulate.experiment import CALIBRATIONS, METHODS, ExperimentConfig
    from deepmr_kipoi.simulate.generative import REGIMES

    d = ExperimentConfig()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    parser.add_argument("--out", required=True, help="results folder (created)")
    parser.add_argument("--rounds", type=int, default=d.rounds,
                        help=f"rounds per regime, each with its own true effect (default {d.rounds})")
    parser.add_argument("--regimes", nargs="+", choices=REGIMES, default=list(d.regimes),
                        help="confounding regimes (default: all four)")
    parser.add_argument("--seed", type=int, default=d.seed, help="root seed (default 0)")
    parser.add_argument("--n-train", type=int, default=d.n_train,
                        help=f"training sequences per round (default {d.n_train})")
    parser.add_argument("--n-calibration", type=int, default=d.n_calibration,
                        help=f"held-out calibration sequences (default {d.n_calibration})")
    parser.add_argument("--n-analysis", type=int, default=d.n_analysis,
                        help=f"analysed reference sequences (default {d.n_analysis})")
    parser.add_argument("--members", type=int, default=d.training.n_members,
                        help=f"ensemble members (default {d.training.n_members})")
    parser.add_argument("--max-epochs", type=int, default=d.training.max_epochs,
                        help=f"epoch limit per member (default {d.training.max_epochs})")
    parser.add_argument("--calibration", choices=CALIBRATIONS, default=d.calibration,
                        help=f"recalibration of effect SEs (default {d.calibration})")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(d.methods),
                        help="local MR estimators (default: ivw egger)")
    parser.add_argument("--z", type=float, default=d.z,
                        help=f"instrument threshold on |b_x/se_x| (default {d.z})")
    parser.add_argument("--threads", type=int, default=d.training.threads,
                        help=f"torch threads (default {d.training.threads})")
    parser.add_argument("--workers", type=int, default=d.workers,
                        help=f"parallel (round, regime) jobs, one process each (default {d.workers})")
    parser.add_argument("--bootstrap", action="store_true",
                        help="train each ensemble member on a bootstrap resample of the training "
                             "sequences (bagging) instead of seeds alone")  # fmt: skip
    parser.add_argument("--no-jackknife", action="store_true",
                        help="skip the model-aware (jackknife) global interval")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace):
    """Build the ExperimentConfig of parsed arguments (raises ValueError on bad values)."""
    from deepmr_kipoi.simulate.experiment import ExperimentConfig

    d = ExperimentConfig()
    training = replace(d.training, n_members=args.members, max_epochs=args.max_epochs,
                       threads=args.threads, bootstrap=args.bootstrap)
    return ExperimentConfig(
        rounds=args.rounds, regimes=tuple(args.regimes), seed=args.seed, n_train=args.n_train,
        n_calibration=args.n_calibration, n_analysis=args.n_analysis,
        calibration=args.calibration, methods=tuple(args.methods), z=args.z,
        jackknife=not args.no_jackknife, workers=args.workers, training=training,
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
    from deepmr_kipoi.simulate.experiment import run_experiment, to_markdown

    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"deepmr simulate: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_experiment(config, out_dir=args.out, progress=not args.quiet)
    except ValueError as exc:
        print(f"deepmr simulate: {exc}", file=sys.stderr)
        return 2
    print(to_markdown(result.summary))
    resumed = f" ({result.resumed} read back from earlier runs)" if result.resumed else ""
    print(f"{len(result.rounds) // max(1, len(config.methods))} (round, regime) runs{resumed} in "
          f"{result.seconds:.0f} s; results in {args.out}")
    return 0
