"""The aggregate stage as it was before it ran by blocks of pairs: one sorted copy of the local
table and whole-run grids. The reference ``aggregate.global_effects`` is compared against."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from deepmr_kipoi import inference, verdict
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.aggregate import (
    META_COLUMNS,
    GlobalSettings,
    _pooled,
    _scales,
    _steiger,
    benjamini_hochberg,
    sample_grid,
)
from deepmr_kipoi.run.local_fit import INSTRUMENT_COUNTS
from deepmr_kipoi.run.local_samples import SampleEstimates
from tests._verdict_reference import reference_robust_disagreement, reference_verdicts


def reference_global_effects(
    local: pd.DataFrame,
    n_sequences: int,
    settings: GlobalSettings | None = None,
    *,
    samples: SampleEstimates | None = None,
    exposures=(),
    outcomes=(),
) -> pd.DataFrame:
    """``aggregate.global_effects`` as one sort of the whole local table (the path before
    blocks of pairs), for comparison."""
    from deepmr_kipoi import meta

    settings = settings or GlobalSettings()
    method, test, level = settings.method, settings.test, settings.level
    min_sequences, spread, min_effect = settings.min_sequences, settings.spread, settings.min_effect

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
    if samples is not None:
        theta = sample_grid(samples, first, exposures, outcomes)  # (S, N, P)
        theta = np.where(ok.T[None], theta, np.nan)  # only sequences whose local fit is usable
        head = inference.crossed_batched(theta, level=level)
        for f in (
            "estimate",
            "se",
            "df",
            "ci_low",
            "ci_high",
            "pvalue",
            "sequence_se",
            "sample_se",
        ):
            table[f] = getattr(head, f)
        n_samples, n_used = samples.n_samples, np.asarray(head.n_sequences)
    else:
        for f in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
            table[f] = getattr(mb, f)
        table["df"] = np.inf
        table["sequence_se"] = np.asarray(mb.se)
        table["sample_se"] = np.nan
        n_samples, n_used = 1, np.asarray(mb.k)
    table["qvalue"] = np.nan
    # a pair with fewer fitted sequences than a verdict needs is not tested at all
    tested = n_used >= int(min_sequences)
    for name in table["method"].unique():
        sel = table["method"].to_numpy() == name
        p = np.where(tested[sel], table.loc[sel, "pvalue"].to_numpy(float), np.nan)
        table.loc[sel, "qvalue"] = benjamini_hochberg(p)
    table["significant"] = table["qvalue"].to_numpy() < (1.0 - level)
    table["n_sequences"] = n_used.astype(np.int64)
    table["effect_scale"] = _scales(table, spread)
    for column in ("estimate", "ci_low", "ci_high"):
        table[f"std_{column}"] = table[column].to_numpy(float) * table["effect_scale"].to_numpy()
    _steiger(table, ordered, ok, grid)
    _pooled(table, ordered, grid, level)
    table["n_analysed"] = n_sequences
    if "heterogeneity_spread" in ordered:
        het = np.where(ok, grid("heterogeneity_pvalue"), np.nan)
        n_het = np.isfinite(het).sum(axis=1)
        # a fit disagrees when the test rejects and the slopes vary by a practical amount
        large = np.nan_to_num(grid("heterogeneity_spread"), nan=0.0) >= verdict.HETEROGENEITY_SPREAD
        rejects = ((np.nan_to_num(het, nan=1.0) < 1.0 - level) & large).sum(axis=1)
        table["heterogeneity_share"] = np.where(n_het > 0, rejects / np.maximum(n_het, 1), np.nan)
        table["heterogeneity_excess"] = verdict.heterogeneity_excess(
            table["heterogeneity_share"], n_het, 1.0 - level
        )
    else:  # a local table from before the heterogeneity test: nothing to judge it by
        table["heterogeneity_share"] = np.nan
        table["heterogeneity_excess"] = False
    table = pd.concat(
        [
            table,
            reference_verdicts(
                table, min_sequences=min_sequences, level=level, min_effect=min_effect
            ),
        ],
        axis=1,
    )
    table["robust_disagreement"] = reference_robust_disagreement(table)
    for column, f in zip(META_COLUMNS, ("estimate", "se", "ci_low", "ci_high", "pvalue")):
        table[column] = getattr(mb, f)
    for f in ("tau2", "i2", "q", "q_pvalue", "pi_low", "pi_high"):
        table[f] = getattr(mb, f)
    table["k"] = mb.k
    table["n_samples"] = n_samples
    table["converged"] = mb.converged
    table["meta_reason"] = mb.reason.astype(np.int64)

    n_inst = np.where(ok, grid("n_instruments"), np.nan)
    intercept_p = np.where(ok, grid("intercept_pvalue"), np.nan)
    for f in INSTRUMENT_COUNTS:
        if f in ordered:
            table[f] = grid(f, np.int64).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: median NaN is right
        table["median_instruments"] = np.nanmedian(n_inst, axis=1)
        table["egger_intercept_median"] = np.nanmedian(
            np.where(ok, grid("intercept"), np.nan), axis=1
        )
        n_int = np.isfinite(intercept_p).sum(axis=1)
        frac = (np.nan_to_num(intercept_p, nan=1.0) < 1.0 - level).sum(axis=1) / np.maximum(
            n_int, 1
        )
        table["egger_intercept_sig_frac"] = np.where(n_int > 0, frac, np.nan)
        table["i2_gx_median"] = np.nanmedian(np.where(ok, grid("i2_gx"), np.nan), axis=1)
    return table
