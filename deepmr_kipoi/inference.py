"""Global inference over sequences *and* model samples: the crossed random-effects model.

Every global effect rests on two sources of variation. The reference sequences are a sample of the
sequences one could have analysed, and the model's uncertainty samples (deep-ensemble members, or
MC-dropout masks) are a sample of the models training could have produced. A meta-analysis of the
local estimates over sequences sees only the first: every local estimate comes from the same model
and shares its error, so its interval is far too narrow. This module takes, for every model sample
``s`` and sequence ``i``, the local estimate ``theta[s, i]`` computed from that sample's own effects,
and fits the two-way crossed random-effects model without replication

    theta[s, i] = mu + u_i + m_s + e_si,
    u_i ~ (0, sigma_u^2)   sequence effect,
    m_s ~ (0, sigma_m^2)   model-sample effect,
    e_si ~ (0, sigma_e^2)  interaction,

by the classical analysis-of-variance (method-of-moments) estimators for a balanced design. With
``S`` samples and ``N`` sequences the estimate is the grand mean ``mu_hat = mean(theta)`` and

    MS_seq = S sum_i (theta_.i - mu_hat)^2 / (N - 1)       E = S sigma_u^2 + sigma_e^2
    MS_smp = N sum_s (theta_s. - mu_hat)^2 / (S - 1)       E = N sigma_m^2 + sigma_e^2
    MS_err = sum_si (theta_si - theta_.i - theta_s. + mu_hat)^2 / ((N - 1)(S - 1))   E = sigma_e^2

    Var(mu_hat) = sigma_u^2 / N + sigma_m^2 / S + sigma_e^2 / (N S)
                = (MS_seq + MS_smp - MS_err) / (N S).

Variance components estimated below zero are truncated at zero (``MS_seq`` or ``MS_smp`` replaced by
``MS_err`` in the sum), so the variance estimate is never below that of any one source. The interval
is ``mu_hat +- t_{df} se`` with the Satterthwaite (1946) degrees of freedom of the linear
combination of mean squares,
``df = (sum c_j MS_j)^2 / sum (c_j MS_j)^2 / df_j``; the p-value of ``mu = 0`` uses the same t.

Approximations, named: (1) the Satterthwaite df treat the combination of mean squares as a scaled
chi-square (exact only when one mean square dominates); they are capped at ``N - 1``, the df of the
between-sequence variation, because a truncated sequence component estimated from few sequences
would otherwise borrow the samples' df (conservative where the sample component dominates); (2) the mean squares are chi-square only for
normal components; the t interval is robust to moderate non-normality but not to a few extreme
sequences; a sample whose estimate is missing for most sequences of a pair (a dropout mask that
silences the exposure) is left out of that pair; with fewer than 5 samples and the sample component dominating, the Satterthwaite df
fall near 1-2 and the interval undercovers (simulated 95% intervals: 0.93 with 3 samples, 0.87 with
2; 0.95 with 5 or more); (3) only complete sequences enter (a sequence whose local estimate is missing for any
sample is dropped for that pair), which keeps the design balanced; (4) the estimand is the
unweighted mean over sequences of the local effects, averaged over the model's samples: the effect
the model *learned*, given its training data. A bias every sample shares (all members trained on the
same data, the same architecture) is invisible to any interval built from the samples.

With ``N = 1`` the sequence term is absent (``Var = MS_smp / S``, ``df = S - 1``); with ``S = 1`` the
sample term is absent (``Var = MS_seq / N``, ``df = N - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# scipy.special evaluates the same t and binomial functions scipy.stats does, without the
# second that importing scipy.stats adds to every command's start
from scipy import special

from deepmr_kipoi import validation
from deepmr_kipoi.errors import DeepMRInputError


@dataclass(frozen=True)
class CrossedResult:
    """Inference on the mean of a (samples x sequences) table of local estimates.

    All fields are floats for :func:`crossed` and arrays of the batch shape for
    :func:`crossed_batched`.

    Attributes
    ----------
    estimate : float
        Grand mean ``mu_hat`` over samples and sequences.
    se : float
        Its standard error ``sqrt(Var(mu_hat))``.
    df : float
        Satterthwaite degrees of freedom.
    ci_low, ci_high : float
        ``estimate -+ t_{df, (1 + level) / 2} * se``.
    pvalue : float
        Two-sided p-value of ``mu = 0`` from ``t_df``.
    sigma2_sequence, sigma2_sample, sigma2_residual : float
        Variance components (truncated at 0).
    sequence_se, sample_se : float
        The parts of ``se`` due to sequences (``sqrt(sigma2_sequence / N)``) and to model samples
        (``sqrt(sigma2_sample / S)``): which source dominates the uncertainty.
    n_sequences, n_samples : int
        Complete sequences and samples used.
    level : float
    """

    estimate: float | np.ndarray
    se: float | np.ndarray
    df: float | np.ndarray
    ci_low: float | np.ndarray
    ci_high: float | np.ndarray
    pvalue: float | np.ndarray
    sigma2_sequence: float | np.ndarray
    sigma2_sample: float | np.ndarray
    sigma2_residual: float | np.ndarray
    sequence_se: float | np.ndarray
    sample_se: float | np.ndarray
    n_sequences: int | np.ndarray
    n_samples: int | np.ndarray
    level: float


def crossed(theta, *, level: float = 0.95) -> CrossedResult:
    """Crossed random-effects inference on one table of per-sample local estimates.

    Parameters
    ----------
    theta : array_like, shape (S, N)
        Local estimate of every model sample ``s`` (row) and sequence ``i`` (column). Sequences with
        a non-finite value in any sample are dropped.
    level : float
        Confidence level of the interval.

    Returns
    -------
    CrossedResult
        Float fields; NaN estimate/SE when fewer than two values remain.
    """
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim != 2:
        raise DeepMRInputError(f"theta must have shape (S, N), got {theta.shape}")
    res = crossed_batched(theta[:, :, None], level=level)
    return CrossedResult(
        **{k: (v.item() if isinstance(v, np.ndarray) else v) for k, v in vars(res).items()}
    )


def crossed_batched(theta, *, level: float = 0.95) -> CrossedResult:
    """Crossed random-effects inference on many tables at once (array code, no cell loop).

    Parameters
    ----------
    theta : array_like, shape (S, N, ...)
        Local estimates: samples on axis 0, sequences on axis 1, any batch shape after (e.g.
        exposures x outcomes x methods). Per batch cell, samples with a non-finite value in more
        than half of the sequences that have a fit in some sample are left out, then sequences
        with a non-finite value in any kept sample (NaN marks a failed local fit).
    level : float
        Confidence level of the intervals.

    Returns
    -------
    CrossedResult
        Arrays of the batch shape ``theta.shape[2:]``. Cells with no complete sequence, or with a
        single value in all (S = N = 1), are NaN with ``n_sequences`` telling why.
    """
    level = validation.level(level)
    theta = np.asarray(theta, dtype=np.float64)
    if theta.ndim < 2:
        raise DeepMRInputError(f"theta must have shape (S, N, ...), got {theta.shape}")
    finite = np.isfinite(theta)
    # a sample without an estimate for most of the sequences that have a fit at all (e.g. a
    # dropout mask that silences the exposure) says nothing about the effect: it is left out of
    # the cell, then sequences missing any kept sample are dropped, so the design stays balanced.
    # The share is taken over fitted sequences only: a sequence without a local fit is missing in
    # every sample and must not push every sample out of the cell.
    fitted = finite.any(axis=0)  # (N, ...)
    kept = finite.sum(axis=1) > 0.5 * fitted.sum(axis=0)  # (S, ...)
    complete = (finite | ~kept[:, None]).all(axis=0) & kept.any(axis=0)  # (N, ...)
    n_samples = kept.sum(axis=0)  # (...)
    n_seq = complete.sum(axis=0)  # (...)
    w = (kept[:, None] & complete[None]).astype(np.float64)  # (S, N, ...)
    x = np.where(w > 0, theta, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        seq_mean = x.sum(axis=0) / n_samples  # (N, ...)
        sample_mean = x.sum(axis=1) / n_seq  # (S, ...)
        grand = seq_mean.sum(axis=0, where=complete) / n_seq  # (...)
        ss_seq = n_samples * np.where(complete, (seq_mean - grand) ** 2, 0.0).sum(axis=0)
        ss_smp = n_seq * np.where(kept, (sample_mean - grand) ** 2, 0.0).sum(axis=0)
        resid = (x - seq_mean[None] - sample_mean[:, None] + grand) * w
        ss_err = (resid**2).sum(axis=(0, 1))
    return _from_sums_of_squares(grand, ss_seq, ss_smp, ss_err, n_seq, n_samples, level)


def _from_sums_of_squares(grand, ss_seq, ss_smp, ss_err, n_seq, n_samples, level) -> CrossedResult:
    """Variance, Satterthwaite df, interval and p-value from the two-way ANOVA sums of squares."""
    with np.errstate(invalid="ignore", divide="ignore"):
        df_seq = n_seq - 1.0
        df_smp = n_samples - 1.0
        df_err = df_seq * df_smp
        ms_seq = ss_seq / df_seq
        ms_smp = ss_smp / df_smp
        ms_err = ss_err / df_err
        total = n_seq * n_samples
        # each source: (mean square, its df, sign in Var * N * S); absent sources contribute nothing
        has_seq = df_seq > 0
        has_smp = df_smp > 0
        both = has_seq & has_smp
        seq_term = np.where(has_seq, np.where(both, np.maximum(ms_seq, ms_err), ms_seq), 0.0)
        smp_term = np.where(has_smp, np.where(both, np.maximum(ms_smp, ms_err), ms_smp), 0.0)
        err_term = np.where(both, ms_err, 0.0)
        var_sum = seq_term + smp_term - err_term
        # Satterthwaite: a truncated component leaves MS_err in its place, which cancels the
        # -MS_err term, so only the mean squares that remain in the sum carry df.
        seq_kept = has_seq & (~both | (ms_seq > ms_err))
        smp_kept = has_smp & (~both | (ms_smp > ms_err))
        err_kept = both & seq_kept & smp_kept
        err_alone = both & ~seq_kept & ~smp_kept
        denom = (
            np.where(seq_kept, ms_seq**2 / df_seq, 0.0)
            + np.where(smp_kept, ms_smp**2 / np.maximum(df_smp, 1.0), 0.0)
            + np.where(err_kept | err_alone, ms_err**2 / df_err, 0.0)
        )
        # the mean is a statement about the population of sequences: however precise the samples
        # look, it cannot rest on more degrees of freedom than the N - 1 the between-sequence
        # variation was estimated from (with 2 sequences, a truncated sequence component would
        # otherwise leave the samples' S - 1 df and a far too confident interval)
        df = np.where(has_seq, np.minimum(var_sum**2 / denom, df_seq), var_sum**2 / denom)
        se = np.sqrt(var_sum / total)
        sigma2_seq = np.where(
            has_seq, np.maximum(ms_seq - np.where(both, ms_err, 0.0), 0.0) / n_samples, 0.0
        )
        sigma2_smp = np.where(
            has_smp, np.maximum(ms_smp - np.where(both, ms_err, 0.0), 0.0) / n_seq, 0.0
        )
        sigma2_err = np.where(both, ms_err, 0.0)
        bad = (total < 2) | ~np.isfinite(se) | (n_seq < 1) | (n_samples < 1)
        grand = np.where(n_seq >= 1, grand, np.nan)
        se = np.where(bad, np.nan, se)
        df = np.where(bad | (se == 0), np.where(se == 0, np.inf, np.nan), df)
        crit = special.stdtrit(df, 0.5 + level / 2)
        tstat = grand / se
        pvalue = np.where(
            se > 0, 2.0 * special.stdtr(df, -np.abs(tstat)), np.where(grand == 0, 1.0, 0.0)
        )
        pvalue = np.where(np.isfinite(se), pvalue, np.nan)
        return CrossedResult(
            estimate=grand,
            se=se,
            df=df,
            ci_low=grand - crit * se,
            ci_high=grand + crit * se,
            pvalue=pvalue,
            sigma2_sequence=np.where(bad, np.nan, sigma2_seq),
            sigma2_sample=np.where(bad, np.nan, sigma2_smp),
            sigma2_residual=np.where(bad, np.nan, sigma2_err),
            sequence_se=np.where(bad, np.nan, np.sqrt(sigma2_seq / np.maximum(n_seq, 1))),
            sample_se=np.where(bad, np.nan, np.sqrt(sigma2_smp / n_samples)),
            n_sequences=n_seq.astype(np.int64),
            n_samples=np.asarray(n_samples, dtype=np.int64),
            level=level,
        )


class CrossedAccumulator:
    """The crossed inference of many pairs, fed one sequence at a time (bounded memory).

    At the scale of a model with hundreds of outputs the table of per-sample local estimates
    (S samples x N sequences x P pairs) does not fit in memory; the ANOVA needs only running sums
    per pair: the total, the sum of squares, the sum of squared sequence totals, and each
    sample's total. A sequence enters a pair when all S samples have an estimate for it (the
    sample-dropping rule of :func:`crossed_batched` needs the whole table and is not applied
    here). Sums are taken about the first sequence's mean per pair, which keeps the
    differences of large sums accurate.

    Parameters
    ----------
    n_samples : int
        S.
    shape : tuple of int
        Batch shape of the pairs (e.g. ``(P,)`` or ``(E, O)``).
    """

    def __init__(self, n_samples: int, shape):
        self.n_samples = validation.positive_int(n_samples, "n_samples")
        shape = tuple(shape)
        self._n = np.zeros(shape, dtype=np.int64)
        self._shift = np.full(shape, np.nan)
        self._total = np.zeros(shape)
        self._squares = np.zeros(shape)
        self._sequence_squares = np.zeros(shape)
        self._sample_totals = np.zeros((self.n_samples, *shape))

    def add(self, theta) -> None:
        """Add one sequence's per-sample estimates.

        Parameters
        ----------
        theta : array_like, shape (S, *shape)
            NaN where a sample's local fit failed (the sequence then skips that pair).
        """
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_samples, *self._n.shape):
            raise DeepMRInputError(
                f"theta of one sequence must have shape {(self.n_samples, *self._n.shape)}, "
                f"got {theta.shape}"
            )
        ok = np.isfinite(theta).all(axis=0)
        first = ok & np.isnan(self._shift)
        self._shift[first] = theta.mean(axis=0)[first]
        d = np.where(ok, theta - np.nan_to_num(self._shift), 0.0)
        seq_total = d.sum(axis=0)
        self._n += ok
        self._total += seq_total
        self._squares += (d * d).sum(axis=0)
        self._sequence_squares += seq_total * seq_total
        self._sample_totals += d

    def result(self, level: float = 0.95) -> CrossedResult:
        """The crossed inference of every pair from the sequences added so far."""
        level = validation.level(level)
        n, s = self._n.astype(np.float64), float(self.n_samples)
        with np.errstate(invalid="ignore", divide="ignore"):
            correction = self._total**2 / (n * s)
            ss_seq = self._sequence_squares / s - correction
            ss_smp = (self._sample_totals**2).sum(axis=0) / n - correction
            ss_err = self._squares - correction - ss_seq - ss_smp
            grand = np.nan_to_num(self._shift) + self._total / (n * s)
        # rounding can leave a sum of squares a hair below 0
        ss_seq, ss_smp, ss_err = (np.maximum(x, 0.0) for x in (ss_seq, ss_smp, ss_err))
        grand = np.where(self._n > 0, grand, np.nan)
        n_samples = np.where(self._n > 0, self.n_samples, 0)
        return _from_sums_of_squares(grand, ss_seq, ss_smp, ss_err, self._n, n_samples, level)
