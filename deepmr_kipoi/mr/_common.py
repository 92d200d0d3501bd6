"""Shared pieces of the MR estimators: method names, reason codes, input checks and inference
(the conventions are tabulated in the ``deepmr_kipoi.mr`` package docstring)."""

from __future__ import annotations

import numpy as np
from scipy import special

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.mr.methods import METHOD_TABLE, methods_where

#: Method names, in table order (``mr.methods.METHOD_TABLE`` holds what else is known of each).
METHODS = tuple(METHOD_TABLE)

#: Fewest instruments each method accepts, as in TwoSampleMR (IVW needs 2 for its residual SE,
#: the other methods 3).
MIN_INSTRUMENTS = {name: spec.min_instruments for name, spec in METHOD_TABLE.items()}

#: Methods built on per-instrument ratio estimates ``b_y / b_x`` (need every ``b_x != 0``).
RATIO_METHODS = methods_where(ratio=True)

OK, TOO_FEW, NONFINITE, BAD_SE, ALL_BX_ZERO, BX_ZERO, COLLINEAR, NUMERICAL, SELF_PAIR = range(9)

#: Reason codes of the batched API: code -> plain words. Cells with a code other than 0 are NaN.
#: When several apply, the lowest non-zero code in the order 2, 3, 1, 4, 5, 6, 7 is reported
#: (``mr.all_pairs``: 8 before all others).
REASONS = {
    OK: "ok",
    TOO_FEW: "too few instruments for this method",
    NONFINITE: "non-finite b_x, b_y, se_bx or se_by for a selected instrument",
    BAD_SE: "zero or negative se_bx or se_by for a selected instrument",
    ALL_BX_ZERO: "all b_x are zero: the instruments carry no information on the exposure",
    BX_ZERO: "b_x is zero for a selected instrument: its ratio estimate is undefined",
    COLLINEAR: "all |b_x| are equal: the MR-Egger slope and intercept are not identifiable",
    NUMERICAL: "the estimate or its standard error came out non-finite",
    SELF_PAIR: "exposure and outcome are the same feature (mr.all_pairs excludes the pair)",
}

#: ``sum w (x - mean_w x)**2 <= COLLINEAR_RTOL * sum w x**2`` counts as collinear in MR-Egger.
COLLINEAR_RTOL = 1e-12


def check_method(method: str) -> str:
    if method not in METHODS:
        raise DeepMRInputError(f"unknown MR method {method!r}; choose one of {', '.join(METHODS)}.")
    return method


def check_n_boot(n_boot: int) -> int:
    if int(n_boot) != n_boot or n_boot < 2:
        raise DeepMRInputError(f"n_boot must be an integer >= 2, got {n_boot!r}; e.g. n_boot=1000.")
    return int(n_boot)


def check_weights(weights: str) -> str:
    if weights not in ("second", "first"):
        raise DeepMRInputError(
            f"weights must be 'second' (TwoSampleMR) or 'first' (MendelianRandomization), "
            f"got {weights!r}."
        )
    return weights


def check_phi(phi: float) -> float:
    phi = float(phi)
    if not (np.isfinite(phi) and phi > 0):
        raise DeepMRInputError(
            f"phi must be a positive bandwidth multiplier, got {phi}; e.g. phi=1."
        )
    return phi


def seed_sequence(seed, spawn_key: tuple[int, ...] = ()) -> np.random.SeedSequence:
    """``SeedSequence`` from an int or a ``SeedSequence``, extended by ``spawn_key``."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + spawn_key)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed), spawn_key=spawn_key)
    raise DeepMRInputError(
        f"seed must be a non-negative int or a numpy SeedSequence, got {seed!r}; e.g. seed=0."
    )


def _positions(bad: np.ndarray) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in idx[:5])
    return shown + (f", ... ({idx.size} in all)" if idx.size > 5 else "")


def as_instruments(bx, by, se_bx, se_by, method: str) -> tuple[np.ndarray, ...]:
    """Validate one instrument set for the scalar API; raise ``ValueError`` naming the problem.

    Returns the four arrays as contiguous float64 of shape (K,).
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (bx, by, se_bx, se_by)]
    shapes = [a.shape for a in arrays]
    if any(a.ndim != 1 for a in arrays) or len(set(shapes)) != 1:
        raise DeepMRInputError(
            f"bx, by, se_bx and se_by must be 1-d arrays of equal length, got shapes {shapes}; "
            "use mr.run_batched for arrays of many instrument sets."
        )
    for name, a in zip(("bx", "by", "se_bx", "se_by"), arrays):
        bad = ~np.isfinite(a)
        if bad.any():
            raise DeepMRInputError(
                f"{name} is NaN or infinite for instrument(s) {_positions(bad)}; "
                "drop those instruments first."
            )
    for name, a in zip(("se_bx", "se_by"), arrays[2:]):
        bad = a <= 0
        if bad.any():
            raise DeepMRInputError(
                f"{name} is zero or negative for instrument(s) {_positions(bad)}; "
                "standard errors must be positive."
            )
    n = arrays[0].size
    need = MIN_INSTRUMENTS[method]
    if n < need:
        raise DeepMRInputError(
            f"{method} needs at least {need} instruments, got {n}; "
            "select more instruments or use a method that needs fewer."
        )
    bx_ = arrays[0]
    if np.all(bx_ == 0):
        raise DeepMRInputError(
            "all b_x are zero: the instruments carry no information on the exposure."
        )
    if method in RATIO_METHODS and np.any(bx_ == 0):
        raise DeepMRInputError(
            f"b_x is zero for instrument(s) {_positions(bx_ == 0)}: their ratio estimates b_y/b_x "
            f"are undefined for {method}; drop those instruments."
        )
    return tuple(np.ascontiguousarray(a) for a in arrays)


def normal_inference(estimate, se, level: float):
    """Wald interval and two-sided p-value from the standard normal distribution."""
    estimate, se = np.asarray(estimate, dtype=np.float64), np.asarray(se, dtype=np.float64)
    crit = special.ndtri(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * special.ndtr(-np.abs(estimate / se))
    return estimate - crit * se, estimate + crit * se, p


def t_inference(estimate, se, df, level: float):
    """Interval and two-sided p-value from a t distribution with ``df`` degrees of freedom."""
    estimate, se = np.asarray(estimate, dtype=np.float64), np.asarray(se, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    # Batched cells share few distinct df: invert the t CDF once per distinct value.
    uniq, inverse = _distinct(df)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = np.where(uniq > 0, special.stdtrit(np.maximum(uniq, 1), 0.5 + level / 2), np.nan)
        crit = crit[inverse].reshape(df.shape)
        p = np.where(df > 0, 2 * special.stdtr(np.maximum(df, 1), -np.abs(estimate / se)), np.nan)
    return estimate - crit * se, estimate + crit * se, p


def _distinct(df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values to evaluate and each cell's index among them: the integers from the smallest to the
    largest df when every df is an integer in a short range (instrument counts; a table lookup
    instead of ``np.unique``'s sort of every cell), else the distinct values."""
    if df.size:
        lo, hi = df.min(), df.max()
        if np.isfinite(lo) and np.isfinite(hi) and hi - lo < 1 << 16 and (df == np.rint(df)).all():
            return np.arange(lo, hi + 1.0), (df - lo).astype(np.intp).ravel()
    uniq, inverse = np.unique(df, return_inverse=True)
    return uniq, inverse.ravel()


def chi2_sf(q, df):
    """Upper tail probability of the chi-square distribution (NaN for ``df <= 0``)."""
    df = np.asarray(df, dtype=np.float64)
    return np.where(df > 0, special.chdtrc(np.maximum(df, 1), q), np.nan)


def sign0(x: np.ndarray) -> np.ndarray:
    """Sign with ``sign0(0) = +1`` (TwoSampleMR's orientation rule for MR-Egger)."""
    return np.where(x < 0, -1.0, 1.0)


def r_mad(x: np.ndarray) -> float:
    """R's ``mad()``: ``1.4826 * median(|x - median(x)|)``."""
    x = np.asarray(x, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))
