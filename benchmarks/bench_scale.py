"""Benchmark: all-pairs MR at DeepSEA scale on one machine.

Workload (simulated, seeded per sequence, generated sequence by sequence as a model would deliver
ISM effects): 919 features (843,642 ordered pairs), 200 sequences, 600 instruments each (3 alleles
x 200 positions), 5 model samples (ensemble members). Per sequence, the ensemble effect is the mean
of the members, its SE their standard deviation, and each exposure's instruments are
``|b / se| >= 1.96``. Steps timed:

1. local MR: ``mr.all_pairs`` with IVW and MR-Egger for all pairs, the ensemble and each of the 5
   samples (the samples' own effects, the ensemble SEs as weights, the same instruments), one
   call per sequence;
2. the headline global inference, streamed: ``inference.CrossedAccumulator`` takes each
   sequence's per-sample estimates (the crossed sequences x samples model with Satterthwaite df)
   and gives estimate, SE, df, CI and p-value for every pair at the end;
3. the meta-analysis columns: ``meta.random_effects_batched`` (REML) over the 200 sequences of the
   ensemble estimates, for every pair and both methods, in blocks of pairs.

The ensemble's local estimates and SEs are kept in float32 between steps 1 and 3 (2.7 GB instead
of 5.4 GB for both methods; they carry about 7 significant digits into the meta-analysis). Peak
RSS is the process's ``ru_maxrss``. ``--pair-mask`` also times, on the first sequence, the exact
path for a pair-dependent instrument rule (a Steiger-like ``|b_x| / sd_x > |b_y| / sd_y``) against
the matrix-product path. ``--small`` is a quick check (120 features, 20 sequences, 150
instruments).

Run: ``OMP_NUM_THREADS=2 python benchmarks/bench_scale.py`` (several minutes; ``--small``: seconds).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, os.environ.get("OMP_NUM_THREADS", "1"))

import numpy as np  # noqa: E402

from deepmr_kipoi import inference, meta, mr  # noqa: E402

METHODS = ("ivw", "egger")


def latent_loadings(n_feat: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 0])
    n_latent = 12
    return rng.normal(0.0, 1.0, (n_latent, n_feat)) * (rng.random((n_latent, n_feat)) < 0.3)


def sequence_effects(n: int, loadings: np.ndarray, n_inst: int, n_samples: int, seed: int):
    """Member effects (S, F, K), ensemble effect and SE (F, K) and instrument mask of sequence n."""
    rng = np.random.default_rng([seed, 1, n])
    latent = rng.normal(0.0, 1.0, (loadings.shape[0], n_inst))
    true = 0.05 * loadings.T @ latent
    spread = rng.uniform(0.01, 0.04, true.shape)
    members = true[None] + spread[None] * rng.standard_normal((n_samples,) + true.shape)
    ens = members.mean(axis=0)
    se = np.maximum(members.std(axis=0, ddof=1), 1e-4)
    return members, ens, se, np.abs(ens / se) >= 1.96


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def cpu_s() -> float:
    """Process CPU time (user + system): on a shared machine, wall time alone overstates the cost."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, default=919)
    ap.add_argument("--sequences", type=int, default=200)
    ap.add_argument("--instruments", type=int, default=600)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--pair-block", type=int, default=20000, help="pairs per meta-analysis block")
    ap.add_argument("--pair-mask", action="store_true", help="also time the pair-mask path")
    ap.add_argument("--small", action="store_true", help="120 features, 20 sequences, 150 inst.")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.small:
        args.features, args.sequences, args.instruments = 120, 20, 150
    f, n_seq, k, s = args.features, args.sequences, args.instruments, args.samples
    n_pairs = f * (f - 1)
    print(f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']}")
    print(
        f"workload: {f} features -> {n_pairs:,} ordered pairs x {n_seq} sequences x {k} "
        f"instruments, {s} samples + ensemble"
    )
    loadings = latent_loadings(f, args.seed)
    off = ~np.eye(f, dtype=bool)
    local = {m: np.full((2, n_seq, n_pairs), np.nan, dtype=np.float32) for m in METHODS}
    acc = {m: inference.CrossedAccumulator(s, (n_pairs,)) for m in METHODS}

    t_gen = t_mr = t_acc = 0.0
    n_inst = []
    t_all, c_all = time.perf_counter(), cpu_s()
    for n in range(n_seq):
        t0 = time.perf_counter()
        members, ens, se, mask = sequence_effects(n, loadings, k, s, args.seed)
        n_inst.append(mask.sum(axis=1).mean())
        b = np.concatenate([ens[None], members])[:, None]  # (S + 1, 1, F, K): ensemble first
        t1 = time.perf_counter()
        res = mr.all_pairs(
            b, se_bx=se[None], selection=mask[None], methods=METHODS, output="estimates"
        )
        t2 = time.perf_counter()
        for m, r in res.items():
            est, ses = r.estimate[:, 0][:, off], r.se[:, 0][:, off]  # (S + 1, pairs)
            local[m][0, n], local[m][1, n] = est[0], ses[0]
            acc[m].add(est[1:])
        t3 = time.perf_counter()
        t_gen, t_mr, t_acc = t_gen + t1 - t0, t_mr + t2 - t1, t_acc + t3 - t2
    print(f"mean selected instruments per exposure: {np.mean(n_inst):.0f} of {k}")
    print(f"simulate effects: {t_gen:7.1f} s (not part of the MR)")
    fits = 2 * n_pairs * n_seq * (s + 1)
    print(
        f"local MR (IVW + Egger, ensemble + {s} samples): {t_mr:7.1f} s "
        f"({fits / t_mr:,.0f} MR fits/s)"
    )
    t0 = time.perf_counter()
    headline = {m: acc[m].result() for m in METHODS}
    t_acc += time.perf_counter() - t0
    print(f"headline inference (crossed sequences x samples, streamed): {t_acc:7.1f} s")

    t0 = time.perf_counter()
    glob = {m: np.full(n_pairs, np.nan) for m in METHODS}
    for m in METHODS:
        for start in range(0, n_pairs, args.pair_block):
            sl = slice(start, start + args.pair_block)
            y = local[m][0, :, sl].T.astype(np.float64)
            sv = local[m][1, :, sl].T.astype(np.float64)
            glob[m][sl] = meta.random_effects_batched(y, sv, np.isfinite(y)).estimate
    t_meta = time.perf_counter() - t0
    print(f"meta-analysis columns (REML over sequences, 2 x {n_pairs:,} pairs): {t_meta:7.1f} s")
    total = time.perf_counter() - t_all - t_gen
    print(
        f"TOTAL MR + global step: {total:7.1f} s wall ({total / 60:.1f} min; target <= 10 min), "
        f"{cpu_s() - c_all:.1f} s CPU incl. simulation"
    )
    print(f"PEAK RSS: {rss_gib():.2f} GiB (target <= 8 GiB)")
    for m in METHODS:
        h = headline[m]
        print(
            f"check {m}: headline vs meta-analysis estimate, median |diff| "
            f"{np.nanmedian(np.abs(glob[m] - h.estimate)):.2e}; median headline SE "
            f"{np.nanmedian(h.se):.4f}, median df {np.nanmedian(h.df):.1f}; defined pairs "
            f"{np.isfinite(h.estimate).mean():.3f}"
        )

    if args.pair_mask:
        members, ens, se, mask = sequence_effects(0, loadings, k, s, args.seed)
        b = np.concatenate([ens[None], members])[:, None]
        score = np.abs(ens) / ens.std(axis=1, keepdims=True)
        times = {}
        steiger = mr.PairSelection(mask=mask[None], pair_scores=(score[None], score[None]))
        for label, rule in (("matrix products", mask[None]), ("pair mask (Steiger-like)", steiger)):
            best = np.inf
            for _ in range(2):
                t0 = time.perf_counter()
                mr.all_pairs(b, se_bx=se[None], selection=rule, methods=METHODS, output="estimates")
                best = min(best, time.perf_counter() - t0)
            times[label] = best
            print(
                f"one sequence, {label}: {best:.2f} s (best of 2) -> {best * n_seq / 60:.1f} "
                f"min for {n_seq} sequences"
            )
        print(
            f"RATIO pair mask / matrix products: "
            f"{times['pair mask (Steiger-like)'] / times['matrix products']:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
