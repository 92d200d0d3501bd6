"""Benchmark: ISM once, analyse many times -- a full run against its reanalysis with another ``z``.

Two workloads, each timed best of ``--repeats``:

* the embedded demo (``deepmr demo``: 16 sequences, a 5-member ensemble, calibration, figures and
  report), then ``deepmr reanalyze`` of its folder with ``--z 3`` into a new folder (figures and
  report drawn again, since the numbers changed) and the same reanalysis kept in memory
  (tables only);
* a DeepSEA-architecture deep ensemble (Kipoi's DeepSEA/variantEffects layers at the zoo's sizes,
  input (N, 4, 1, 1000), 919 outputs; ``--members`` members: one random network, perturbed) through
  ``deepmr_kipoi.analyze`` on ``--n-sequences`` random sequences, ISM over a ``--width``-bp
  window, four exposure and outcome features, no figures; then ``Analysis.reanalyze(z=3)``.

Run: ``python benchmarks/bench_reanalyze.py`` (minutes: the DeepSEA ISM dominates); the load
average is printed with the figures, which depend on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        tick = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - tick)
    return best, out


def bench_demo(work: Path, repeats: int) -> dict:
    from deepmr_kipoi import demo
    from deepmr_kipoi.run.reanalysis import reanalyze

    def full():
        shutil.rmtree(work / "demo", ignore_errors=True)
        return demo.run_demo(work / "demo", progress=False)

    def again():
        shutil.rmtree(work / "demo_z3", ignore_errors=True)
        return reanalyze(work / "demo", z=3.0, out=str(work / "demo_z3"), progress=False)

    run_s, _ = _best(full, repeats)
    re_s, _ = _best(again, repeats)
    mem_s, _ = _best(lambda: reanalyze(work / "demo", z=3.0, progress=False), repeats)
    return {"run": run_s, "reanalyze_folder": re_s, "reanalyze_memory": mem_s}


def bench_deepsea(work: Path, repeats: int, members: int, n: int, width: int) -> dict:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import copy

    import torch
    import zoo_architectures as zoo

    import deepmr_kipoi
    from deepmr_kipoi import sequences

    # one network, perturbed per member: the members disagree a little, as retrained copies do
    base = zoo.deepsea_variant_effects(seed=0)
    nets = []
    for s in range(members):
        net = copy.deepcopy(base)
        gen = torch.Generator().manual_seed(100 + s)
        with torch.no_grad():
            for w in net.parameters():
                w.add_(0.02 * w.abs().mean() * torch.randn(w.shape, generator=gen))
        nets.append(net.eval())
    onehot = sequences.random_sequences(n, 1000, seed=0)
    start = (1000 - width) // 2
    settings = dict(
        layout="NC1L",
        window=(start, start + width),
        exposures=["feature_0", "feature_1"],
        outcomes=["feature_2", "feature_3"],
        figures=False,
        report=False,
        progress=False,
    )

    def full():
        shutil.rmtree(work / "deepsea", ignore_errors=True)
        return deepmr_kipoi.analyze(nets, onehot, out=work / "deepsea", **settings)

    run_s, result = _best(full, repeats)
    re_s, _ = _best(lambda: result.reanalyze(z=3.0), repeats)
    return {"run": run_s, "reanalyze_memory": re_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--members", type=int, default=3)
    p.add_argument("--n-sequences", type=int, default=2)
    p.add_argument("--width", type=int, default=100)
    p.add_argument("--skip-demo", action="store_true")
    args = p.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="bench_reanalyze_"))
    print(f"load average before: {os.getloadavg()}")
    if not args.skip_demo:
        d = bench_demo(work, args.repeats)
        print(
            f"demo: full run {d['run']:.1f} s; reanalyze --z 3 into a folder "
            f"{d['reanalyze_folder']:.1f} s ({d['reanalyze_folder'] / d['run']:.1%}); in memory "
            f"{d['reanalyze_memory']:.2f} s ({d['reanalyze_memory'] / d['run']:.1%})"
        )
    s = bench_deepsea(work, args.repeats, args.members, args.n_sequences, args.width)
    print(
        f"DeepSEA architecture ({args.members} members, {args.n_sequences} sequences, "
        f"{args.width}-bp window): full run {s['run']:.1f} s; reanalyze z=3 "
        f"{s['reanalyze_memory']:.2f} s ({s['reanalyze_memory'] / s['run']:.1%})"
    )
    print(f"load average after: {os.getloadavg()}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
