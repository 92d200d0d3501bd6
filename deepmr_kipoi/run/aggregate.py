"""Stage 4, aggregate: global effects from the local ones, q-values, the model-aware interval, warnings.

The global effect of every (exposure, outcome, method) is the random-effects meta-analysis of its
local estimates over sequences (``meta.random_effects_batched``); Benjamini-Hochberg q-values are
taken per method over its pairs.

Model-aware interval. The meta-analysis CI treats the local estimates as independent, but they all
come from one trained model, whose error every sequence shares (the simulation experiment measures
how far that CI undercovers). For a deep ensemble of at least ``JACKKNIFE_MIN_MEMBERS`` members the
run also reports ``model_se = sqrt(se^2 + var_jk)`` and ``model_ci_low/high = estimate -/+ z
model_se``, where ``var_jk = (S - 1) / S * sum_s (theta_(-s) - mean theta_(-))^2`` is the
leave-one-member-out jackknife variance of the global estimate: every step (effects, instruments,
local MR, meta-analysis) is repeated without member s (``local.leave_one_out``). Approximation: the
jackknife sees how much the global effect moves with the ensemble's composition, a proxy for the
model's epistemic error; a bias every member shares stays invisible. Only for methods with analytic
SEs (``JACKKNIFE_METHODS``); NaN for MC dropout (its samples are draws of one model, not models) and
for the others.

A new global estimator built from per-sample local estimates (``local.SampleEstimates``) reads
them on the same (pair, sequence) grid through :func:`sample_grid` and adds its columns here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.config import JACKKNIFE_MIN_MEMBERS
from deepmr_kipoi.run.local import SampleEstimates

#: Global-table columns of the model-aware interval.
MODEL_INTERVAL_COLUMNS = ("jackknife_se", "model_se", "model_ci_low", "model_ci_high")


def sample_grid(samples: SampleEstimates, first: pd.DataFrame, exposures, outcomes) -> tuple:
    """Per-sample local estimates on the meta-analysis grid.

    Parameters
    ----------
    samples : SampleEstimates
        Arrays (S, N, E, O, M) over all N sequences in sequence order.
    first : DataFrame
        One row per global pair (columns exposure, outcome, method), in the grid's pair order.
    exposures, outcomes : sequence of str
        Names along the E and O axes of ``samples``.

    Returns
    -------
    estimate, se : ndarray, shape (S, P, N)
    """
    e_at = {name: i for i, name in enumerate(exposures)}
    o_at = {name: i for i, name in enumerate(outcomes)}
    m_at = {name: i for i, name in enumerate(samples.methods)}
    ei = np.array([e_at[str(x)] for x in first["exposure"]], dtype=np.int64)
    oi = np.array([o_at[str(x)] for x in first["outcome"]], dtype=np.int64)
    mi = np.array([m_at[str(x)] for x in first["method"]], dtype=np.int64)
    # (S, N, P) -> (S, P, N)
    est = samples.estimate[:, :, ei, oi, mi].transpose(0, 2, 1)
    se = samples.se[:, :, ei, oi, mi].transpose(0, 2, 1)
    return est, se


def _model_interval(mb, loo, method: str, test: str, level: float) -> dict:
    """Jackknife SE and model-aware interval per global effect (NaN without enough members).

    ``loo``: leave-one-member-out (estimate, se) grids of shape (S, P, N), or None.
    """
    from scipy import stats

    from deepmr_kipoi import meta

    n_pairs = len(mb.estimate)
    out = {name: np.full(n_pairs, np.nan) for name in MODEL_INTERVAL_COLUMNS}
    if loo is None or loo[0].shape[0] < JACKKNIFE_MIN_MEMBERS:
        return out
    thetas = []
    for est, se in zip(*loo):
        est, se = np.ascontiguousarray(est), np.ascontiguousarray(se)
        ok = np.isfinite(est) & np.isfinite(se) & (se > 0)
        thetas.append(meta.random_effects_batched(est, se, mask=ok, method=method, test=test,
                                                  level=level).estimate)  # fmt: skip
    theta = np.stack(thetas)
    n = theta.shape[0]
    with np.errstate(invalid="ignore"):
        var_jk = (n - 1) / n * ((theta - theta.mean(axis=0)) ** 2).sum(axis=0)
    z = stats.norm.ppf(0.5 + level / 2)
    out["jackknife_se"] = np.sqrt(var_jk)
    out["model_se"] = np.sqrt(np.asarray(mb.se) ** 2 + var_jk)
    out["model_ci_low"] = mb.estimate - z * out["model_se"]
    out["model_ci_high"] = mb.estimate + z * out["model_se"]
    return out


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); NaN stays NaN and is not counted.

    Parameters
    ----------
    p : ndarray, shape (P,)

    Returns
    -------
    ndarray, shape (P,)
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok])
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    vals = np.empty(m)
    vals[order] = np.minimum(ranked, 1.0)
    q[ok] = vals
    return q


def global_effects(
    local: pd.DataFrame,
    n_sequences: int,
    *,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    leave_one_out: SampleEstimates | None = None,
    exposures=(),
    outcomes=(),
) -> pd.DataFrame:
    """Random-effects meta-analysis of the local effects of every (exposure, outcome, method).

    Parameters
    ----------
    local : DataFrame
        The full local table: exactly ``n_sequences`` rows per (exposure, outcome, method).
    n_sequences : int
    method, test, level
        Passed to ``meta.random_effects_batched``.
    leave_one_out : SampleEstimates, optional
        Leave-one-member-out local estimates, arrays (S, N, E, O, M) over all sequences: with S >=
        ``JACKKNIFE_MIN_MEMBERS`` the model-aware interval is computed (module docstring), else its
        columns are NaN.
    exposures, outcomes : sequence of str
        Names along the E and O axes of ``leave_one_out``.

    Returns
    -------
    DataFrame
        One row per (exposure, outcome, method). A local estimate enters when its MR reason is 0
        ("ok") and its estimate and SE are finite with SE > 0.
    """
    from deepmr_kipoi import meta

    key = ["method", "exposure", "outcome"]
    ordered = local.sort_values([*key, "sequence_index"], kind="stable")
    n_pairs, rem = divmod(len(ordered), n_sequences)
    if rem:
        raise DeepMRInputError(
            f"local table has {len(ordered)} rows, not a multiple of {n_sequences} sequences"
        )

    def grid(col, dtype=np.float64):
        return ordered[col].to_numpy(dtype=dtype).reshape(n_pairs, n_sequences)

    est, se = grid("estimate"), grid("se")
    reason = grid("reason", np.int64)
    ok = (reason == 0) & np.isfinite(est) & np.isfinite(se) & (se > 0)
    mb = meta.random_effects_batched(est, se, mask=ok, method=method, test=test, level=level)
    first = ordered.iloc[::n_sequences]
    table = pd.DataFrame(
        {
            "exposure": first["exposure"].astype(str).to_numpy(),
            "outcome": first["outcome"].astype(str).to_numpy(),
            "method": first["method"].astype(str).to_numpy(),
        }
    )
    for f in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
        table[f] = getattr(mb, f)
    table["qvalue"] = np.nan
    for name in table["method"].unique():
        sel = table["method"].to_numpy() == name
        table.loc[sel, "qvalue"] = benjamini_hochberg(table.loc[sel, "pvalue"].to_numpy())
    table["significant"] = table["qvalue"].to_numpy() < (1.0 - level)
    for f in ("tau2", "i2", "q", "q_pvalue", "pi_low", "pi_high"):
        table[f] = getattr(mb, f)
    table["k"] = mb.k
    loo = None
    if leave_one_out is not None:
        loo = sample_grid(leave_one_out, first, exposures, outcomes)
    for name, values in _model_interval(mb, loo, method, test, level).items():
        table[name] = values
    table["n_sequences"] = n_sequences
    table["converged"] = mb.converged
    table["meta_reason"] = mb.reason.astype(np.int64)

    n_inst = np.where(ok, grid("n_instruments"), np.nan)
    intercept_p = np.where(ok, grid("intercept_pvalue"), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: median NaN is right
        table["median_instruments"] = np.nanmedian(n_inst, axis=1)
        table["egger_intercept_median"] = np.nanmedian(np.where(ok, grid("intercept"), np.nan), axis=1)
        n_int = np.isfinite(intercept_p).sum(axis=1)
        frac = (np.nan_to_num(intercept_p, nan=1.0) < 1.0 - level).sum(axis=1) / np.maximum(n_int, 1)
        table["egger_intercept_sig_frac"] = np.where(n_int > 0, frac, np.nan)
        table["i2_gx_median"] = np.nanmedian(np.where(ok, grid("i2_gx"), np.nan), axis=1)
    return table


def plain_warnings(
    glob: pd.DataFrame, *, calibrated: bool, n_masked: int, level: float = 0.95
) -> list[str]:
    """Warnings about a run's results, in plain words, for the report and the log.

    Parameters
    ----------
    glob : DataFrame
        Global effects (``global_effects``).
    calibrated : bool
        Whether effect SEs were calibrated.
    n_masked : int
        Number of sequence positions holding N (never mutated).
    level : float

    Returns
    -------
    list of str
    """
    out = []
    alpha = 1.0 - level
    if not calibrated:
        out.append(
            "The model's uncertainty was not calibrated (no --calibration-table or --calibrator): "
            "ensemble and MC-dropout spreads are often too narrow, which makes p-values too small."
        )
    if n_masked:
        out.append(f"{n_masked} sequence positions hold N; they were not mutated.")
    few = glob["k"] < 3
    if few.any():
        out.append(
            f"{int(few.sum())} of {len(glob)} global effects rest on fewer than 3 sequences with "
            "enough instruments; treat them as anecdotes (lower --z, widen the window, or add "
            "sequences)."
        )
    sig = glob["significant"].fillna(False).to_numpy(dtype=bool)
    high_het = sig & (glob["i2"].to_numpy() > 75)
    if high_het.any():
        out.append(
            f"{int(high_het.sum())} significant global effects vary strongly between sequences "
            "(I^2 > 75%): the average hides sequence-specific effects; see the forest plots."
        )
    egger = glob[glob["method"] == "egger"]
    if len(egger):
        weak = egger["i2_gx_median"].to_numpy() < 90
        if np.any(weak):
            out.append(
                f"For {int(np.sum(weak))} pairs the median I^2_GX is below 90%: Egger slopes are "
                "diluted toward zero there (weak-instrument regression dilution)."
            )
        pleio = egger["egger_intercept_sig_frac"].to_numpy() > 2 * alpha
        if np.any(pleio):
            out.append(
                f"For {int(np.sum(pleio))} pairs the Egger intercept differs from zero in more "
                f"sequences than the {alpha:.0%} expected by chance: mutations act on the outcome "
                "other than through the exposure (pleiotropy), which biases IVW."
            )
    methods = glob["method"].unique()
    if "ivw" in methods and "egger" in methods:
        j = glob[glob["method"] == "ivw"].merge(
            glob[glob["method"] == "egger"], on=["exposure", "outcome"], suffixes=("_ivw", "_egger")
        )
        flip = j["significant_ivw"].fillna(False).astype(bool) & (
            np.sign(j["estimate_ivw"]) != np.sign(j["estimate_egger"])
        )
        if flip.any():
            out.append(
                f"IVW and Egger disagree in sign for {int(flip.sum())} pairs that IVW calls "
                "significant; do not trust their direction without further checks."
            )
    ivw = glob[glob["method"] == glob["method"].iloc[0]] if len(glob) else glob
    sig_pairs = {
        (e, o) for e, o, s in zip(ivw["exposure"], ivw["outcome"], ivw["significant"]) if s
    }
    both = {tuple(sorted(p)) for p in sig_pairs if (p[1], p[0]) in sig_pairs}
    if both:
        out.append(
            f"{len(both)} feature pairs are significant in both directions: MR on one model cannot "
            "tell which feature drives the other from these data alone."
        )
    return out
