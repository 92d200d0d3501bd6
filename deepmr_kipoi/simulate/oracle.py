"""The noise-free truth: the generative function without confounders, mutated like the model.

Scale. The model is trained on Anscombe-transformed Poisson counts ``A(y) = 2 sqrt(y + 3/8)`` with
squared error, so the best possible model predicts ``E[A(Y) | sequence]`` with
``Y ~ Poisson(c(sequence))``. The oracle therefore reports, per feature, the exact expectation
``g(c) = E[2 sqrt(Y + 3/8)]`` of the *unconfounded* Poisson mean ``c`` (``scale="expected"``,
default): in the regime without confounding it is exactly the function an ideal model learns, so
model and truth live on the same scale and every difference between estimate and truth is model
error or estimator behaviour. ``scale="anscombe"`` gives ``2 sqrt(c + 3/8)`` instead (the
paper's choice: the transform of the mean, which is biased by ``~ -1/(4 sqrt(c))``).

Random confounding. With ``averaged_random_confounder=True`` the oracle averages the
sequence-independent confounder ``b ~ Bernoulli(p)`` over its distribution instead of leaving it
out: ``(1 - p) g(c) + p g(c + tau)`` per feature. In the random-confounding regimes that is the
function an ideal model trained on the simulated labels learns (``b`` is drawn independently of
the sequence, so it opens no path from a mutation to either feature; it only moves both features
along the curved Anscombe scale). The truth the experiment is scored on leaves ``b`` out, as the
paper's does; this averaged truth explains how much of the difference comes from that choice.

Sequence confounding. With ``sequence_confounder=True`` the oracle keeps the confounder motif's
terms ``eta q_conf`` and ``nu q_conf`` in the exposure and outcome counts. They are a function of
the sequence, so an ideal model learns them: together with ``averaged_random_confounder`` this is
the *learnable truth* of every regime (the function the labels average to), against which an
interval about what the model learned should be scored. Leaving them out gives the paper's causal
truth, which no model trained on these labels can recover in the confounded regimes.

The bystander feature (``SimulationConfig.bystander_gamma > 0``) is the third oracle feature,
``bystander_bias + bystander_gamma q_conf``, untouched by either confounder.

Pleiotropy and reverse causation are causal structure, not confounding: the oracle of the
``pleiotropy`` regime keeps the shared motif's direct effects on every feature, and the oracle of
the ``reverse`` regime has the outcome feeding into the exposure (``generative.expected_counts``),
in both the learnable and the paper's truth.

True local effect of a sequence for an ordered pair X -> Y: the least-squares slope through the
origin of the oracle's Y change on its X change over all 3 x W mutants of the positions of X's
own embedded motif, ``sum(dx dy) / sum(dx^2)`` (:func:`true_local_effects`). True global effect:
the same ratio of sums pooled over the sequences compared, ``sum_i sum(dx dy) / sum_i sum(dx^2)``
(:func:`true_local_sums` gives the two sums per sequence). Pooling weights each sequence by how
much its mutations move X, so a sequence whose exposure barely moves cannot dominate (a mean of
per-sequence ratios reached 325 on a reverse pair). Both are ratios of mutation effects -- a secant
of Y against X over the exposure's mutational range -- not a derivative at the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

from deepmr_kipoi.simulate.generative import MotifSet, RoundParameters, SimulationConfig

SCALES = ("expected", "anscombe")
_GRID_STEP = 0.002  # spacing of the sqrt(c) grid of expected_anscombe


@lru_cache(maxsize=4)
def _expected_grid(t_max: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(0.0, t_max + 2 * _GRID_STEP, _GRID_STEP)
    lam = t**2
    out = np.empty_like(lam)
    for lo in range(0, lam.size, 256):
        chunk = lam[lo : lo + 256, None]
        lam_lo, lam_hi = float(chunk[0, 0]), float(chunk[-1, 0])
        k_lo = max(0, int(np.floor(lam_lo - 12.0 * np.sqrt(lam_lo) - 40.0)))
        k_hi = int(np.ceil(lam_hi + 12.0 * np.sqrt(lam_hi) + 40.0))
        k = np.arange(k_lo, k_hi + 1, dtype=np.float64)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            logpmf = k * np.log(chunk) - chunk - special.gammaln(k + 1.0)
        logpmf = np.where(chunk == 0.0, np.where(k == 0, 0.0, -np.inf), logpmf)
        out[lo : lo + 256] = (np.exp(logpmf) * 2.0 * np.sqrt(k + 0.375)).sum(axis=1)
    return t, out


def expected_anscombe(c) -> np.ndarray:
    """``E[2 sqrt(Y + 3/8)]`` for ``Y ~ Poisson(c)``.

    Approximation: the exact Poisson sums (truncated ``12 sqrt(c) + 40`` counts either side of
    the mean, omitted mass < 1e-15) are tabulated on a grid of ``sqrt(c)`` with step 0.002 and interpolated
    linearly; the interpolation error is below 1e-6.

    Parameters
    ----------
    c : array_like
        Poisson means (>= 0), any shape.

    Returns
    -------
    ndarray
        Same shape as ``c``.
    """
    c = np.asarray(c, dtype=np.float64)
    if c.size and (np.nanmin(c) < 0 or not np.all(np.isfinite(c))):
        raise ValueError("Poisson means must be finite and >= 0")
    t = np.sqrt(c)
    t_max = 8.0 * np.ceil(((t.max() if t.size else 1.0) + 1.0) / 8.0)  # few distinct cache keys
    grid_t, grid_v = _expected_grid(t_max)
    return np.interp(t, grid_t, grid_v)


@dataclass(frozen=True)
class Oracle:
    """Noise-free features of the unconfounded generative function.

    Attributes
    ----------
    params : RoundParameters
    config : SimulationConfig
    motif_set : MotifSet
    scale : {"expected", "anscombe"}
        See the module docstring.
    averaged_random_confounder : bool
        Average the random confounder ``b`` over its distribution instead of leaving it out (see
        the module docstring).
    sequence_confounder : bool
        Keep the confounder motif's terms in the exposure and outcome counts (see the module
        docstring); only meaningful in the sequence-confounded regimes.
    regime : str
        The causal structure: ``"pleiotropy"`` adds the shared motif's direct effects,
        ``"reverse"`` has the outcome feeding into the exposure; any other regime the planted
        exposure -> outcome effect (its confounders follow the two flags above, not the regime).
    """

    params: RoundParameters
    config: SimulationConfig
    motif_set: MotifSet
    scale: str = "expected"
    averaged_random_confounder: bool = False
    sequence_confounder: bool = False
    regime: str = "none"

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"unknown oracle scale {self.scale!r}; use one of {', '.join(SCALES)}")

    def counts(self, onehot: np.ndarray) -> np.ndarray:
        """Poisson means ``(c_exp, c_out[, c_byst])`` without the random confounder, shape (N, F)."""
        from deepmr_kipoi.simulate import generative as gen

        cfg = self.config
        q = {
            k: self.motif_set.occupancy(k, onehot)
            for k in ("exposure", "outcome", "confounder", "shared")
        }
        # the structure of the regime, with the sequence confounder's terms only where asked for
        structure = (
            self.regime
            if self.regime in ("pleiotropy", "reverse")
            else ("sequence" if self.sequence_confounder else "none")
        )
        c_exp, c_out = gen.expected_counts(
            q["exposure"],
            q["outcome"],
            q["confounder"],
            np.zeros_like(q["exposure"]),
            self.params,
            cfg,
            structure,
            q_shared=q["shared"],
        )
        columns = [c_exp, c_out]
        if cfg.bystander_gamma > 0:
            columns.append(gen.bystander_counts(q["confounder"], q["shared"], cfg, self.regime))
        return np.stack(columns, axis=1)

    def __call__(self, onehot: np.ndarray) -> np.ndarray:
        """Oracle features (exposure, outcome[, bystander]) on the model's scale.

        Parameters
        ----------
        onehot : ndarray, shape (N, L, 4)

        Returns
        -------
        ndarray, shape (N, F)
        """
        c = self.counts(onehot)

        def on_scale(counts):
            if self.scale == "expected":
                return expected_anscombe(counts)
            return 2.0 * np.sqrt(counts + 0.375)

        if not self.averaged_random_confounder:
            return on_scale(c)
        p = self.config.random_confounder_prob
        shift = np.zeros(c.shape[1])
        shift[:2] = self.config.tau1, self.config.tau2
        return (1.0 - p) * on_scale(c) + p * on_scale(c + shift)


def saturation_mutants(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All 3 L single-base mutants of one reference, in the layout of ``ism.saturation_effects``.

    Parameters
    ----------
    reference : ndarray, shape (L, 4)
        ACGT one-hot (no N positions).

    Returns
    -------
    mutants : ndarray, shape (L * 3, L, 4)
        Mutant ``l * 3 + j`` carries at position ``l`` the ``j``-th base of ACGT that differs
        from the reference base.
    alt : ndarray of uint8, shape (L, 3)
        The alternative base codes.
    """
    ref = np.asarray(reference)
    L = ref.shape[0]
    ref_code = ref.argmax(axis=1)
    if not np.all(ref.sum(axis=1) == 1):
        raise ValueError("reference must be one-hot at every position (no N bases)")
    alt = np.array([[b for b in range(4) if b != r] for r in ref_code], dtype=np.uint8)
    mutants = np.repeat(ref[None].astype(np.float32), 3 * L, axis=0)
    rows = np.arange(3 * L)
    pos = rows // 3
    mutants[rows, pos, :] = 0.0
    mutants[rows, pos, alt.reshape(-1)] = 1.0
    return mutants, alt


def oracle_effects(oracle: Oracle, onehot: np.ndarray) -> np.ndarray:
    """Oracle ISM effects ``f(mutant) - f(reference)`` of every single-base substitution.

    Parameters
    ----------
    oracle : Oracle
    onehot : ndarray, shape (N, L, 4)

    Returns
    -------
    ndarray, shape (N, L, 3, F)
        Same layout as ``ism.saturation_effects(...).mean`` (alternative bases in ACGT order
        without the reference base), features (exposure, outcome[, bystander]).
    """
    x = np.asarray(onehot)
    n, L = x.shape[:2]
    out = None
    for i in range(n):
        mutants, _ = saturation_mutants(x[i])
        ref = oracle(x[i : i + 1])
        diff = oracle(mutants) - ref
        if out is None:
            out = np.empty((n, L, 3, diff.shape[1]))
        out[i] = diff.reshape(L, 3, -1)
    return out if out is not None else np.empty((0, L, 3, len(oracle.config.features)))


def true_local_effects(
    effects: np.ndarray, motif_start: np.ndarray, motif_width: int
) -> np.ndarray:
    """Slope through the origin of outcome change on exposure change over the exposure motif.

    Parameters
    ----------
    effects : ndarray, shape (N, L, 3, 2)
        Oracle ISM effects (:func:`oracle_effects`).
    motif_start : ndarray of int, shape (N,)
        Start of the embedded exposure motif (-1: none -> NaN).
    motif_width : int

    Returns
    -------
    ndarray, shape (N,)
        ``sum(dx dy) / sum(dx^2)`` over the 3 x ``motif_width`` mutants; NaN where there is no
        motif or the exposure never changes.
    """
    sxy, sxx = true_local_sums(effects, motif_start, motif_width)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sxx > 0, sxy / sxx, np.nan)


def true_local_sums(
    effects: np.ndarray, motif_start: np.ndarray, motif_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``sum(dx dy)`` and ``sum(dx^2)`` over the mutants of each sequence's X motif.

    Parameters
    ----------
    effects : ndarray, shape (N, L, 3, 2)
        Oracle ISM effects (:func:`oracle_effects`), features (X, Y).
    motif_start : ndarray of int, shape (N,)
        Start of X's embedded motif (-1: none -> both sums 0).
    motif_width : int

    Returns
    -------
    sxy, sxx : ndarray, shape (N,)
        The pooled (global) truth of a set of sequences is ``sxy.sum() / sxx.sum()``.
    """
    eff = np.asarray(effects, dtype=np.float64)
    starts = np.asarray(motif_start)
    L = eff.shape[1]
    pos = np.arange(L)
    inside = (pos[None, :] >= starts[:, None]) & (pos[None, :] < starts[:, None] + motif_width)
    inside &= (starts >= 0)[:, None]
    dx = np.where(inside[:, :, None], eff[..., 0], 0.0)
    dy = np.where(inside[:, :, None], eff[..., 1], 0.0)
    return (dx * dy).sum(axis=(1, 2)), (dx * dx).sum(axis=(1, 2))
