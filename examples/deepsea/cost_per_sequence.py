"""Cost of one sequence of saturation ISM through DeepSEA/predict, the way ``deepmr run`` computes it.

The network is the zoo's DeepSEA/predict architecture (``benchmarks/zoo_architectures.py``: the
zoo's layer sizes, ACGT->AGCT swap and reverse-complement averaging inside the model) with random
weights; a forward pass costs the same whatever the weights. Three configurations, each timed once on
one random 1000-bp sequence after a warm-up:

* a 5-member deep ensemble (five copies with different random weights) over ``--window`` positions;
* the same ensemble over ``--narrow`` central positions;
* MC dropout with 30 samples over ``--mc-window`` central positions (the whole-window cost is
  extrapolated from it per mutant: every mutant costs the same with the receptive-field cache).

Run from the repository root::

    OMP_NUM_THREADS=1 PYTHONPATH=. python examples/deepsea/cost_per_sequence.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def timed(model, x, window) -> tuple[float, int]:
    from deepmr_kipoi import ism

    tic = time.perf_counter()
    ism.saturation_effects(model, x, window=window, progress=False)
    return time.perf_counter() - tic, 3 * (window[1] - window[0])


def central(length: int, width: int) -> tuple[int, int]:
    start = (length - width) // 2
    return start, start + width


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=1000, help="ensemble window (default 1000)")
    p.add_argument("--narrow", type=int, default=100, help="narrower ensemble window (default 100)")
    p.add_argument("--mc-window", type=int, default=50, help="MC-dropout window (default 50)")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    import torch

    from benchmarks import zoo_architectures as zoo
    from deepmr_kipoi import sequences
    from deepmr_kipoi.predictive import DeepEnsemble, MCDropout, from_torch

    torch.set_num_threads(args.threads)
    make, layout, length = zoo.ZOO["DeepSEA/predict"]

    def member(seed):
        return from_torch(make(seed), layout=layout, sequence_length=length, device=args.device)

    x = sequences.random_sequences(1, length, seed=0)
    ensemble = DeepEnsemble([member(s) for s in range(args.members)])
    mc = MCDropout(member(0), n_samples=args.samples, seed=0)
    print(
        f"torch {torch.__version__}, device {args.device}, {args.threads} threads; ISM path "
        f"{ensemble.members[0].ism_path}; load average {os.getloadavg()[0]:.2f} at start"
    )
    timed(ensemble, x, central(length, 2))  # trace, check and warm up both paths
    timed(mc, x, central(length, 2))
    rows = []
    for label, model, width in (
        (f"ensemble of {args.members}", ensemble, args.window),
        (f"ensemble of {args.members}", ensemble, args.narrow),
        (f"MC dropout, {args.samples} samples", mc, args.mc_window),
    ):
        seconds, n_mut = timed(model, x, central(length, width))
        rows.append((label, width, n_mut, seconds))
        print(
            f"{label:24s} window {width:5d} bp: {seconds:8.1f} s for {n_mut} mutants "
            f"({1000 * seconds / n_mut:.1f} ms per mutant; whole 1000 bp "
            f"{seconds / n_mut * 3 * length / 60:.1f} min per sequence)"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
