"""Scoring the simulation: truths of every ordered feature pair, pair roles, and the summary table.

Truths. For an ordered pair X -> Y the true local effect of a sequence is the oracle's slope of Y's
change on X's change over the mutants of X's own embedded motif (``oracle.true_local_effects``) and
the true global effect is the same ratio of sums pooled over the sequences the estimate used
(``oracle.true_local_sums``): a ratio of mutation effects, not a derivative. Two truths are kept:

* ``learnable`` (the one the intervals are scored on): the oracle of the function the regime's
  labels average to -- the sequence confounder's terms kept (they are a function of the sequence,
  so a model learns them) and the random confounder averaged over its distribution. It is what an
  ideal model trained on these labels learns, so it is what an interval about the model's learned
  effect can cover;
* ``paper``: the unconfounded, b-free oracle of the paper, which no model trained on confounded
  labels can recover.

Roles. ``planted`` (the pair with the planted effect: exposure -> outcome, or outcome -> exposure
in the ``reverse`` regime, ``generative.planted_pair``), ``reverse`` (the planted pair reversed),
``pleiotropic`` (every pair with the bystander in the ``pleiotropy`` regime: no causal link, but
the shared motif moves both features), ``confounded`` (bystander -> exposure/outcome in the
sequence-confounded regimes, where the bystander's motif is the confounder motif: its learnable
truth is not zero) and ``unrelated`` (every other pair with the bystander). Null pairs
(``NULL_ROLES``) are the reverse, pleiotropic and unrelated ones: no causal link by construction.
Their oracle truth is near zero but not exactly zero where a mutation of one motif makes or breaks
a chance match of another (occupancy is summed over every window of the sequence).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from deepmr_kipoi.simulate import generative as gen

#: A planted effect whose learnable truth is below this size counts as "near 0" for power.
NEAR_ZERO = 0.1
#: Roles of the ordered pairs.
ROLES = ("planted", "reverse", "unrelated", "pleiotropic", "confounded")
#: Roles whose causal effect is zero by construction.
NULL_ROLES = ("reverse", "unrelated", "pleiotropic")
MOTIF_OF = {"exposure": "exposure", "outcome": "outcome", "bystander": "confounder"}


def pair_role(exposure: str, outcome: str, regime: str) -> str:
    """Role of the ordered pair ``exposure -> outcome`` (features of the simulation) in a regime."""
    planted = gen.planted_pair(regime)
    if (exposure, outcome) == planted:
        return "planted"
    if (outcome, exposure) == planted:
        return "reverse"
    if regime == "pleiotropy":
        return "pleiotropic"
    if exposure == "bystander" and gen.regime_flags(regime)[0]:
        return "confounded"
    return "unrelated"


def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (NaN for n = 0)."""
    if n == 0:
        return np.nan, np.nan
    z = special.ndtri(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # clipped: rounding can put an end a hair outside [0, 1] at 0 or n successes
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def _share(flags) -> tuple[float, float, float, int]:
    flags = np.asarray(flags, dtype=bool)
    lo, hi = wilson(int(flags.sum()), len(flags))
    return (float(flags.mean()) if len(flags) else np.nan), lo, hi, int(len(flags))


def _corr(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return np.nan
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def summarize(rounds):
    """Evaluation per (regime, method) over rounds.

    Parameters
    ----------
    rounds : pandas.DataFrame
        One row per (round, regime, method, exposure, outcome) with ``role``, ``estimate``,
        ``ci_low``, ``ci_high``, ``significant``, ``meta_ci_low``, ``meta_ci_high``, ``truth``
        (learnable), ``truth_paper`` and ``high`` (the round's effect component).

    Returns
    -------
    pandas.DataFrame
        Per (regime, method): ``rounds``; for the planted pair ``pearson_r``, ``r_within_high``,
        ``r_within_low`` (correlation inside each effect component), ``bias``, ``mae``,
        ``coverage`` with its Wilson 95% interval (``coverage_low``, ``coverage_high``),
        ``meta_coverage`` (the meta-analysis CI), ``power`` (significant with the right sign, among
        rounds whose learnable truth is at least ``NEAR_ZERO``) with its interval, and
        ``paper_coverage`` (against the paper's truth); for the null pairs (``NULL_ROLES``)
        ``null_pair_rounds``, ``null_flagged`` (share flagged significant, every null pair-round
        in the denominator) with its interval, ``null_flagged_estimable`` (the same among those
        with an estimate, ``null_estimable_rounds``), ``null_coverage``; for confounded pairs
        ``confounded_coverage``.
    """
    import pandas as pd

    rows = []
    for (regime, method), g in rounds.groupby(["regime", "method"], sort=False):
        p = g[(g["role"] == "planted") & np.isfinite(g["estimate"]) & np.isfinite(g["truth"])]
        conf = g[g["role"] == "confounded"]
        conf_inside = (conf["ci_low"] <= conf["truth"]) & (conf["truth"] <= conf["ci_high"])
        rows.append(
            {
                "regime": regime,
                "method": method,
                **_planted_scores(p),
                **_null_scores(g[g["role"].isin(NULL_ROLES)]),
                "confounded_coverage": float(conf_inside.mean()) if len(conf) else np.nan,
                "median_df": float(np.nanmedian(p["df"])) if len(p) and "df" in p else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _planted_scores(p) -> dict:
    """:func:`summarize`'s columns of the planted pair's rounds ``p`` (those with an estimate and
    a truth): correlation, bias, coverage and power."""
    t, e = p["truth"].to_numpy(float), p["estimate"].to_numpy(float)
    inside = (p["ci_low"] <= p["truth"]) & (p["truth"] <= p["ci_high"])
    cov, cov_lo, cov_hi, n = _share(inside)
    strong = np.abs(t) >= NEAR_ZERO
    hit = p["significant"].to_numpy(bool) & (np.sign(e) == np.sign(t))
    power, pw_lo, pw_hi, n_strong = _share(hit[strong])
    high = p["high"].to_numpy(bool)
    meta_inside = (p["meta_ci_low"] <= p["truth"]) & (p["truth"] <= p["meta_ci_high"])
    paper_inside = (p["ci_low"] <= p["truth_paper"]) & (p["truth_paper"] <= p["ci_high"])
    return {
        "rounds": n,
        "pearson_r": _corr(e, t),
        "r_within_high": _corr(e[high], t[high]),
        "r_within_low": _corr(e[~high], t[~high]),
        "bias": float(np.mean(e - t)) if n else np.nan,
        "mae": float(np.mean(np.abs(e - t))) if n else np.nan,
        "coverage": cov,
        "coverage_low": cov_lo,
        "coverage_high": cov_hi,
        "meta_coverage": float(meta_inside.mean()) if n else np.nan,
        "paper_coverage": float(paper_inside.mean()) if n else np.nan,
        "power": power,
        "power_low": pw_lo,
        "power_high": pw_hi,
        "power_rounds": n_strong,
    }


def _null_scores(nulls) -> dict:
    """:func:`summarize`'s columns of the null pairs' rounds: how often they are flagged
    significant (among all, and among those with an estimate) and their coverage."""
    flagged, fl_lo, fl_hi, n_null = _share(nulls["significant"].fillna(False).to_numpy(bool))
    fitted = nulls[np.isfinite(nulls["estimate"].to_numpy(float))]
    fl_est, fl_est_lo, fl_est_hi, n_est = _share(fitted["significant"].astype(bool).to_numpy())
    null_inside = (nulls["ci_low"] <= nulls["truth"]) & (nulls["truth"] <= nulls["ci_high"])
    return {
        "null_pair_rounds": n_null,
        "null_flagged": flagged,
        "null_flagged_low": fl_lo,
        "null_flagged_high": fl_hi,
        "null_estimable_rounds": n_est,
        "null_flagged_estimable": fl_est,
        "null_flagged_estimable_low": fl_est_lo,
        "null_flagged_estimable_high": fl_est_hi,
        "null_coverage": float(null_inside.mean()) if len(nulls) else np.nan,
    }


#: Verdict-based columns of :func:`summarize_verdicts` (the issue's targets).
VERDICT_COLUMNS = (
    "null_causal",
    "null_causal_estimable",
    "planted_causal",
    "direction_right",
    "confounded_causal",
)


def _pair_rows(rounds, method: str = "ivw"):
    """One row per (round, regime, ordered pair): the verdict is the same on every method row of
    a pair; ``method``'s row gives the headline estimate that defines "estimable"."""
    rows = rounds[rounds["method"] == method]
    return rows if len(rows) else rounds.drop_duplicates(["round", "regime", "exposure", "outcome"])


def summarize_verdicts(rounds, method: str = "ivw"):
    """The per-pair verdicts scored per regime, with Wilson 95% intervals.

    Parameters
    ----------
    rounds : pandas.DataFrame
        Round records (:func:`summarize`'s input) with the global table's ``verdict`` and
        ``direction`` columns; without them every verdict column is NaN.
    method : str
        The method whose headline estimate defines an *estimable* pair (finite estimate).

    Returns
    -------
    pandas.DataFrame
        Per regime: ``null_causal`` (share of the pair-rounds of null pairs, ``NULL_ROLES``, called
        ``causal``, every such pair-round in the denominator: ``null_pair_rounds``),
        ``null_causal_estimable`` (the same among the estimable ones: ``null_estimable_rounds``),
        ``planted_causal`` (share of rounds whose planted pair is ``causal`` with the sign of its
        truth), ``direction_right`` (share of the rounds whose planted truth is directional,
        ``|truth| >= NEAR_ZERO``, where the pair's ``direction`` names the planted direction:
        ``direction_rounds``), ``confounded_causal`` (confounded pairs called causal; their
        learnable truth is not zero) and ``planted_verdicts`` (counts of the planted pair's
        verdicts); every share with ``_low`` and ``_high``.
    """
    import pandas as pd

    pairs = _pair_rows(rounds, method)
    has = "verdict" in pairs.columns
    out = []
    for regime, g in pairs.groupby("regime", sort=False):
        causal = (g["verdict"] == "causal").to_numpy(bool) if has else np.zeros(len(g), bool)
        role = g["role"].to_numpy(str)
        null = np.isin(role, NULL_ROLES)
        estimable = np.isfinite(g["estimate"].to_numpy(float))
        planted = role == "planted"
        truth = g["truth"].to_numpy(float)
        est = g["estimate"].to_numpy(float)
        right_sign = planted & causal & (np.sign(est) == np.sign(truth))
        cause, effect = gen.planted_pair(str(regime))
        directional = planted & (np.abs(truth) >= NEAR_ZERO)
        named = (g["direction"].astype(str) == f"{cause} -> {effect}").to_numpy(bool)
        row = {"regime": regime}
        for name, flags in (
            ("null_causal", causal[null]),
            ("null_causal_estimable", causal[null & estimable]),
            ("planted_causal", right_sign[planted]),
            ("direction_right", named[directional]),
            ("confounded_causal", causal[role == "confounded"]),
        ):
            share, lo, hi, n = _share(flags)
            row.update(
                {
                    name: share if has else np.nan,
                    f"{name}_low": lo if has else np.nan,
                    f"{name}_high": hi if has else np.nan,
                    f"{name}_n": n,
                }
            )
        row["planted_verdicts"] = (
            ", ".join(f"{k} {v}" for k, v in g.loc[planted, "verdict"].value_counts().items())
            if has
            else ""
        )
        out.append(row)
    return pd.DataFrame(out)


def to_markdown(summary, columns=None, digits: int = 3) -> str:
    """A table as GitHub Markdown (floats with ``digits`` decimals)."""
    cols = list(columns or summary.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in summary.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(f"{v:.{digits}f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_rounds(rounds, path: str, method: str = "ivw") -> None:
    """Estimated vs learnable true global effect of the planted pair, one panel per regime.

    Parameters
    ----------
    rounds : pandas.DataFrame
        Round records (:func:`summarize`'s input).
    path : str
        Output image path (format from the extension).
    method : str
        MR method to draw.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    data = rounds[(rounds["method"] == method) & np.isfinite(rounds["estimate"])]
    regimes = list(dict.fromkeys(data["regime"]))
    fig, axes = plt.subplots(
        1, max(1, len(regimes)), figsize=(3.6 * max(1, len(regimes)), 3.6), squeeze=False
    )
    for ax, regime in zip(axes[0], regimes):
        g = data[data["regime"] == regime]
        for role, colour in (
            ("planted", "C0"),
            ("reverse", "C3"),
            ("unrelated", "0.6"),
            ("pleiotropic", "C1"),
            ("confounded", "C2"),
        ):
            r = g[g["role"] == role]
            if not len(r):
                continue
            t, e = r["truth"].to_numpy(float), r["estimate"].to_numpy(float)
            ax.errorbar(
                t,
                e,
                yerr=[e - r["ci_low"].to_numpy(float), r["ci_high"].to_numpy(float) - e],
                fmt="o",
                ms=3,
                capsize=1.5,
                color=colour,
                label=role,
                lw=0.8,
            )
        both = np.concatenate([g["truth"].to_numpy(float), g["estimate"].to_numpy(float)])
        both = both[np.isfinite(both)]
        if both.size:
            ax.plot([both.min(), both.max()], [both.min(), both.max()], "k--", lw=0.8)
        ax.set_title(f"confounding: {regime}")
        ax.set_xlabel("learnable true global effect")
        ax.set_ylabel(f"estimate ({method.upper()}, headline 95% CI)")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
