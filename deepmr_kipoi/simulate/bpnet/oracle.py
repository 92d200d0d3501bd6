"""The noise-free truth of the BPNet experiment, on the network's output scale.

The counts heads are trained with squared error on ``log(1 + Y_s)``, ``Y_s ~ Poisson(lambda / 2)``
per strand, and the feature is the strand mean, so the best possible network outputs
``g(lambda) = E[log(1 + Y)]`` with ``Y ~ Poisson(lambda / 2)`` for every factor. The oracle is ``g``
of the generative function's expected reads (no confounders exist in this experiment).

True local effect of factor X on factor Y in a sequence: the least-squares slope through the
origin of the oracle's change in Y on its change in X over all 3 x W single-base mutants of X's
embedded motif instance, ``sum(dx dy) / sum(dx^2)`` (as :func:`simulate.oracle.true_local_effects`);
the true global effect is its mean over the analysed sequences.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from deepmr_kipoi.simulate.bpnet.data import TASKS, BPNetSimulator
from deepmr_kipoi.simulate.oracle import saturation_mutants, true_local_effects


def expected_log1p_poisson(mean) -> np.ndarray:
    """``E[log(1 + Y)]`` for ``Y ~ Poisson(mean)``, elementwise.

    Approximation: the Poisson sum is truncated to counts ``0 .. max(mean) + 12 sqrt(max(mean)) +
    40`` (omitted mass < 1e-15).

    Parameters
    ----------
    mean : array_like
        Poisson means (>= 0), any shape.

    Returns
    -------
    ndarray
        Same shape as ``mean``.
    """
    lam = np.asarray(mean, dtype=np.float64)
    flat = lam.reshape(-1)
    if flat.size == 0:
        return lam.copy()
    top = float(flat.max())
    k = np.arange(0, int(np.ceil(top + 12.0 * np.sqrt(top) + 40.0)) + 1, dtype=np.float64)
    weights = np.log1p(k)
    out = np.empty_like(flat)
    for lo in range(0, flat.size, 4096):
        chunk = flat[lo : lo + 4096, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            logpmf = k * np.log(chunk) - chunk - special.gammaln(k + 1.0)
        logpmf = np.where(chunk == 0.0, np.where(k == 0, 0.0, -np.inf), logpmf)
        out[lo : lo + 4096] = np.exp(logpmf) @ weights
    return out.reshape(lam.shape)


def oracle_features(simulator: BPNetSimulator, onehot: np.ndarray) -> np.ndarray:
    """Oracle log counts per factor, shape (N, 4) in :data:`TASKS` order.

    Parameters
    ----------
    simulator : BPNetSimulator
    onehot : ndarray, shape (N, L, 4)

    Returns
    -------
    ndarray, shape (N, 4)
    """
    return expected_log1p_poisson(simulator.expected_reads(onehot) / 2.0)


def oracle_effects(simulator: BPNetSimulator, onehot: np.ndarray) -> np.ndarray:
    """Oracle ISM effects of every single-base substitution, shape (N, L, 3, 4).

    Same layout as ``ism.saturation_effects(...).mean`` (alternative bases in ACGT order without the
    reference base).
    """
    x = np.asarray(onehot)
    n, length = x.shape[:2]
    out = np.empty((n, length, 3, len(TASKS)))
    for i in range(n):
        mutants, _ = saturation_mutants(x[i])
        ref = oracle_features(simulator, x[i : i + 1])
        out[i] = (oracle_features(simulator, mutants) - ref).reshape(length, 3, len(TASKS))
    return out


def true_pair_effects(simulator: BPNetSimulator, onehot: np.ndarray, motif_start: np.ndarray):
    """True local and global effect of every ordered factor pair.

    Parameters
    ----------
    simulator : BPNetSimulator
    onehot : ndarray, shape (N, L, 4)
    motif_start : ndarray of int, shape (N, 4)
        Start of each factor's embedded instance (-1: none; that sequence then has no local effect
        for pairs with that exposure).

    Returns
    -------
    local : dict of (str, str) -> ndarray, shape (N,)
    global_ : dict of (str, str) -> float
        Mean of the finite local effects.
    """
    eff = oracle_effects(simulator, onehot)
    local, global_ = {}, {}
    for i, x in enumerate(TASKS):
        width = simulator.motifs[x].length
        for j, y in enumerate(TASKS):
            if i == j:
                continue
            pair = eff[..., [i, j]]
            le = true_local_effects(pair, motif_start[:, i], width)
            local[(x, y)] = le
            global_[(x, y)] = float(np.nanmean(le)) if np.isfinite(le).any() else float("nan")
    return local, global_
