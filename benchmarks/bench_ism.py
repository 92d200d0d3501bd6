"""Saturation-ISM throughput: deepmr_kipoi.ism against tangermeme.saturation_mutagenesis.

Two models, each a 5-member ensemble of randomly initialised PyTorch networks over 8 random sequences:

(a) a Basset-shaped conv net: 3 conv + BatchNorm + ReLU + max-pool blocks (300x19, 200x11, 200x7; pools
    3, 4, 4), 2 dense layers of 1000, 164 sigmoid outputs, L = 600;
(b) a bpnet-lite BPNet (64 filters, 8 dilated residual layers, no control track, L = 1000), counts head.

For each, the same paired effects (mean and SD over members of f_s(mutant) - f_s(reference)) are
computed three ways, in one process, on the same sequences and window:

* ours: ``ism.saturation_effects(DeepEnsemble([...]), ...)`` three ways: the default members
  (receptive-field caching, ``from_torch(..., fast_ism=True)``: each reference's mutants recompute
  only what their mutation reaches), full forward passes (``fast_ism=False``: mutants of all
  sequences batched together, each batch predicted by every member), and full passes with
  ``optimize=True`` (TorchScript-frozen, oneDNN weight pre-packing);
* tangermeme ``fast=False``: ``saturation_mutagenesis(member, X, raw_outputs=True, fast=False)`` per
  member, then the same paired mean/SD;
* tangermeme ``fast=True`` (its fastISM, receptive-field caching via torch.export). tangermeme skips
  its fast path for jobs it expects to finish within 30 s; ``--force-fast`` (default on) sets that
  threshold to 0 so that fast=True is always attempted (tangermeme still falls back, with a warning
  that is printed, when its check finds the fast path slower or unsupported).

Throughput is mutant forward passes per second: sequences x 3 x window x members / seconds. Peak
memory of ours is measured in separate subprocesses for half and all of the sequences (peak RSS and
the tracemalloc peak of Python/numpy allocations) to show that it does not grow with the number of
sequences. Timings are the best of ``--repeats`` runs per tool in this process, so that every tool
runs with warm kernels; the tools are timed in turns (one run of each per round), so that all of
them see the same machine load. Run (about 5-10 minutes on 2 cores with the defaults)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_ism.py
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_ism.py --models bpnet --window 100 --n-seq 8

With a whole-sequence window (the configuration ``deepmr run`` uses by default), one reference
sequence, one torch thread, on the project's 2-core machine shared with five other jobs (load
average 4 to 8; tangermeme 1.6.0, bpnet-lite 1.1.0, torch 2.13.0+cpu)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ism.py --models basset --window 600 \
        --n-seq 1 --members 5 --threads 1 --skip-full
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ism.py --models bpnet --window 1000 \
        --n-seq 1 --members 2 --threads 1 --skip-full

    model    ours               mut/s  tm fast=F  ratio  tm fast=T  ratio  max|diff|
    basset   fast ISM          1182.7       62.3  18.98       58.9  20.07   4.85e-08
    bpnet    fast ISM           245.9       79.0   3.11      101.7   2.42   2.32e-07
    bpnet    fast ISM           299.5       90.6   3.31      122.9   2.44   2.32e-07   (idle machine)

Over the whole sequence tangermeme's own fastISM gains on BPNet (faster than its ``fast=False``
there, unlike with a 20-bp window), so ours leads it by 2.4x rather than 4.1x: the 3x target
against ``fast=True`` is not met over the whole sequence. A second BPNet run, while the project's
test suite shared the machine, gave 3.51 and 1.17 (ours 129.8, fast=F 37.0, fast=T 110.8 mut/s):
under that load the ratios are noise-bound. On the idle machine (load 0.6): 3.31x fast=False and
2.44x fast=True: the fast=True target stays missed, and by arithmetic it cannot be met over a
1000-bp sequence. A point mutation reaches 21 positions after the first convolution (kernel 21)
and 25, 33, 49, 81, 145, 273, 529 and all 1000 after the 8 dilated layers (kernel 3, dilation 2 to
256): receptive-field caching computes 2135 layer-positions of 64x64x3 multiply-adds where a full
pass computes 8000, plus 21 of the 1000 first-layer positions, so any exact cache does at most
3.9x less work than a full pass. tangermeme's fast=True already runs 1.36x its fast=False here
(122.9 / 90.6 mut/s), so 3x fast=True means 4.1x fast=False: beyond the bound unless a full pass
itself got cheaper. Ours reaches 3.31x fast=False, 85% of the bound. BPNet ran with 2
members to fit the shared machine; members are timed one after another by both tools, so the ratio
does not depend on their number.

Measured with the first command (window 20) on the project's idle 2-core machine (tangermeme 1.6.0,
torch 2.13.0+cpu; 258 s in all)::

    model    ours               mut/s  tm fast=F  ratio  tm fast=T  ratio  max|diff|
    basset   fast ISM          1849.3      298.9   6.19      193.4   9.56   4.15e-08
    basset   full passes        265.3      298.9   0.89      193.4   1.37   8.25e-08
    basset   full, optimize     273.2      298.9   0.91      193.4   1.41   1.01e-07
    bpnet    fast ISM           544.6      192.9   2.82      132.7   4.11   9.62e-08
    bpnet    full passes        113.3      192.9   0.59      132.7   0.85   1.92e-07
    bpnet    full, optimize     188.7      192.9   0.98      132.7   1.42   1.92e-07

    peak RSS 488.4 / 488.4 MiB (Basset, 4 / 8 sequences), 1082.2 / 1082.2 MiB (BPNet)

With ``--window 100 --n-seq 4 --skip-full`` (the tools timed in turns), on the shared 2-core
machine (load 2.1-2.3 for Basset, 0.4-1.8 for BPNet), the better of two runs::

    model    ours               mut/s  tm fast=F  ratio  tm fast=T  ratio  max|diff|
    basset   fast ISM          4442.8      345.4  12.86      263.7  16.85   4.21e-08
    bpnet    fast ISM           698.7      177.4   3.94      119.8   5.83   1.42e-07

The other Basset run (load 2-3.3) gave 2.30 and 2.96 (ours 371.4 mut/s): at this load the ratios
follow the moment's load, because our cached path's many small operations wait for the second
OpenMP thread when another job holds a core (the same 5-member Basset ISM alone, three runs per
process: at 1 thread 2017-2219 mut/s, at 2 threads 516-1297); the other BPNet run (load 2.2-2.9)
gave 3.47 and 6.80. The version before the last round of work (reference recomputed per batch,
transposed-convolution scatter) gave in the same minutes Basset 9.81 and 13.00 (ours 3361.9 mut/s)
and 10.29 and 12.89, BPNet 3.33 and 4.70 (at 1 thread alone it ran the Basset ISM at 1426-1698
mut/s). Targets: Basset-shaped >= 10x both, met; BPNet >= 5x both: fast=True met, fast=False not
(the bound argued above).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc
import warnings

import numpy as np

MODELS = {"basset": 600, "bpnet": 1000}
#: torch device of both tools (``--device``)
DEVICE = "cpu"


def build(name: str, seed: int):
    """One randomly initialised network, eval mode, NCL ACGT input."""
    import torch

    torch.manual_seed(seed)
    if name == "basset":
        nn = torch.nn
        net = nn.Sequential(
            nn.Conv1d(4, 300, 19),
            nn.BatchNorm1d(300),
            nn.ReLU(),
            nn.MaxPool1d(3),
            nn.Conv1d(300, 200, 11),
            nn.BatchNorm1d(200),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Conv1d(200, 200, 7),
            nn.BatchNorm1d(200),
            nn.ReLU(),
            nn.MaxPool1d(4),
            nn.Flatten(),
            nn.Linear(2000, 1000),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(1000, 1000),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(1000, 164),
            nn.Sigmoid(),
        )
        with torch.no_grad():
            for m in net:
                if isinstance(m, nn.BatchNorm1d):
                    m.running_mean.uniform_(-0.1, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
        return net.eval()
    from bpnetlite.bpnet import BPNet, CountWrapper

    # trimming=0: a 1000 bp input predicts a 1000 bp profile, and the counts head averages all of it
    return CountWrapper(
        BPNet(n_filters=64, n_layers=8, n_control_tracks=0, trimming=0, verbose=False)
    ).eval()


def setup(name: str, n_members: int, n_seq: int, seed: int):
    from deepmr_kipoi import sequences

    nets = [build(name, s) for s in range(n_members)]
    x = sequences.random_sequences(n_seq, MODELS[name], seed=seed)
    return nets, x


def window_of(name: str, width: int) -> tuple[int, int]:
    length = MODELS[name]
    width = min(width, length)
    start = (length - width) // 2
    return start, start + width


def run_ours(name, nets, x, window, batch_size, optimize=False, keep=None, fast_ism=True):
    """Paired mean/SE (N, W, 3, F) from our engine and the seconds taken; ``keep`` gets the effects."""
    from deepmr_kipoi import ism
    from deepmr_kipoi.predictive import DeepEnsemble, from_torch

    n_out = 164 if name == "basset" else 1
    names = [f"f{i}" for i in range(n_out)]
    model = DeepEnsemble(
        [
            from_torch(
                n,
                feature_names=names,
                layout="NCL",
                optimize=optimize,
                fast_ism=fast_ism,
                device=DEVICE,
            )
            for n in nets
        ]
    )
    if model.fast_ism != fast_ism:
        raise RuntimeError(
            f"{name}: the fast-ISM path is {'off' if fast_ism else 'on'} unexpectedly"
        )
    tic = time.perf_counter()
    eff = ism.saturation_effects(model, x, window=window, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - tic
    if keep is not None:
        keep.append(eff)
    return (eff.mean, eff.se), seconds


def run_tangermeme(nets, x, window, batch_size, fast: bool, notes: list | None = None):
    """Paired mean/SD over members from tangermeme's raw outputs, (N, W, 3, F), and the seconds taken."""
    import torch
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    from deepmr_kipoi.ism import ALT_BASES

    X = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)))
    start, end = window
    notes = notes if notes is not None else []
    tic = time.perf_counter()
    diffs = []
    ref = x[:, start:end].argmax(-1)
    alts = ALT_BASES[ref]  # (N, W, 3)
    for net in nets:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y0, y_hat = saturation_mutagenesis(
                net,
                X,
                start=start,
                end=end,
                batch_size=batch_size,
                raw_outputs=True,
                fast=fast,
                device=DEVICE,
                verbose=False,
            )
        notes += [str(w.message).split(". Pass")[0] for w in caught if "fast" in str(w.message)]
        y0, y_hat = y0.numpy(), y_hat.numpy()  # (N, F), (N, 4, W, F)
        n_idx = np.arange(len(x))[:, None, None]
        w_idx = np.arange(end - start)[None, :, None]
        diffs.append(y_hat[n_idx, alts, w_idx] - y0[:, None, None, :])
    d = np.stack(diffs)
    mean, sd = d.mean(0, dtype=np.float64), d.std(0, ddof=1, dtype=np.float64)
    return (mean, sd), time.perf_counter() - tic


def best_interleaved(repeats: int, calls: dict) -> dict:
    """The fastest run of several tools timed in turns (each tool once per round, ``repeats``
    rounds): on a shared machine the load changes within seconds, and timing every run of one
    tool before the next made the ratios follow the load. ``calls``: key -> (run, args, kwargs);
    returns key -> (best seconds, effects of that run)."""
    best = {}
    for _ in range(repeats):
        for key, (run, args, kwargs) in calls.items():
            effects, seconds = run(*args, **kwargs)
            if key not in best or seconds < best[key][0]:
                best[key] = (seconds, effects)
    return best


def mem_probe(args) -> None:
    """Subprocess entry: run ours once and print its time and peak memory as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    nets, x = setup(args.model, args.members, args.n_seq, args.seed)
    window = window_of(args.model, args.window)
    tracemalloc.start()
    kept = []
    _, seconds = run_ours(args.model, nets, x, window, args.batch_size, args.optimize, kept)
    eff = kept[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_bytes = eff.mean.nbytes + eff.se.nbytes + eff.reference.nbytes
    if args.save:
        np.savez(args.save, mean=eff.mean, se=eff.se)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "tracemalloc_peak": peak,
                "rss_peak": rss,
                "output_bytes": out_bytes,
            }
        )
    )


def probe(args, n_seq: int, save: str | None, optimize: bool = False) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--_probe",
        "--model",
        args.model,
        "--n-seq",
        str(n_seq),
        "--members",
        str(args.members),
        "--window",
        str(args.window),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    if save:
        cmd += ["--save", save]
    if optimize:
        cmd += ["--optimize"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", default="basset,bpnet", help="comma-separated: basset, bpnet")
    p.add_argument("--n-seq", type=int, default=8, help="reference sequences (default 8)")
    p.add_argument("--members", type=int, default=5, help="ensemble members (default 5)")
    p.add_argument(
        "--window",
        type=int,
        default=20,
        help="central window width mutated (default 20)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="mutants per forward pass, both tools",
    )
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda or auto (cuda when present), for both tools (default cpu)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per tool; the best counts")
    p.add_argument(
        "--no-force-fast",
        dest="force_fast",
        action="store_false",
        help="keep tangermeme's 30 s rule",
    )
    p.add_argument("--skip-fast", action="store_true", help="do not run tangermeme fast=True")
    p.add_argument(
        "--skip-full",
        action="store_true",
        help="do not time our full-pass rows (fast ISM against tangermeme only)",
    )
    p.add_argument("--_probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--optimize", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    global DEVICE
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    DEVICE = args.device
    if args._probe:
        mem_probe(args)
        return 0

    import tangermeme
    import tangermeme.saturation_mutagenesis as tsm
    import torch

    torch.set_num_threads(args.threads)
    if args.force_fast:
        tsm._FAST_MIN_SECONDS = 0.0
    print(
        f"tangermeme {tangermeme.__version__}, torch {torch.__version__}, {args.threads} threads; "
        f"{args.members} members x {args.n_seq} sequences, window {args.window}, batch {args.batch_size}"
    )
    rows = []
    for name in args.models.split(","):
        args.model = name
        nets, x = setup(name, args.members, args.n_seq, args.seed)
        window = window_of(name, args.window)
        n_pass = args.n_seq * 3 * (window[1] - window[0]) * args.members
        # Speed is timed in this process, best of `--repeats` runs for every tool, so each one gets
        # warm oneDNN kernels; peak memory is measured in fresh subprocesses (`probe`).
        full = probe(args, args.n_seq, None)
        half = probe(args, max(args.n_seq // 2, 1), None)
        common = (nets, x, window, args.batch_size)
        notes_fast: list[str] = []
        calls = {
            "ours": (run_ours, (name, *common), {}),
            "slow": (run_tangermeme, common, {"fast": False}),
        }
        if not args.skip_full:
            calls["full"] = (run_ours, (name, *common), {"fast_ism": False})
            calls["opt"] = (
                run_ours,
                (name, *common),
                {"optimize": True, "fast_ism": False},
            )
        if not args.skip_fast:
            calls["fast"] = (
                run_tangermeme,
                common,
                {"fast": True, "notes": notes_fast},
            )
        timed = best_interleaved(args.repeats, calls)
        t_ours, (mean, se) = timed["ours"]
        t_slow, (tm_mean, tm_sd) = timed["slow"]
        row = {
            "model": name,
            "ours": n_pass / t_ours,
            "slow": n_pass / t_slow,
            "diff_slow": max(np.abs(mean - tm_mean).max(), np.abs(se - tm_sd).max()),
            "rss_half": half["rss_peak"],
            "rss_full": full["rss_peak"],
            "tm_half": half["tracemalloc_peak"],
            "tm_full": full["tracemalloc_peak"],
            "out_half": half["output_bytes"],
            "out_full": full["output_bytes"],
        }
        if not args.skip_full:
            t_full, (full_mean, full_se) = timed["full"]
            t_opt, (opt_mean, opt_se) = timed["opt"]
            row.update(
                full=n_pass / t_full,
                diff_full=max(np.abs(full_mean - mean).max(), np.abs(full_se - se).max()),
                opt=n_pass / t_opt,
                diff_opt=max(np.abs(opt_mean - mean).max(), np.abs(opt_se - se).max()),
            )
        if not args.skip_fast:
            t_fast, (fm, fs) = timed["fast"]
            row.update(
                fast=n_pass / t_fast,
                diff_fast=max(np.abs(mean - fm).max(), np.abs(se - fs).max()),
            )
            for note in sorted(set(notes_fast)):
                print(f"  [{name}] tangermeme fast=True: {note}")
        rows.append(row)

    mib = 2**20
    print()
    print(
        f"{'model':8} {'ours':15} {'mut/s':>8} {'tm fast=F':>10} {'ratio':>6} {'tm fast=T':>10} {'ratio':>6} {'max|diff|':>10}"
    )
    for r in rows:
        shown = [("fast ISM", r["ours"], 0.0)]
        if "full" in r:
            shown += [
                ("full passes", r["full"], r["diff_full"]),
                ("full, optimize", r["opt"], r["diff_opt"]),
            ]
        for label, speed, extra in shown:
            fast = (
                f"{r['fast']:10.1f} {speed / r['fast']:6.2f}"
                if "fast" in r
                else f"{'-':>10} {'-':>6}"
            )
            diff = max(r["diff_slow"], r.get("diff_fast", 0.0)) + extra
            print(
                f"{r['model']:8} {label:15} {speed:8.1f} {r['slow']:10.1f} {speed / r['slow']:6.2f} {fast} {diff:10.2e}"
            )
    print()
    print(
        f"{'model':8} {'seqs':>5} {'peak RSS MiB':>13} {'tracemalloc peak MiB':>21} {'of which outputs MiB':>21}"
    )
    for r in rows:
        for n, rss, tm, out in (
            (max(args.n_seq // 2, 1), r["rss_half"], r["tm_half"], r["out_half"]),
            (args.n_seq, r["rss_full"], r["tm_full"], r["out_full"]),
        ):
            print(f"{r['model']:8} {n:5d} {rss / mib:13.1f} {tm / mib:21.1f} {out / mib:21.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
