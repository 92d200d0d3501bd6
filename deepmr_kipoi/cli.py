"""The ``deepmr`` command line."""

from __future__ import annotations

import argparse
import sys

from deepmr_kipoi import __version__

EXIT_BAD_INPUT = 2


def _not_yet(name: str):
    def run(args: argparse.Namespace) -> int:
        print(f"deepmr {name}: not implemented yet in this version", file=sys.stderr)
        return EXIT_BAD_INPUT

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepmr",
        description="Deep Mendelian Randomization: causal effects a genomic deep-learning model has learned.",
        epilog="Example: deepmr demo --out demo_results",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"deepmr_kipoi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in [
        ("demo", "complete run on the small model shipped with the package"),
        ("run", "Deep MR on a Kipoi model or a registered adapter"),
        ("simulate", "the simulation experiment with known truth"),
        ("compare", "compare the causal patterns of several runs"),
        ("adapters", "list registered model adapters"),
    ]:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(func=_not_yet(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
