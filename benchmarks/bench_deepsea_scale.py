"""Benchmark: a Deep MR run at DeepSEA's feature count, through the run's own code (``deepmr run``).

The model is a cheap stand-in with DeepSEA's shape of output: a 5-member deep ensemble of numpy
functions (``from_function``) with 919 outputs on 100-bp sequences, each member a smooth
nonlinear readout of the one-hot sequence through 12 shared latent tracks plus a feature-specific
part (so features are correlated as chromatin marks are, and mutations move many features), with
member-specific perturbations (the ensemble's uncertainty). The ISM of such a model takes seconds;
what the benchmark measures is the analysis of all 843,642 ordered pairs with the default rules
(directionality check on, heterogeneity, IVW and MR-Egger, per-sample estimates, the verdict).

It writes the factory module and a FASTA of random sequences to a scratch folder, runs
``python -m deepmr_kipoi.cli run --model factory.py:build --fasta seqs.fa --n-sequences N
--no-figures --no-report`` as a child process, and prints the wall time, the stage timings of
``run.json`` (``plan``, ``ism``, ``mr``: the local stage of every chunk, ``meta``: the aggregate,
``tables``) and the child's peak resident memory (``ru_maxrss``).

Run: ``python benchmarks/bench_deepsea_scale.py --n-sequences 16`` (``--features 20`` for a small
check; ``--chunk-size`` to change the chunking).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FACTORY = """
import numpy as np
from deepmr_kipoi.predictive import DeepEnsemble, from_function

def build(n_features={features}, length=100, n_members=5, seed=0):
    rng = np.random.default_rng(seed)
    names = ["feature_%03d" % i for i in range(n_features)]
    latent = rng.normal(0, 1, (length * 4, 12)) / np.sqrt(length)
    loads = rng.normal(0, 1, (12, n_features)) * (rng.random((12, n_features)) < 0.3)
    own = rng.normal(0, 0.5, (length * 4, n_features)) / np.sqrt(length)
    base = (latent @ loads + own).astype(np.float32)
    members = []
    for s in range(n_members):
        w = base + rng.normal(0, 0.02, base.shape).astype(np.float32) / np.sqrt(length)
        members.append(from_function(
            lambda x, w=w: np.tanh(x.reshape(len(x), -1) @ w), names, sequence_length=length
        ))
    return DeepEnsemble(members)
"""


def write_inputs(folder: Path, n_sequences: int, n_features: int, seed: int = 0) -> None:
    """The factory module and a FASTA of ``n_sequences`` random 100-bp sequences."""
    import numpy as np

    (folder / "factory.py").write_text(FACTORY.format(features=n_features))
    rng = np.random.default_rng(seed)
    with open(folder / "seqs.fa", "w") as fh:
        for i in range(n_sequences):
            fh.write(f">s{i}\n{''.join(rng.choice(list('ACGT'), 100))}\n")


def run_once(folder: Path, n_sequences: int, chunk_size: int | None, extra) -> dict:
    out = folder / f"run_{time.time_ns()}"
    args = f"run --model factory.py:build --fasta seqs.fa --n-sequences {n_sequences}"
    args += f" --no-figures --no-report --out {out}"
    cmd = [sys.executable, "-m", "deepmr_kipoi.cli", *args.split(), *extra]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    tick = time.perf_counter()
    subprocess.run(cmd, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - tick
    info = json.loads((out / "run.json").read_text())
    return {"wall_s": wall, "timings_s": info.get("timings_s", {})}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sequences", type=int, default=16)
    parser.add_argument("--features", type=int, default=919)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, args.n_sequences, args.features)
        res = run_once(folder, args.n_sequences, args.chunk_size, args.extra)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB -> GiB
    pairs = args.features * (args.features - 1)
    print(
        f"deepmr run, {args.features} features ({pairs:,} ordered pairs), "
        f"{args.n_sequences} sequences, 5 members, 100 bp, load {os.getloadavg()[0]:.1f}"
    )
    print(f"  wall {res['wall_s']:.1f} s, peak RSS {peak:.2f} GiB")
    print("  run.json timings (s): " + json.dumps(res["timings_s"]))


if __name__ == "__main__":
    main()
