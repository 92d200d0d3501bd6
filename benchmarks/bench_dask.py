"""Dask executor throughput: a LocalCluster of 1 and of 2 single-threaded workers on one chunked run.

The run is the demo model (5-member torch CNN ensemble, 3 features, L = 100) over ``--n-seq`` demo
sequences in chunks of ``--chunk-size``, IVW + Egger, in memory (no run folder). For each worker
count the ``LocalCluster`` that ``--dask-workers N`` starts (``executors.local_cluster``: worker
processes of one thread, Dask's profiler off) is started once and the run is pointed at it with
``dask_address``; one warm-up run loads the model into every worker (the
worker-side cache keeps it), then ``--repeats`` timed runs follow and the best counts.

Throughput is chunks per second of the chunk phase: from the start of the run to the last chunk
result on the client, less the client's plan time (loading the model and sequences there, the
same for every worker count). The end-to-end seconds (plan, chunks, aggregate) are printed too.
Every Dask run's tables are checked equal to the single-process run's. Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dask.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dask.py --n-seq 192 --workers 1 2 4

Target: 2 workers at least 1.7x the chunks/s of 1 worker. On a machine shared with other jobs the
ratio falls with the cores the others take; the printout says how many cores this process saw.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _config(fasta: Path, n_chunk: int, features):
    from deepmr_kipoi.demo import DEMO_FACTORY
    from deepmr_kipoi.run.config import RunConfig

    return RunConfig(
        model=DEMO_FACTORY,
        fasta=str(fasta),
        exposures=tuple(features),
        outcomes=tuple(features),
        methods=("ivw", "egger"),
        chunk_size=n_chunk,
        figures=False,
        report=False,
        progress=False,
        seed=0,
    )


def _timed(config):
    """One run; returns (result, chunk-phase seconds, end-to-end seconds)."""
    from deepmr_kipoi.run import runner

    last = [0.0]
    tick = time.perf_counter()
    result = runner.run(config, on_chunk=lambda ci, n: last.__setitem__(0, time.perf_counter()))
    total = time.perf_counter() - tick
    return result, last[0] - tick - result.record.timings_s["plan"], total


def _busy(result) -> float:
    """Seconds spent in ISM + local MR, summed over the processes that computed chunks."""
    t = result.record.timings_s
    return t.get("ism", 0.0) + t.get("mr", 0.0)


def main(argv=None) -> int:
    import pandas as pd

    from deepmr_kipoi import sequences, simulate
    from deepmr_kipoi.run import executors

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-seq", type=int, default=96)
    ap.add_argument("--chunk-size", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    ids, onehot = simulate.demo_sequences(n=args.n_seq, seed=0)
    features = simulate.load_demo_model().feature_names
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "demo.fa"
        fasta.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, sequences.decode(onehot))))
        config = _config(fasta, args.chunk_size, features)
        reference, ref_chunks, ref_total = _timed(config)
        n_chunks = reference.record.chunks.n
        print(
            f"demo model, {args.n_seq} sequences, {n_chunks} chunks of {args.chunk_size}; "
            f"{len(os.sched_getaffinity(0))} cores visible, load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        print(
            f"single process (executor=local): chunks {ref_chunks:.2f} s "
            f"({n_chunks / ref_chunks:.2f} chunks/s), end to end {ref_total:.2f} s, "
            f"compute {_busy(reference):.2f} s"
        )
        rates = {}
        for n in args.workers:
            with executors.local_cluster(n) as cluster:
                dask_config = config.replace(
                    executor="dask", dask_address=cluster.scheduler_address
                )
                _timed(dask_config)  # warm-up: every worker loads the model once
                best = None
                for _ in range(args.repeats):
                    result, chunks_s, total_s = _timed(dask_config)
                    pd.testing.assert_frame_equal(result.global_effects, reference.global_effects)
                    pd.testing.assert_frame_equal(result.local_effects, reference.local_effects)
                    if best is None or chunks_s < best[0]:
                        best = (chunks_s, total_s, _busy(result))
            rates[n] = n_chunks / best[0]
            print(
                f"LocalCluster {n} worker(s): chunks {best[0]:.2f} s ({rates[n]:.2f} chunks/s, "
                f"{rates[n] * args.chunk_size:.1f} seq/s), end to end {best[1]:.2f} s, "
                f"compute {best[2]:.2f} s summed over workers "
                f"(best of {args.repeats}; tables equal to the single process)"
            )
        base = min(rates)
        for n in sorted(rates):
            if n != base:
                print(
                    f"ratio {n} vs {base} worker(s): {rates[n] / rates[base]:.2f}x "
                    f"(target for 2 vs 1: >= 1.7x)"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
