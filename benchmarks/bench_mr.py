"""Benchmark: local MR (IVW + MR-Egger) and the global random-effects meta-analysis over all ordered
pairs of 200 features x 50 sequences x 1,500 candidate instruments, against a per-pair loop of
statsmodels WLS fits measured on a sample of pairs in the same run and extrapolated.

Workload (simulated, seeded): ISM-like effects ``b`` (50 sequences, 200 features, 1,500 mutants)
with shared latent programs so that features are correlated, SEs in [0.02, 0.08], and per exposure
the instruments ``|b_x / se_x| >= 1.96``. Ours: ``mr.all_pairs`` for IVW and Egger (estimates and
SEs, as the peer extracts; each statistic one matrix product per sequence), then
``meta.random_effects_batched`` (Paule-Mandel) of each method's 50 local estimates for every pair. Peer: for each sampled pair and sequence, statsmodels ``WLS``
through the origin (IVW, SE / min(1, sigma)) and with intercept on oriented data (Egger), then
statsmodels ``combine_effects(method_re="iterated")`` (Paule-Mandel) per pair and method.

Run: ``python benchmarks/bench_mr.py`` (about a minute; ``--help`` for sizes).
"""

from __future__ import annotations

import argparse
import os
import time

# Both sides run single-threaded unless the caller says otherwise: the peer loop cannot use more
# threads, and on a shared 2-core machine OpenBLAS worker threads spin against other processes.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from deepmr_kipoi import meta, mr  # noqa: E402


def simulate(n_seq: int, n_feat: int, n_inst: int, seed: int):
    rng = np.random.default_rng(seed)
    n_latent = 8
    loadings = rng.normal(0.0, 1.0, (n_latent, n_feat)) * (rng.random((n_latent, n_feat)) < 0.4)
    latent = rng.normal(0.0, 1.0, (n_seq, n_inst, n_latent))
    true = np.einsum("nkl,lf->nfk", latent, loadings) * 0.04
    se = rng.uniform(0.02, 0.08, (n_seq, n_feat, n_inst))
    b = true + se * rng.standard_normal((n_seq, n_feat, n_inst))
    return b, se, np.abs(b / se) >= 1.96


def ours(b, se, mask, meta_method: str):
    n_feat = b.shape[1]
    t0 = time.perf_counter()
    res = mr.all_pairs(b, se_bx=se, selection=mask, methods=("ivw", "egger"), output="estimates")
    t_mr = time.perf_counter() - t0

    # Each pair's local estimates over the sequences, pairs as rows: (E, O, N) views.
    t0 = time.perf_counter()
    off = ~np.eye(n_feat, dtype=bool)
    glob = {
        m: meta.random_effects_batched(
            *(a.transpose(1, 2, 0)[off] for a in (r.estimate, r.se, r.ok)), method=meta_method
        )
        for m, r in res.items()
    }
    t_meta = time.perf_counter() - t0
    local = {m: np.stack([r.estimate, r.se]).transpose(0, 2, 3, 1) for m, r in res.items()}
    return local, glob, t_mr, t_meta


def peer(b, se, mask, pairs):
    import statsmodels.api as sm
    from statsmodels.stats.meta_analysis import combine_effects

    n_seq = b.shape[0]
    out = {m: np.full((2, len(pairs), n_seq), np.nan) for m in ("ivw", "egger")}
    glob = {m: np.full(len(pairs), np.nan) for m in out}
    t_mr = t_meta = 0.0
    for p, (e, o) in enumerate(pairs):
        t0 = time.perf_counter()
        for n in range(n_seq):
            m = mask[n, e]
            if m.sum() < 3:
                continue
            x, y, w = b[n, e, m], b[n, o, m], se[n, o, m] ** -2.0
            fit = sm.WLS(y, x[:, None], weights=w).fit()
            out["ivw"][:, p, n] = fit.params[0], fit.bse[0] / min(1.0, np.sqrt(fit.scale))
            sign = np.where(x < 0, -1.0, 1.0)
            fit = sm.WLS(y * sign, sm.add_constant(np.abs(x)), weights=w).fit()
            out["egger"][:, p, n] = fit.params[1], fit.bse[1] / min(1.0, np.sqrt(fit.scale))
        t1 = time.perf_counter()
        for method, (est, ses) in out.items():
            good = np.isfinite(est[p])
            res = combine_effects(est[p, good], ses[p, good] ** 2, method_re="iterated")
            glob[method][p] = res.mean_effect_re
        t_mr += t1 - t0
        t_meta += time.perf_counter() - t1
    return out, glob, t_mr, t_meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, default=200)
    ap.add_argument("--sequences", type=int, default=50)
    ap.add_argument("--instruments", type=int, default=1500)
    ap.add_argument(
        "--sample-pairs",
        type=int,
        default=100,
        help="pairs timed for the peer (fewer: a noisier ratio)",
    )
    ap.add_argument("--repeats", type=int, default=2, help="runs of each side; the best counts")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    b, se, mask = simulate(args.sequences, args.features, args.instruments, args.seed)
    n_pairs = args.features * (args.features - 1)
    cells = n_pairs * args.sequences
    print(f"BLAS threads: {os.environ['OPENBLAS_NUM_THREADS']} (OPENBLAS_NUM_THREADS)")
    print(
        f"workload: {args.features} features -> {n_pairs} ordered pairs x {args.sequences} "
        f"sequences x {args.instruments} candidate instruments "
        f"(mean {mask.sum(-1).mean():.0f} selected per sequence and exposure)"
    )

    rng = np.random.default_rng(args.seed + 1)
    off = np.flatnonzero(~np.eye(args.features, dtype=bool).ravel())
    pick = rng.choice(off, size=args.sample_pairs, replace=False)
    pairs = [divmod(int(i), args.features) for i in pick]
    runs, peers = [], []
    for _ in range(args.repeats):  # in turns, so that both sides see the machine's load alike
        runs.append(ours(b, se, mask, "PM"))
        peers.append(peer(b, se, mask, pairs))
    local, glob = runs[0][:2]
    t_mr, t_meta = min(r[2] for r in runs), min(r[3] for r in runs)
    print(f"best of {args.repeats} runs on each side, in turns")
    t_ours = t_mr + t_meta
    print(f"ours  MR (IVW + Egger): {t_mr:7.2f} s  {2 * cells / t_mr:12,.0f} MR fits/s")
    print(f"ours  meta-analysis (PM, 2 x {n_pairs} pairs): {t_meta:7.2f} s")
    print(f"ours  total: {t_ours:7.2f} s  ({n_pairs / t_ours:,.0f} pairs/s)")

    ref, ref_glob = peers[0][:2]
    p_mr, p_meta = min(r[2] for r in peers), min(r[3] for r in peers)
    scale = n_pairs / len(pairs)
    print(
        f"peer  statsmodels WLS loop (IVW + Egger): {p_mr:.2f} s for {len(pairs)} pairs "
        f"-> {p_mr * scale:,.0f} s extrapolated ({2 * cells / (p_mr * scale):,.0f} MR fits/s)"
    )
    print(
        f"peer  statsmodels combine_effects (PM): {p_meta:.2f} s for {len(pairs)} pairs "
        f"-> {p_meta * scale:,.0f} s extrapolated"
    )

    e_idx, o_idx = np.array(pairs).T
    worst = 0.0
    for method in ("ivw", "egger"):
        for k in (0, 1):
            mine = local[method][k, e_idx, o_idx]
            good = np.isfinite(ref[method][k])
            worst = max(worst, np.max(np.abs(mine[good] / ref[method][k][good] - 1)))
    print(f"check: max relative difference of local estimates and SEs vs statsmodels: {worst:.1e}")
    flat = e_idx * args.features + o_idx
    pos = np.searchsorted(off, flat)
    gdiff = max(np.max(np.abs(glob[m].estimate[pos] - ref_glob[m])) for m in ("ivw", "egger"))
    print(f"check: max |global estimate difference| vs statsmodels combine_effects: {gdiff:.1e}")
    print(f"ratio MR only: {p_mr * scale / t_mr:,.0f}x")
    print(f"ratio meta only: {p_meta * scale / t_meta:,.0f}x")
    ratio = (p_mr + p_meta) * scale / t_ours
    print(f"RATIO IVW + Egger + meta (peer extrapolated / ours): {ratio:,.0f}x (target >= 1,000x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
