"""Stage 4, aggregate: global effects from the local ones, q-values, direction verdicts, warnings.

Headline inference. Every global effect rests on two sources of variation: the reference sequences
and the model's uncertainty samples (deep-ensemble members or MC-dropout masks). Every local
estimate of a run comes from the same model, so a meta-analysis over sequences alone treats as
independent what shares the model's error. The headline columns ``estimate, se, df, ci_low,
ci_high, pvalue`` come instead from the per-sample local estimates ``theta[s, i]``
(``local_samples.sample_estimates``) through the crossed random-effects model of
:mod:`deepmr_kipoi.inference` (sequence and sample effects, ANOVA estimators, Satterthwaite t
interval): the estimate is the mean over sequences and samples, the interval covers the effect the
model learned, averaged over sequences like those analysed. ``qvalue`` is the Benjamini-Hochberg
adjustment of ``pvalue`` per method over its pairs and ``significant`` is ``qvalue < 1 - level``.

The random-effects meta-analysis of the local estimates over sequences
(``meta.random_effects_batched``: REML/DL/PM, Wald or Knapp-Hartung) stays as the ``meta_*``
columns with its heterogeneity statistics (``tau2``, ``i2``, ``q``) and prediction interval
(``pi_low``, ``pi_high``): they describe how the local effects vary between sequences.

Per ordered pair one verdict, ``causal``, ``not causal`` or ``undetermined``, with its reason
(:mod:`deepmr_kipoi.verdict`: the rule and why), the direction of every unordered pair, the share of
sequences whose instruments disagree beyond the model's noise (``heterogeneity_share``), and a flag
where IVW and another estimator disagree beyond their intervals (``robust_disagreement``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from deepmr_kipoi import inference, verdict
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.local_fit import INSTRUMENT_COUNTS
from deepmr_kipoi.run.local_samples import SampleEstimates

#: Global-table columns of the random-effects meta-analysis over sequences (besides tau2, i2, q,
#: q_pvalue, pi_low, pi_high, k).
META_COLUMNS = ("meta_estimate", "meta_se", "meta_ci_low", "meta_ci_high", "meta_pvalue")


def sample_grid(samples: SampleEstimates, first: pd.DataFrame, exposures, outcomes) -> np.ndarray:
    """Per-sample local estimates on the global table's (pair, sequence) grid.

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
    ndarray, shape (S, N, P)
    """
    e_at = {name: i for i, name in enumerate(exposures)}
    o_at = {name: i for i, name in enumerate(outcomes)}
    m_at = {name: i for i, name in enumerate(samples.methods)}
    ei = np.array([e_at[str(x)] for x in first["exposure"]], dtype=np.int64)
    oi = np.array([o_at[str(x)] for x in first["outcome"]], dtype=np.int64)
    mi = np.array([m_at[str(x)] for x in first["method"]], dtype=np.int64)
    return samples.estimate[:, :, ei, oi, mi]


#: The Benjamini-Hochberg adjustment (kept here under its historical name).
benjamini_hochberg = verdict.benjamini_hochberg


def _scales(table: pd.DataFrame, spread) -> np.ndarray:
    """``sd_exposure / sd_outcome`` of every row (NaN where a spread is unknown or 0)."""
    if spread is None:
        return np.full(len(table), np.nan)
    spread = dict(spread)
    known = pd.Index([str(k) for k in spread])
    sd = np.append(np.asarray([float(v) for v in spread.values()], dtype=np.float64), np.nan)

    def of(column):  # looked up by hash, not row by row (a DeepSEA run has 1.7 million rows)
        at = known.get_indexer(table[column].to_numpy(dtype=object))
        return sd[np.where(at >= 0, at, len(sd) - 1)]

    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = of("exposure") / of("outcome")
    return np.where(np.isfinite(ratio) & (ratio > 0), ratio, np.nan)


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=1)`` of a (P, N) array, by one sort of the rows.

    Equal to NumPy's (the middle value, or the mean ``(a + b) / 2`` of the two middle values,
    of the finite-or-infinite entries; NaN for a row of NaN), without its per-row masked arrays
    (seconds for a million rows of a few values)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    ordered = np.sort(values, axis=1)  # NaN last
    k = (~np.isnan(values)).sum(axis=1)
    rows = np.arange(len(values))
    low = ordered[rows, np.maximum((k - 1) // 2, 0)]
    high = ordered[rows, np.maximum(k // 2, 0)]
    with np.errstate(invalid="ignore", over="ignore"):
        mid = np.where(k % 2 == 1, high, (low + high) / 2)
    return np.where(k > 0, mid, np.nan)


def _steiger(table: pd.DataFrame, ordered: pd.DataFrame, ok: np.ndarray, grid) -> None:
    """Pair-level instrument strength (``local_checks.steiger_sums``) over the fitted sequences."""
    if "r2_exposure" not in ordered:  # a local table from before the check
        for f in ("steiger_ratio", "other_ratio", "other_r2"):
            table[f] = np.nan
        table["other_feature"] = ""
        return
    # over the sequences with a local fit: those whose instruments the estimate rests on (a
    # sequence where the exposure's only instruments are another feature's sites has none)
    own_r2 = grid("r2_exposure")
    has = ok & np.isfinite(own_r2) & (own_r2 > 0)
    own = np.where(has, own_r2, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for column, f in (("steiger_ratio", "r2_outcome"), ("other_ratio", "r2_other")):
            value = np.where(has, grid(f), np.nan)
            total = np.nansum(value, axis=1)
            table[column] = np.where(
                np.isfinite(value).any(axis=1) & (own > 0), total / own, np.nan
            )
    # named: the other feature of the fitted sequence where the instruments move it most
    strongest = np.where(has, np.nan_to_num(grid("r2_other"), nan=-np.inf), -np.inf)
    best = np.argmax(strongest, axis=1)
    other = ordered["other_feature"].astype(object).to_numpy().reshape(ok.shape)
    named = other[np.arange(len(best)), best]
    found = np.isfinite(strongest.max(axis=1)) if strongest.size else np.zeros(len(best), bool)
    table["other_feature"] = [
        str(v) if f and isinstance(v, str) else "" for v, f in zip(named, found)
    ]
    table["other_r2"] = _other_r2(ordered, has, other, named, found, grid)


def _other_r2(ordered, has, other, named, found, grid) -> np.ndarray:
    """Collinearity of the exposure with the named other feature over the exposure's instruments.

    ``(sum C)^2 / (sum A_ee * sum A_ff)`` over the fitted sequences where that feature is the
    other one (``local_checks.steiger_sums``): the share of the exposure's standardized instrument
    effects that one fixed ratio to the other feature explains, pooled over sequences so that a
    ratio shared by chance in a sequence with few instruments averages out. NaN without one.
    """
    if "cross_other" not in ordered:  # a local table from before the measure
        return np.full(len(named), np.nan)
    same = has & (other == np.asarray(named, dtype=object)[:, None]) & found[:, None]
    cross = np.where(same, grid("cross_other"), 0.0).sum(axis=1)
    own = np.where(same, grid("r2_exposure"), 0.0).sum(axis=1)
    theirs = np.where(same, grid("r2_other"), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = cross**2 / (own * theirs)
    return np.where(same.any(axis=1) & (own > 0) & (theirs > 0), np.clip(r2, 0.0, 1.0), np.nan)


#: Columns of the pooled test over sequences (:func:`pooled_ivw`), in the global table.
POOLED_COLUMNS = verdict.POOLED_COLUMNS


def pooled_ivw(sxy: np.ndarray, sxx: np.ndarray, level: float = 0.95) -> dict:
    """IVW over every sequence's instruments pooled, with a cluster-robust SE over sequences.

    A pair whose instruments are too few per sequence for a local fit (fewer than
    ``min_instruments``) may still have some in many sequences. Pooling them estimates one
    common slope, ``theta = sum_s Sxy_s / sum_s Sxx_s`` (``Sxy_s = sum_i w bx by``, ``Sxx_s =
    sum_i w bx^2`` over sequence ``s``'s instruments, ``w = 1 / se_y^2``: the IVW estimate of all
    instruments together), and treats sequences as independent clusters: its variance is the
    sandwich ``n / (n - 1) * sum_s (Sxy_s - theta Sxx_s)^2 / (sum_s Sxx_s)^2`` over the ``n``
    sequences with instruments, with a t reference on ``n - 1`` degrees of freedom.

    Approximations: the delta-method (linearised) variance of a ratio of sums, valid as ``n``
    grows; instruments are taken as given (their selection on the same effects is ignored, as
    in the local fits); the residuals carry the model's noise and the variation of the slope
    between sequences, but not an error that all the model's samples share.

    Parameters
    ----------
    sxy, sxx : ndarray, shape (P, N)
        Per pair and sequence, the IVW sums over the pair's instruments (0 or NaN: none).
    level : float

    Returns
    -------
    dict of str to ndarray, shape (P,)
        :data:`POOLED_COLUMNS` without the prefix: ``estimate, se, df, ci_low, ci_high``
        (NaN with fewer than 2 sequences) and ``sequences`` (sequences with instruments).
    """
    has = np.isfinite(sxy) & np.isfinite(sxx) & (sxx > 0)
    a, b = np.where(has, sxy, 0.0), np.where(has, sxx, 0.0)
    n = has.sum(axis=1)
    total = b.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = a.sum(axis=1) / total
        resid = np.where(has, a - theta[:, None] * b, 0.0)
        var = n / (n - 1.0) * (resid**2).sum(axis=1) / total**2
        se = np.sqrt(var)
    usable = n >= 2
    df = np.where(usable, n - 1.0, np.nan)
    half = stats.t.ppf(0.5 + level / 2.0, np.where(usable, df, 1.0)) * se
    out = {
        "estimate": theta,
        "se": se,
        "df": df,
        "ci_low": theta - half,
        "ci_high": theta + half,
    }
    out = {k: np.where(usable, v, np.nan) for k, v in out.items()}
    out["sequences"] = n.astype(np.int64)
    return out


def _pooled(table: pd.DataFrame, ordered: pd.DataFrame, grid, level: float) -> None:
    """The pooled test over sequences of every pair of a block (:func:`pooled_ivw`), and its
    instrument strength ``pooled_steiger_ratio``: ``r2_outcome`` over ``r2_exposure`` summed over
    the same sequences (the pair-level Steiger ratio of these instruments, fitted or not)."""
    if "pooled_sxy" not in ordered:  # a local table from before the pooled sums
        for column in POOLED_COLUMNS:
            table[column] = np.nan
        table["pooled_sequences"] = 0
        return
    sxy, sxx = grid("pooled_sxy"), grid("pooled_sxx")
    for key, value in pooled_ivw(sxy, sxx, level).items():
        table[f"pooled_{key}"] = value
    has = np.isfinite(sxy) & np.isfinite(sxx) & (sxx > 0)
    own = np.where(has, np.nan_to_num(grid("r2_exposure")), 0.0).sum(axis=1)
    theirs = np.where(has, np.nan_to_num(grid("r2_outcome")), 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["pooled_steiger_ratio"] = np.where(own > 0, theirs / own, np.nan)


@dataclass(frozen=True)
class GlobalSettings:
    """How :func:`global_effects` infers, tests and decides.

    Attributes
    ----------
    method, test : str
        Passed to ``meta.random_effects_batched`` (the ``meta_*`` columns).
    level : float
        Confidence level of every interval; significance is ``qvalue < 1 - level``.
    min_sequences : int
        Sequences with a local fit a pair needs to be tested: fewer, and it enters no
        Benjamini-Hochberg adjustment and is never ``significant``.
    spread : mapping of str to float, optional
        Every feature's spread over the reference sequences (``instruments.feature_spread``), by
        name: the scale of the smallest effect of interest (``effect_scale = sd_exposure /
        sd_outcome``). Without it the margin is 0 (effects are judged against 0 alone).
    min_effect : float
        Smallest effect of interest, standardized (:mod:`deepmr_kipoi.verdict`).
    """

    method: str = "REML"
    test: str = "z"
    level: float = 0.95
    min_sequences: int = 5
    spread: Mapping[str, float] | None = None
    min_effect: float = verdict.MIN_EFFECT


def global_effects(
    local: pd.DataFrame,
    n_sequences: int,
    settings: GlobalSettings | None = None,
    *,
    samples: SampleEstimates | None = None,
    exposures: Sequence[str] = (),
    outcomes: Sequence[str] = (),
    on_progress: Callable[[float], None] | None = None,
) -> pd.DataFrame:
    """Global effect of every (exposure, outcome, method): headline inference and meta-analysis.

    Parameters
    ----------
    local : DataFrame
        The full local table: exactly ``n_sequences`` rows per (exposure, outcome, method).
    n_sequences : int
    settings : GlobalSettings, optional
        Meta-analysis, level, minimum sequences and the verdict's scale (default
        ``GlobalSettings()``).
    samples : SampleEstimates, optional
        Per-sample local estimates (S, N, E, O, M) over all sequences; without them the headline
        columns fall back to the meta-analysis (a model with one sample has nothing else).
    exposures, outcomes : sequence of str
        Names along the E and O axes of ``samples``.
    on_progress : callable, optional
        Called with the share of the work done: after each block of pairs, and after the verdict.

    Returns
    -------
    DataFrame
        One row per (exposure, outcome, method) with the headline columns ``estimate, se, df,
        ci_low, ci_high, pvalue, qvalue, significant`` (module docstring), ``sequence_se`` and
        ``sample_se`` (the parts of ``se`` due to sequences and to model samples), ``verdict``,
        ``verdict_reason``, ``direction`` and the verdict's statistics (``min_effect``,
        ``pvalue_min_effect``, ``pair_pvalue``, ``pair_qvalue``; :func:`deepmr_kipoi.verdict.verdicts`),
        ``effect_scale`` with the standardized headline ``std_estimate``, ``std_ci_low``,
        ``std_ci_high`` (times ``effect_scale``), the pair-level instrument strength
        ``steiger_ratio``, ``other_ratio`` and ``other_feature`` (sums of ``r2_outcome`` and
        ``r2_other`` over the sequences with a local fit, divided by that of ``r2_exposure``),
        ``other_r2`` (the collinearity of the exposure with ``other_feature`` over the
        instruments: :func:`_other_r2`), the pooled test over sequences (:data:`POOLED_COLUMNS`:
        :func:`pooled_ivw`, which needs no local fit),
        ``heterogeneity_share`` (share of fitted sequences whose local heterogeneity test rejects
        at ``1 - level`` with a slope spread of at least ``verdict.HETEROGENEITY_SPREAD``) and ``heterogeneity_excess``, ``robust_disagreement``, the meta-analysis columns (:data:`META_COLUMNS`, ``tau2``,
        ``i2``, ``q``, ``q_pvalue``, ``pi_low``, ``pi_high``, ``k``: sequences with a usable local
        fit, ``converged``, ``meta_reason``), ``n_sequences`` (sequences the headline used: those with a
        local fit in the kept samples), ``n_analysed``, ``n_samples`` and the instrument
        diagnostics (``median_instruments``, per-rule removals summed over sequences, Egger
        intercept and I^2_GX summaries). A local estimate enters when its MR reason is 0 ("ok")
        and its estimate and SE are finite with SE > 0.

    Notes
    -----
    Everything but the adjustments over pairs (q-values, the verdict, the disagreement flags) is
    computed block by block of :data:`PAIR_BLOCK_CELLS` (pair, sequence) cells, from the rows of
    each block only: memory beyond the local table is that of one block, not a sorted copy of
    the table and (samples x sequences x pairs) arrays of the whole run.
    """
    settings = settings or GlobalSettings()
    per_block = _Settings(
        settings.method,
        settings.test,
        settings.level,
        samples,
        tuple(exposures),
        tuple(outcomes),
        settings.spread,
    )
    table, tail = _pair_blocks(local, n_sequences, per_block, on_progress)
    table = _adjust_over_pairs(table, settings)
    if on_progress is not None:
        on_progress(0.2)
    return pd.concat([table, tail], axis=1)


def _adjust_over_pairs(table: pd.DataFrame, settings: GlobalSettings) -> pd.DataFrame:
    """What needs every pair of the global table: q-values, the verdicts and the disagreement
    flags."""
    _qvalues(table, settings.min_sequences, settings.level)
    decided = verdict.verdicts(
        table,
        min_sequences=settings.min_sequences,
        level=settings.level,
        min_effect=settings.min_effect,
    )
    table = pd.concat([table, decided], axis=1)
    table["robust_disagreement"] = verdict.robust_disagreement(table)
    return table


def _pair_blocks(local: pd.DataFrame, n_sequences: int, settings: _Settings, on_progress):
    """The per-pair columns of every block of pairs, joined: those before the adjustments over
    pairs and those after them (:func:`_block_effects`)."""
    n_pairs, rem = divmod(len(local), n_sequences)
    if rem:
        raise DeepMRInputError(
            f"local table has {len(local)} rows, not a multiple of {n_sequences} sequences"
        )
    order = _pair_order(local)
    block = max(1, PAIR_BLOCK_CELLS // max(1, n_sequences))
    heads, tails = [], []
    for start in range(0, n_pairs, block):
        stop = min(n_pairs, start + block)
        ordered = local.iloc[order[start * n_sequences : stop * n_sequences]]
        head, tail = _block_effects(ordered, n_sequences, settings)
        heads.append(head)
        tails.append(tail)
        if on_progress is not None:  # the blocks are most of the work, the verdict the rest
            on_progress(0.8 * (stop - start) / max(n_pairs, 1))
    table = pd.concat(heads, ignore_index=True) if len(heads) > 1 else heads[0]
    tail = pd.concat(tails, ignore_index=True) if len(tails) > 1 else tails[0]
    return table, tail


#: (pair, sequence) cells per block of :func:`global_effects` (bounds its working memory).
PAIR_BLOCK_CELLS = 1_000_000


@dataclass(frozen=True, eq=False)
class _Settings:
    """What every block of :func:`global_effects` needs besides its rows."""

    method: str
    test: str
    level: float
    samples: SampleEstimates | None
    exposures: tuple
    outcomes: tuple
    spread: object


def _pair_order(local: pd.DataFrame) -> np.ndarray:
    """The permutation of the local table's rows that sorts them by method, exposure, outcome and
    sequence (a stable sort on the columns' sort order: categories in their order, other values
    sorted), so that every (method, exposure, outcome) owns a run of consecutive rows."""

    def codes(column):
        values = local[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            return values.cat.codes.to_numpy()
        return pd.factorize(values.to_numpy(), sort=True)[0]

    keys = [local["sequence_index"].to_numpy()] + [
        codes(c) for c in ("outcome", "exposure", "method")
    ]
    return np.lexsort(keys)


def _block_effects(ordered: pd.DataFrame, n_sequences: int, settings: _Settings):
    """The per-pair columns of a block of pairs (rows sorted by pair, then sequence): the
    columns before the adjustments over pairs, and those after them."""
    from deepmr_kipoi import meta

    n_pairs = len(ordered) // n_sequences

    def grid(col, dtype=np.float64):
        return ordered[col].to_numpy(dtype=dtype).reshape(n_pairs, n_sequences)

    est, se = grid("estimate"), grid("se")
    reason = grid("reason", np.int64)
    ok = (reason == 0) & np.isfinite(est) & np.isfinite(se) & (se > 0)
    mb = meta.random_effects_batched(
        est, se, mask=ok, method=settings.method, test=settings.test, level=settings.level
    )
    first = ordered.iloc[::n_sequences]
    table = pd.DataFrame(
        {
            "exposure": first["exposure"].astype(str).to_numpy(),
            "outcome": first["outcome"].astype(str).to_numpy(),
            "method": first["method"].astype(str).to_numpy(),
        }
    )
    n_samples, n_used = _headline(table, mb, ok, first, settings)
    table["qvalue"] = np.nan
    table["significant"] = False
    table["n_sequences"] = n_used.astype(np.int64)
    table["effect_scale"] = _scales(table, settings.spread)
    for column in ("estimate", "ci_low", "ci_high"):
        table[f"std_{column}"] = table[column].to_numpy(float) * table["effect_scale"].to_numpy()
    _steiger(table, ordered, ok, grid)
    _pooled(table, ordered, grid, settings.level)
    table["n_analysed"] = n_sequences
    _heterogeneity_share(table, ordered, ok, grid, settings.level)
    tail = pd.DataFrame(index=table.index)
    for column, f in zip(META_COLUMNS, ("estimate", "se", "ci_low", "ci_high", "pvalue")):
        tail[column] = getattr(mb, f)
    for f in ("tau2", "i2", "q", "q_pvalue", "pi_low", "pi_high"):
        tail[f] = getattr(mb, f)
    tail["k"] = mb.k
    tail["n_samples"] = n_samples
    tail["converged"] = mb.converged
    tail["meta_reason"] = mb.reason.astype(np.int64)
    _instrument_summaries(tail, ordered, ok, grid, settings.level)
    return table, tail


def _headline(table: pd.DataFrame, mb, ok: np.ndarray, first: pd.DataFrame, settings: _Settings):
    """The headline columns of a block: the crossed inference over sequences and samples, or
    the meta-analysis without samples; returns the samples and the sequences used per pair."""
    if settings.samples is None:
        for f in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
            table[f] = getattr(mb, f)
        table["df"] = np.inf
        table["sequence_se"] = np.asarray(mb.se)
        table["sample_se"] = np.nan
        return 1, np.asarray(mb.k)
    theta = sample_grid(settings.samples, first, settings.exposures, settings.outcomes)
    theta = np.where(ok.T[None], theta, np.nan)  # only sequences whose local fit is usable
    head = inference.crossed_batched(theta, level=settings.level)
    for f in ("estimate", "se", "df", "ci_low", "ci_high", "pvalue", "sequence_se", "sample_se"):
        table[f] = getattr(head, f)
    return settings.samples.n_samples, np.asarray(head.n_sequences)


def _qvalues(table: pd.DataFrame, min_sequences: int, level: float) -> None:
    """Benjamini-Hochberg over the tested pairs of every method, and ``significant``."""
    # a pair with fewer fitted sequences than a verdict needs is not tested at all
    tested = table["n_sequences"].to_numpy() >= int(min_sequences)
    methods = table["method"].to_numpy()
    q = np.full(len(table), np.nan)
    p = table["pvalue"].to_numpy(float)
    for name in pd.unique(methods):
        sel = methods == name
        q[sel] = benjamini_hochberg(np.where(tested[sel], p[sel], np.nan))
    table["qvalue"] = q
    table["significant"] = q < (1.0 - level)


def _heterogeneity_share(table, ordered, ok, grid, level: float) -> None:
    """Share of fitted sequences whose instruments disagree beyond model noise, and its excess."""
    if "heterogeneity_spread" not in ordered:
        # a local table from before the heterogeneity test: nothing to judge it by
        table["heterogeneity_share"] = np.nan
        table["heterogeneity_excess"] = False
        return
    het = np.where(ok, grid("heterogeneity_pvalue"), np.nan)
    n_het = np.isfinite(het).sum(axis=1)
    # a fit disagrees when the test rejects and the slopes vary by a practical amount
    large = np.nan_to_num(grid("heterogeneity_spread"), nan=0.0) >= verdict.HETEROGENEITY_SPREAD
    rejects = ((np.nan_to_num(het, nan=1.0) < 1.0 - level) & large).sum(axis=1)
    table["heterogeneity_share"] = np.where(n_het > 0, rejects / np.maximum(n_het, 1), np.nan)
    table["heterogeneity_excess"] = verdict.heterogeneity_excess(
        table["heterogeneity_share"], n_het, 1.0 - level
    )


def _instrument_summaries(tail, ordered, ok, grid, level: float) -> None:
    """Instrument counts summed over sequences, medians of instruments, Egger intercepts, I^2_GX."""
    n_inst = np.where(ok, grid("n_instruments"), np.nan)
    intercept_p = np.where(ok, grid("intercept_pvalue"), np.nan)
    for f in INSTRUMENT_COUNTS:
        if f in ordered:
            tail[f] = grid(f, np.int64).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: median NaN is right
        tail["median_instruments"] = nanmedian_rows(n_inst)
        tail["egger_intercept_median"] = nanmedian_rows(np.where(ok, grid("intercept"), np.nan))
        n_int = np.isfinite(intercept_p).sum(axis=1)
        frac = (np.nan_to_num(intercept_p, nan=1.0) < 1.0 - level).sum(axis=1) / np.maximum(
            n_int, 1
        )
        tail["egger_intercept_sig_frac"] = np.where(n_int > 0, frac, np.nan)
        tail["i2_gx_median"] = nanmedian_rows(np.where(ok, grid("i2_gx"), np.nan))


def _pair_list(frame: pd.DataFrame, limit: int = 4) -> str:
    """``"A -> B, C -> D and 3 more"``: the ordered pairs of ``frame``, distinct, in order."""
    pairs = frame[["exposure", "outcome"]].drop_duplicates()  # distinct, in order of appearance
    first = pairs.iloc[:limit]
    shown = ", ".join(f"{e} -> {o}" for e, o in zip(first["exposure"], first["outcome"]))
    return shown + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")


#: Warnings about ordered pairs that a verdict reason stopped: (regular expression on the
#: reason, message with ``{n}`` such pairs, ``{total}`` pairs and the ``{pairs}`` named), in order.
_REASON_WARNINGS = (
    (
        r"^too few sequences",
        "{n} of {total} pairs have too few sequences with a local fit for a verdict ({pairs}): "
        "lower --z, widen the window, or add sequences.",
    ),
    (
        r"^instruments disagree",
        "For {n} pairs ({pairs}) the instruments of many sequences disagree beyond the model's "
        "noise: mutations act on the outcome other than through the exposure (pleiotropy) or "
        "through several pathways, so no causal claim is made.",
    ),
    (
        r"^the exposure's instruments (?!.*in a fixed ratio to the exposure)",
        "For {n} ordered pairs ({pairs}) the exposure's instruments move the outcome, or another "
        "feature, at least as much as the exposure (in units of each feature's spread): reverse "
        "causation or a shared driver, so no causal claim is made.",
    ),
    (
        r"in a fixed ratio to the exposure",
        "For {n} ordered pairs ({pairs}) the exposure's instruments move another feature in a "
        "fixed ratio to the exposure: they cannot tell whether the outcome follows the exposure "
        "or that feature, so no causal claim is made.",
    ),
    (
        r"reverse direction could not be tested",
        "For {n} ordered pairs ({pairs}) the reverse direction has too few sequences with a local "
        "fit to be tested, so no direction is claimed: add sequences or widen the window.",
    ),
    (
        r"^both directions",
        "{n} ordered pairs ({pairs}) pass every check in both directions: feedback, a shared "
        "driver, or instruments that move both features alike; MR on one model cannot tell "
        "which feature drives the other there.",
    ),
)


def _reason_warnings(pairs: pd.DataFrame) -> list[str]:
    """The warnings of :data:`_REASON_WARNINGS` whose reason some of ``pairs`` (one row per
    ordered pair) carry."""
    reasons = pairs["verdict_reason"].astype(str)
    out = []
    for pattern, message in _REASON_WARNINGS:
        hit = pairs[reasons.str.contains(pattern, regex=True).to_numpy()]
        if len(hit):
            out.append(message.format(n=len(hit), total=len(pairs), pairs=_pair_list(hit)))
    return out


def plain_warnings(
    global_table: pd.DataFrame, *, calibrated: bool, n_masked: int, level: float = 0.95
) -> list[str]:
    """Warnings about a run's results, in plain words, each naming the pairs it concerns.

    Parameters
    ----------
    global_table : DataFrame
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
    if not calibrated:
        out.append(
            "The model's uncertainty was not calibrated (no --calibration-table or --calibrator): "
            "instrument selection (|b/se| >= z), the heterogeneity test and every interval use "
            "the raw spread of the model's samples, which is usually too narrow; calibrated on "
            "held-out labels, intervals typically widen 1.5-2.5x and fewer pairs are claimed."
        )
    if n_masked:
        out.append(f"{n_masked} sequence positions hold N; they were not mutated.")
    # only the columns the warnings read: at 919 features a row filter of the whole table
    # copies its 56 columns (1.7 million rows, strings included)
    table = global_table[
        ["exposure", "outcome", "method", "verdict_reason", "i2_gx_median", "robust_disagreement"]
    ]
    out += _reason_warnings(table.drop_duplicates(["exposure", "outcome"]))
    egger = table[table["method"] == "egger"]
    weak = egger[egger["i2_gx_median"].to_numpy() < 90]
    if len(weak):
        out.append(
            f"For {len(weak)} pairs ({_pair_list(weak)}) the median I^2_GX is below 90%: MR-Egger "
            "slopes are diluted toward zero there (weak-instrument regression dilution)."
        )
    disagree = table[table["robust_disagreement"].astype(bool)]
    if len(disagree):
        out.append(
            f"For {len(disagree.drop_duplicates(['exposure', 'outcome']))} ordered pairs "
            f"({_pair_list(disagree)}) IVW and another estimator disagree beyond their intervals: "
            "invalid instruments (pleiotropy) may drive the IVW estimate."
        )
    return out
