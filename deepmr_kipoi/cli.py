"""The ``deepmr`` command line: demo, run, reanalyze, info, simulate, compare, adapters.

Bad input (:class:`~deepmr_kipoi.errors.DeepMRInputError`, or ``OSError`` on a path the user gave)
and failures of the user's own model code (:class:`~deepmr_kipoi.errors.ModelCodeError`) end with
one line on stderr (``deepmr <command>: error: <reason and fix>``) and exit status 2 (``--debug``
adds the traceback behind it); a run stopped before computing anything removes what it had written.
Any other exception is a bug: its traceback is printed, the exit status is 1, and the chunks already
computed stay so the same command resumes.

The run options' choices and defaults come from ``RunConfig`` and the stage modules' constants.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from deepmr_kipoi import __version__
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import arguments, settings
from deepmr_kipoi.run import config as cfg

EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

_RUN_EXAMPLES = """examples:
  deepmr run --model DeepSEA/predict --fasta hg19.fa --bed peaks.bed --n-sequences 50 \\
      --exposures 'HepG2_CTCF*' --outcomes 'HepG2_DNase*' --window 400 600 --out deepsea_run
  deepmr run --model path/to/kipoi_model_dir --weights fold1.pt fold2.pt fold3.pt \\
      --uncertainty ensemble --calibration-table heldout.csv --methods ivw egger weighted_median
  deepmr run --model my_models.py:build_ensemble --n-sequences 10 --out my_run
  deepmr run --model ctcf=DeepBind/Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF \\
      --model cpg=CpGenie/A549_ENCSR000DDI --exposures 'ctcf/*' --outcomes 'cpg/*' \\
      --fasta hg19.fa --bed peaks.bed --out panel_run   # a panel: one model's exposure, another's outcome
  deepmr run --model path/to/kipoi_model_dir --sequences dataloader \\
      --dataloader-args intervals_file=peaks.bed fasta_file=genome.fa --out dl_run
  deepmr run --model path/to/kipoi_model_dir --sequences dataloader \\
      --dataloader-args '{"intervals_file": "peaks.bed", "fasta_file": "genome.fa"}' --out dl_run
  deepmr run --config settings.yaml --out my_run      # keys as the long options, e.g. n_sequences: 10
  deepmr run --config my_run/config.yaml              # repeat (or resume) a run
  deepmr run --config my_run/config.yaml --executor dask --dask-workers 8   # resume on 8 processes

Re-running the same command with the same --out resumes: finished chunks of sequences are skipped.
"""

_DEMO_EXAMPLES = """examples:
  deepmr demo                               # writes ./deepmr_demo with report.html
  deepmr demo --out /tmp/demo --n-sequences 4 --quiet
"""

_REANALYZE_EXAMPLES = """examples:
  deepmr reanalyze run1 --out run1_z3 --z 3
  deepmr reanalyze run1 --out run1_median --methods ivw weighted_median --min-instruments 5
  deepmr reanalyze run1 --out run1_ctcf --exposures 'CTCF*' --calibrator cal.json
"""

_COMPARE_EXAMPLES = """examples:
  deepmr compare run_model_a run_model_b --out a_vs_b
  deepmr compare runs/* --out all_models
  deepmr compare run_a run_b --mapping names.csv --out a_vs_b   # different naming schemes
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=88)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exits 2)."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("output and logging")
    g.add_argument(
        "-q", "--quiet", action="store_true", default=False, help="no progress bars, only errors"
    )
    g.add_argument("-v", "--verbose", action="store_true", default=False, help="debug logging")
    g.add_argument(
        "--debug",
        action="store_true",
        default=False,
        help="with an error, also print the traceback behind it (the model's own, when its "
        "code failed)",
    )


#: Help-section titles of the configuration's setting groups.
GROUP_TITLES = {
    "model_source": "model",
    "sequence_source": "reference sequences and the ISM window",
    "instruments": "instruments",
    "mr": "features and MR",
    "calibration": "calibration",
    "outputs": "outputs",
    "execution": "execution (how and where the work runs; see the Dask guide for the executor)",
}


def add_setting_arguments(p: argparse.ArgumentParser, groups=tuple(cfg.GROUPS)) -> None:
    """One option per setting of the configuration's ``groups``, generated from the settings'
    metadata (flag, help, type, choices); options left out do not override ``--config`` or the
    defaults."""
    for group in groups:
        g = p.add_argument_group(GROUP_TITLES[group])
        for flag, dest, kwargs in settings.cli_options(cfg.GROUPS[group]):
            g.add_argument(flag, dest=dest, default=argparse.SUPPRESS, **kwargs)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="YAML",
        default=argparse.SUPPRESS,
        help="YAML file of settings (keys: the long option names); options given on the "
        "command line override it",
    )
    add_setting_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``deepmr`` argument parser (``simulate``'s options come from ``simulate``)."""
    parser = _Parser(
        prog="deepmr",
        description=_wrap(
            "Deep Mendelian Randomization: causal effects a genomic deep-learning model "
            "has learned between its output features."
        ),
        epilog="examples:\n  deepmr demo\n  deepmr run --model DeepSEA/predict --fasta hg19.fa "
        "--bed peaks.bed --out run1\n  deepmr reanalyze run1 --out run1_z3 --z 3\n"
        "  deepmr compare run1 run2 --out cmp\n  deepmr adapters\n\n"
        "Every command has --help with examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"deepmr_kipoi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _add_demo_command(sub)
    _add_run_command(sub)
    _add_reanalyze_command(sub)
    _add_simulate_command(sub)
    _add_compare_command(sub)
    _add_info_command(sub)
    _add_adapters_command(sub)
    return parser


def _add_demo_command(sub) -> None:
    """``deepmr demo``: a complete run on the embedded model."""
    p = sub.add_parser(
        "demo",
        help="complete run on the small model shipped with the package",
        description=_wrap(
            "A complete Deep MR run on the small multi-task model shipped "
            "with the package (planted causal structure, deep ensemble); no network. "
            "The report's headline compares estimated with true global effects."
        ),
        epilog=_DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="deepmr_demo", help="results folder (default ./deepmr_demo)")
    p.add_argument(
        "--n-sequences",
        dest="n_sequences",
        type=int,
        default=None,
        help="use only this many of the demo's reference sequences (quick check)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an older demo run in --out")
    _common(p)
    p.set_defaults(func=_cmd_demo)


def _add_run_command(sub) -> None:
    """``deepmr run``: one option per setting of the configuration."""
    p = sub.add_parser(
        "run",
        help="Deep MR on a Kipoi model or a registered adapter",
        description=_wrap(
            "Deep MR on a Kipoi model, model directory, registered adapter "
            "or Python model factory: ISM effects with uncertainty, instruments, local "
            "MR per sequence, global random-effects meta-analysis, figures and report."
        ),
        epilog=_RUN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_arguments(p)
    _common(p)
    p.set_defaults(func=_cmd_run)


def _add_reanalyze_command(sub) -> None:
    """``deepmr reanalyze``: the analysis settings of a finished run's effects."""
    p = sub.add_parser(
        "reanalyze",
        help="analyse a finished run's stored ISM effects again, with other analysis settings",
        description=_wrap(
            "Analyse the ISM effects a finished run stored, with other analysis settings "
            "(instrument threshold and rules, pairs, MR methods, inference, a saved calibrator), "
            "into a new run folder. No model runs: the effects are read from RUN_DIR. Settings "
            "that change the effects (model, sequences, window, seed, ...) need deepmr run."
        ),
        epilog=_REANALYZE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    add_setting_arguments(p, ("instruments", "mr", "calibration", "outputs"))
    _common(p)
    p.set_defaults(func=_cmd_reanalyze)


def _add_simulate_command(sub) -> None:
    """``deepmr simulate``: listed here; its options are parsed by :func:`_simulate_parser`."""
    p = sub.add_parser(
        "simulate",
        help="the simulation experiment with known truth",
        description=_wrap(
            "The simulation experiment with known truth (options: deepmr simulate --help)."
        ),
        add_help=False,
    )
    p.set_defaults(func=None)


def _add_compare_command(sub) -> None:
    """``deepmr compare``: several run folders side by side."""
    p = sub.add_parser(
        "compare",
        help="compare the causal patterns of several runs",
        description=_wrap(
            "Align the shared (exposure, outcome, method) global effects of "
            "several runs, draw them side by side, report Spearman rank correlations "
            "and list pairs whose sign or significance disagree."
        ),
        epilog=_COMPARE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (two or more)")
    p.add_argument(
        "--out", default="deepmr_compare", help="output folder (default ./deepmr_compare)"
    )
    p.add_argument(
        "--mapping",
        metavar="CSV",
        help="match features by this table (one column of feature names per run, in "
        "the runs' order) instead of by label",
    )
    p.add_argument(
        "--no-figures",
        dest="figures",
        action="store_false",
        help="draw no side-by-side figures (tables and report only)",
    )
    _common(p)
    p.set_defaults(func=_cmd_compare)


def _add_info_command(sub) -> None:
    """``deepmr info``: a model as a run sees it."""
    p = sub.add_parser(
        "info",
        help="what a model offers a run: features, input, weights, uncertainty, how to run it",
        description=_wrap(
            "Describe a model as a Deep MR run sees it: its features with their index, input "
            "layout, length and alphabet, whether its weight files are present, how it gets "
            "uncertainty, and the command that runs it. Kipoi models are described from their "
            "model.yaml (nothing is loaded or downloaded); a Python factory is run."
        ),
        epilog="examples:\n  deepmr info DeepSEA/predict\n  deepmr info path/to/kipoi_model_dir\n"
        "  deepmr info my_models.py:build_ensemble\n"
        "  deepmr info --model ctcf=DeepBind/Homo_sapiens/TF/D00328.018_ChIP-seq_CTCF "
        "--model cpg=CpGenie/A549_ENCSR000DDI",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        help="Kipoi model name or directory, adapter, factory",
    )
    p.add_argument(
        "--model",
        dest="panel",
        action="append",
        metavar="LABEL=MODEL",
        help="a model panel, one LABEL=MODEL each: every member's features under the "
        "label/feature names a panel run gives them",
    )
    p.add_argument("--source", default=None, help="Kipoi source of the model")
    p.add_argument(
        "--trust-model-code",
        action="store_true",
        help="read a Kipoi model.yaml that holds Python tags (runs code; see SECURITY.md)",
    )
    _common(p)
    p.set_defaults(func=_cmd_info)


def _add_adapters_command(sub) -> None:
    """``deepmr adapters``: the registered model adapters."""
    p = sub.add_parser(
        "adapters",
        help="list registered model adapters",
        description=_wrap(
            "List the registered model adapters (built in and plugins of "
            "the deepmr_kipoi.adapters entry-point group)."
        ),
        epilog="example:\n  deepmr adapters",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(p)
    p.set_defaults(func=_cmd_adapters)


def _simulate_parser() -> argparse.ArgumentParser:
    from deepmr_kipoi import simulate

    p = _Parser(
        prog="deepmr simulate",
        description=_wrap(
            "The simulation experiment: train models on sequences with a planted "
            "causal structure, run Deep MR, compare with the truth."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate.add_arguments(p)
    if not any("--quiet" in a.option_strings for a in p._actions):
        _common(p)
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@contextlib.contextmanager
def _logging(args) -> Iterator[None]:
    """Log to stderr at the level ``--quiet``/``--verbose`` ask for, for one command; restores the
    root logger afterwards (``main`` may run several times in one process). With ``--quiet`` the
    libraries' Python warnings become log records too, so only errors reach the terminal."""
    quiet = getattr(args, "quiet", False) and not getattr(args, "verbose", False)
    level = (
        logging.DEBUG
        if getattr(args, "verbose", False)
        else (logging.ERROR if quiet else logging.WARNING)
    )
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(quiet)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)


def _summary(result, started: float) -> str:
    from deepmr_kipoi.report.headline import build_headline, calibration_sentence

    g = result.global_effects
    where = f"{result.out_dir}" if result.out_dir else "memory"
    page = Path(result.out_dir or "", "report.html")
    report = f", report {page}" if result.out_dir and page.is_file() else ""  # not with --no-report
    members = (result.run_info.get("model") or {}).get("panel") or {}
    # a panel: which features each model gave, under the names the tables use
    panel = "".join(
        f"model {label} ({m.get('name')}, {m.get('sequence_length') or 'any'} bp, "
        f"{m.get('n_samples')} samples): {', '.join((m.get('feature_names') or [])[:12])}"
        f"{', ...' if len(m.get('feature_names') or []) > 12 else ''}\n"
        for label, m in members.items()
    )
    cache = (result.run_info.get("model") or {}).get("effects_cache")
    if cache:  # what the effects cache gave this run, per model
        used = "; ".join(
            f"{label} {c['reused']} read, {c['computed']} computed"
            for label, c in cache["models"].items()
        )
        panel += f"effects cache {cache['folder']}: {used or 'not used'} (sequences)\n"
    return panel + (
        f"{build_headline(g).summary().rstrip(':.')} ({len(g)} global effects) from "
        f"{result.run_info['sequences']['n']} sequences in {time.time() - started:.1f} s; "
        f"results in {where}{report}\n"
        f"{calibration_sentence(result.run_info.get('calibration'))}"
    )


def _cmd_run(args) -> int:
    from deepmr_kipoi import pipeline

    started = time.time()
    config = arguments.config_from_args(args)
    result = pipeline.run(config)
    if not args.quiet:
        print(_summary(result, started))
    return 0


def _cmd_reanalyze(args) -> int:
    from deepmr_kipoi.run.reanalysis import reanalyze

    started = time.time()
    values = {
        k: v
        for k, v in vars(args).items()
        if k not in ("run_dir", "func", "command", "quiet", "verbose", "debug")
    }
    values = arguments.absolute_paths(values, Path.cwd())
    if not values.get("out"):
        raise DeepMRInputError("no results folder given; pass --out DIR")
    if isinstance(values.get("save_effects"), str) and values["save_effects"] in ("yes", "no"):
        values["save_effects"] = values["save_effects"] == "yes"
    values["progress"] = not args.quiet
    result = reanalyze(args.run_dir, **values)
    if not args.quiet:
        print(_summary(result, started))
    return 0


def _cmd_demo(args) -> int:
    from deepmr_kipoi import demo

    started = time.time()
    result = demo.run_demo(
        args.out,
        n_sequences=args.n_sequences,
        seed=args.seed,
        progress=not args.quiet,
        force=args.force,
    )
    if not args.quiet:
        print(demo.headline(result))
        print(_summary(result, started))
    return 0


def _cmd_compare(args) -> int:
    from deepmr_kipoi import pipeline
    from deepmr_kipoi.run.folder import check_out_dir

    check_out_dir(Path(args.out))

    res = pipeline.compare(args.runs, args.out, figures=args.figures, mapping=args.mapping)
    if not args.quiet:
        for row in res.summary.itertuples():
            print(
                f"{row.method}: {row.run} vs {row.reference}: Spearman rho {row.spearman_rho:.3f} "
                f"over {row.shared_pairs} shared pairs, same sign {row.same_sign:.0%}"
            )
        print(
            f"{len(res.disagreements)} pairs disagree in sign or significance; results in "
            f"{res.out_dir}, report {res.out_dir}/report.html"
        )
    return 0


def _cmd_info(args) -> int:
    from deepmr_kipoi.analysis.info import model_info, panel_info
    from deepmr_kipoi.run.config import model_setting

    given = model_setting(args.panel) if args.panel else None
    if (args.model is None) == (given is None):
        raise DeepMRInputError(
            "give one model (deepmr info MODEL) or a panel (deepmr info --model a=MODEL "
            "--model b=MODEL), not both or neither"
        )
    kw = {"source": args.source, "trust_model_code": args.trust_model_code}
    if isinstance(given, dict):
        info = panel_info(given, **kw)
    else:
        info = model_info(args.model or given, **kw)
    print("\n".join(info.lines()))
    return 0


def _cmd_adapters(args) -> int:
    from deepmr_kipoi import registry

    for line in registry.describe_adapters():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the ``deepmr`` command; return its exit status.

    Called without ``argv`` (the ``deepmr`` console script, ``python -m deepmr_kipoi.cli``), the
    process ends right after the command (:func:`_exit_now`); with ``argv`` it returns the status.
    """
    status = _main(argv)
    if argv is None:
        _exit_now(status)
    return status


def _exit_now(status: int) -> None:
    """End the process without the interpreter's teardown, when nothing else runs in it.

    Freeing every object of torch, pandas and matplotlib at interpreter exit took 0.5-2.6 s after
    a demo run. Every file is written and closed by then; the standard streams and the log
    handlers are flushed here. A command that left child processes or non-daemon threads (a Dask
    cluster) exits the normal way, so their clean-up runs.
    """
    import multiprocessing
    import threading

    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if multiprocessing.active_children() or any(not t.daemon for t in others):
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(status)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:  # usage errors and --help end in SystemExit; main returns the status instead
        if argv and argv[0] == "simulate":
            from deepmr_kipoi import simulate

            args = _simulate_parser().parse_args(argv[1:])
            args.command = "simulate"
            func = simulate.run_from_args
        else:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help()
                return EXIT_BAD_INPUT
            func = args.func
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    try:
        with _logging(args):
            return int(func(args) or 0)
    except (DeepMRInputError, OSError) as err:
        if getattr(args, "debug", False):
            traceback.print_exception(err.__cause__ or err)
        reason = " ".join(str(err).split()) or type(err).__name__
        print(f"deepmr {args.command}: error: {reason}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            f"deepmr {args.command}: interrupted; re-run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - anything else is a bug: show it whole
        traceback.print_exc()
        kept = getattr(err, "deepmr_chunks_kept", 0)
        after = (
            f"; the {kept} chunk(s) already computed are kept, so the same command resumes"
            if kept
            else "; no chunk was computed in this call"
        )
        print(
            f"deepmr {args.command}: internal error (a bug, not your input){after}",
            file=sys.stderr,
        )
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
