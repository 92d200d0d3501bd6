"""Train the embedded demo model shipped in deepmr_kipoi/data/demo.

A 5-member ensemble of tiny CNNs (3 conv + 2 dense layers, ~3k parameters each) predicting three
Anscombe-scale count features with a planted causal structure: GATA1 -> TAL1 (beta = 4 alpha), SOX2
unrelated (see deepmr_kipoi/simulate/demo_model.py). Seeded: re-running reproduces the weights up to
floating-point differences between machines.

Usage (from the repository root):

    python examples/simulation/train_demo_model.py            # writes deepmr_kipoi/data/demo
    python examples/simulation/train_demo_model.py --out /tmp/demo_model
"""

import argparse
import json
import logging
import os
import time

from deepmr_kipoi.simulate import demo_model as demo

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "deepmr_kipoi", "data", "demo")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    meta = demo.train_demo_model(os.path.normpath(args.out))
    logging.info(
        "trained in %.0f s: %s",
        time.perf_counter() - t0,
        json.dumps({k: meta[k] for k in ("best_epochs", "val_mse")}),
    )
    truth = demo.demo_truth()
    logging.info("true global effects on the demo sequences:\n%s", truth.to_string(index=False))


if __name__ == "__main__":
    main()
