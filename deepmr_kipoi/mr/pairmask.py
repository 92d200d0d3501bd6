"""IVW and MR-Egger sums of every exposure x outcome pair under pair-dependent instruments, compiled.

A directionality rule (an instrument counts for ``x -> y`` only where it moves ``x`` clearly more
than ``y``, ``instruments.directional``) gives every (sequence, exposure, outcome) cell its own
instrument set ``P[x, y, k] = M[x, k] & pass(x, y, k)``. The sums IVW and MR-Egger need are then no
longer matrix products (the mask does not factorise), and forming ``P`` as an array costs
``N x E x O x K`` booleans and one memory pass per sum (at 919 features and 300 candidate
instruments, 250 million entries per sequence). :func:`pair_sums` computes the same sums exactly in
one compiled pass (numba): per (sequence, exposure) it gathers the exposure's selected instruments,
and per outcome it evaluates the rule instrument by instrument and accumulates every sum at once,
so the work is ``N x E x O x K_selected`` and the memory that of the results. The sequences x
exposures are shared between threads, one per core.

What it computes per cell, over the instruments of ``P`` (``w = 1 / se_y**2``):

* ``"main"``: the sufficient statistics of :func:`mr.batched.closed_form_stats` over the
  instruments whose four values are usable (finite, SEs > 0, the ``drop_invalid`` rule of
  ``mr.run_batched``): ``n, sxx, sxy, syy, sw, sx, sy, sv, svz, svzz``, and ``n_pass``, the
  instruments of ``P`` whatever their values;
* ``"heterogeneity"``: the first-order IVW slope ``theta`` over the instruments with finite
  effects, finite SEs and ``se_y > 0``, then Cochran's Q of the residuals ``b_y - theta b_x``
  against their paired variance ``se_y^2 + theta^2 se_x^2 - 2 theta cov_s(d_x, d_y)`` and the
  weighted slope spread (``run.local_checks.heterogeneity`` defines both);
* ``"samples"``: the IVW/Egger sums of every model sample's own effects ``d_s`` with the
  ensemble's SEs as weights: ``n, sxx, sxy, syy, sw, sx, sy`` per sample.

Sums are accumulated in float64 in instrument order; against a NumPy evaluation of the same sums
(matrix products or ``einsum`` over an explicit mask) they differ by rounding only.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

#: Rows of the ``"main"`` output, in order.
MAIN_SUMS = ("n", "sxx", "sxy", "syy", "sw", "sx", "sy", "sv", "svz", "svzz", "n_pass")
#: Rows of the ``"heterogeneity"`` output: slope, Q, slope spread, usable instruments.
HET_SUMS = ("theta", "q", "spread", "k")
#: Rows per model sample of the ``"samples"`` output.
SAMPLE_SUMS = ("n", "sxx", "sxy", "syy", "sw", "sx", "sy")


@dataclass(frozen=True, eq=False)
class Side:
    """One side (exposures or outcomes) of a block of cells, arrays over (n, F, K).

    Attributes
    ----------
    b, se : ndarray of float64, shape (n, F, K)
        Effects and (calibrated) SEs MR uses.
    t : ndarray of float64, shape (n, F, K)
        The directionality statistic ``|b_dir| / spread`` (any values when the rule is off).
    v : ndarray of float64, shape (n, F, K)
        ``(se_dir / spread)**2`` (the rule's variance, used when ``z > 0``).
    finite : ndarray of bool, shape (n, F, K)
        Whether the rule's effect is finite (a non-finite one never passes).
    usable : ndarray of bool, shape (n, F)
        Whether the feature's spread is finite and positive (otherwise the rule is not applied).
    samples : ndarray of float64, shape (S, n, F, K)
        Per-sample effects (S = 0: none).
    centred : ndarray of float64, shape (S, n, F, K)
        Per-sample effects minus their mean over samples, for the paired covariance (S = 0: the
        covariance term is 0).
    """

    b: np.ndarray
    se: np.ndarray
    t: np.ndarray
    v: np.ndarray
    finite: np.ndarray
    usable: np.ndarray
    samples: np.ndarray
    centred: np.ndarray


def side(b, se, direction=None, samples=None, centred=None) -> Side:
    """A :class:`Side` from effect arrays.

    Parameters
    ----------
    b, se : ndarray, shape (n, F, K)
        Effects and SEs MR uses.
    direction : (effects, se, spread), optional
        The directionality rule's effects and SEs, shape (n, F, K), and spread, shape (n, F).
    samples, centred : ndarray, shape (S, n, F, K), optional

    Returns
    -------
    Side
    """
    b = np.ascontiguousarray(b, dtype=np.float64)
    n, f, k = b.shape
    empty = np.zeros((0, n, f, k))
    if direction is None:
        zeros = np.zeros_like(b)
        t, v, finite, usable = zeros, zeros, np.ones(b.shape, bool), np.zeros((n, f), bool)
    else:
        eff, dse, spread = (np.asarray(a, dtype=np.float64) for a in direction)
        usable = np.isfinite(spread) & (spread > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.abs(eff) / spread[..., None]
            v = (dse / spread[..., None]) ** 2
        finite = np.isfinite(eff)
    return Side(
        b,
        np.ascontiguousarray(se, dtype=np.float64),
        np.ascontiguousarray(t),
        np.ascontiguousarray(v),
        np.ascontiguousarray(finite),
        np.ascontiguousarray(usable),
        empty if samples is None else np.ascontiguousarray(samples, dtype=np.float64),
        empty if centred is None else np.ascontiguousarray(centred, dtype=np.float64),
    )


def pair_sums(x: Side, y: Side, mask, *, direction: bool, z: float, tie: float, what) -> dict:
    """The sums of every (sequence, exposure, outcome) cell in one compiled pass.

    Parameters
    ----------
    x, y : Side
        Exposure side (n, E, K) and outcome side (n, O, K).
    mask : ndarray of bool, shape (n, E, K)
        Each exposure's instruments (before the directionality rule).
    direction : bool
        Apply the directionality rule (``instruments.directional``) per pair.
    z : float
        Its one-sided threshold (0: the plain comparison ``t_x >= t_y (1 - tie)``).
    tie : float
        Relative tolerance of the plain comparison.
    what : collection of {"main", "heterogeneity", "samples"}

    Returns
    -------
    dict of str to ndarray
        ``"main"``: (11, n, E, O) rows :data:`MAIN_SUMS`; ``"heterogeneity"``: (4, n, E, O) rows
        :data:`HET_SUMS` (``q`` and ``spread`` NaN unless ``k >= 2`` and ``theta`` is finite);
        ``"samples"``: (S, 7, n, E, O) rows :data:`SAMPLE_SUMS`. Only those asked for.
    """
    n, n_e, _ = x.b.shape
    n_o = y.b.shape[1]
    main = np.zeros((len(MAIN_SUMS) if "main" in what else 0, n, n_e, n_o))
    het = np.zeros((len(HET_SUMS) if "heterogeneity" in what else 0, n, n_e, n_o))
    n_s = x.samples.shape[0] if "samples" in what else 0
    samp = np.zeros((n_s, len(SAMPLE_SUMS), n, n_e, n_o))
    if n * n_e * n_o:
        kernel = _kernel()
        mask = np.ascontiguousarray(mask, dtype=np.bool_)
        settings = (bool(direction), float(z), float(tie))

        def job(ni, items):  # the sides packed one sequence at a time: memory of one sequence
            sides = _packed(x, ni, tie, n_s), _packed(y, ni, tie, n_s)
            kernel.pair_sums_kernel(*sides, mask[ni], settings, (main, het, samp), (ni, *items))

        _threaded(job, n, -(-n_e // kernel.X_BLOCK))
    out = {}
    if len(main):
        out["main"] = main
    if len(het):
        het[1:3][:, ~((het[3] >= 2) & np.isfinite(het[0]))] = np.nan
        out["heterogeneity"] = het
    if n_s:
        out["samples"] = samp
    return out


def _packed(sd: Side, ni: int, tie: float, n_s: int) -> tuple:
    """The kernel's layout of sequence ``ni`` of a side: values (F, ROWS, K) in the rows of
    ``_pairmask_kernel.ROWS``, per-sample and centred effects (F, S, K), usable spreads (F,)."""
    b, se = sd.b[ni], sd.se[ni]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        se2 = se * se
        rows = (b, se, sd.t[ni], sd.v[ni], sd.finite[ni], se2, 1.0 / se2, sd.t[ni] * (1.0 - tie))
    values = np.empty((b.shape[0], len(rows), b.shape[1]))
    for i, row in enumerate(rows):
        values[:, i] = row

    def per_feature(a):  # (S, n, F, K) -> (F, S, K) of sequence ni
        return np.ascontiguousarray(a[:, ni].transpose(1, 0, 2), dtype=np.float64)

    samples = per_feature(sd.samples if n_s else sd.samples[:0])
    return values, samples, per_feature(sd.centred), np.ascontiguousarray(sd.usable[ni])


def _threaded(job, n: int, n_items: int) -> None:
    """Run ``job(ni, (start, stop))`` over the work items of every sequence ``ni`` on one thread
    per core (the kernel releases the GIL; items write disjoint cells): whole sequences to each
    thread while there are enough of them, then the items of the last ones split between
    threads."""
    n_threads = max(1, len(os.sched_getaffinity(0)))
    if n_threads == 1:
        for ni in range(n):
            job(ni, (0, n_items))
        return
    whole = n - n % n_threads
    with ThreadPoolExecutor(n_threads) as pool:
        for first in range(0, whole, n_threads):
            jobs = [pool.submit(job, ni, (0, n_items)) for ni in range(first, first + n_threads)]
            for done in jobs:
                done.result()
        for ni in range(whole, n):
            bounds = np.linspace(0, n_items, min(n_threads, n_items) + 1).astype(int)
            jobs = [pool.submit(job, ni, (int(a), int(b))) for a, b in zip(bounds, bounds[1:])]
            for done in jobs:
                done.result()


def _kernel():
    """The compiled kernel module (numba is imported only when pair sums are first needed; it
    caches the machine code on disk, so only the first use on a machine compiles)."""
    from deepmr_kipoi.mr import _pairmask_kernel

    return _pairmask_kernel
