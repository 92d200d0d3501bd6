"""Figures of a Deep MR run (matplotlib, Agg backend).

:func:`make_figures` draws a run's figures into its folder; the drawing functions each return a
Figure:

* :func:`global_heatmap` - global effects, exposure x outcome, significant cells marked;
* :func:`mr_scatter` - one sequence's instruments, outcome effect against exposure effect, with error
  bars and the fitted IVW and Egger lines;
* :func:`forest` - local effects of one pair over sequences with the pooled global effect;
* :func:`calibration_curves` - expected against observed confidence, before and after calibration;
* :func:`truth_scatter` - estimated against known global effects (demo, simulations);
* :func:`compare_figure` - global effect matrices of several runs side by side, with a scatter of
  each run's shared estimates against the first run's.

:func:`save` writes a figure atomically as PNG and closes it.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from deepmr_kipoi import results  # noqa: E402

_LABELLED_MAX = 40  # matrices larger than this lose per-cell labels and significance stars


def save(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG atomically and close it.

    Parameters
    ----------
    fig : Figure
    path : path-like
        Destination ``.png``; its folder must exist.
    dpi : int

    Returns
    -------
    Path
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return results.write_bytes(path, buf.getvalue())


def effect_matrix(
    glob: pd.DataFrame, method: str, value: str = "estimate"
) -> pd.DataFrame:
    """One column of the global table as an exposure x outcome matrix.

    Parameters
    ----------
    glob : DataFrame
        Global effects with columns exposure, outcome, method and ``value``.
    method : str
    value : str

    Returns
    -------
    DataFrame, shape (E, O)
        Rows: exposures in order of first appearance; columns: outcomes in the same order where
        they are exposures too (so the diagonal lines up), then the others. NaN where a pair is
        absent (e.g. exposure == outcome).
    """
    sub = glob[glob["method"].astype(str) == method]
    rows = list(dict.fromkeys(sub["exposure"].astype(str)))
    outcomes = set(sub["outcome"].astype(str))
    # features that are both exposure and outcome keep one order on both axes (diagonal aligned)
    cols = [f for f in dict.fromkeys([*rows, *sub["outcome"].astype(str)]) if f in outcomes]
    mat = sub.pivot_table(index="exposure", columns="outcome", values=value, aggfunc="first",
                          observed=True, dropna=False)  # fmt: skip
    mat.index = mat.index.astype(str)
    mat.columns = mat.columns.astype(str)
    return mat.reindex(index=rows, columns=cols).astype(float)


def _symmetric_norm(values: np.ndarray) -> TwoSlopeNorm:
    finite = np.abs(values[np.isfinite(values)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)


def _draw_matrix(ax, mat: pd.DataFrame, sig: pd.DataFrame | None, title: str, norm=None):
    values = mat.to_numpy(dtype=float)
    norm = norm or _symmetric_norm(values)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto",
                   interpolation="nearest")  # fmt: skip
    n_r, n_c = values.shape
    if max(n_r, n_c) <= _LABELLED_MAX:
        ax.set_xticks(range(n_c), mat.columns, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n_r), mat.index, fontsize=8)
        if sig is not None:
            flags = sig.reindex(index=mat.index, columns=mat.columns).to_numpy(dtype=float) > 0
            for r, c in zip(*np.nonzero(flags)):
                ax.text(c, r, "*", ha="center", va="center", fontsize=12, color="black")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        if sig is not None:
            flags = sig.reindex(index=mat.index, columns=mat.columns).to_numpy(dtype=float) > 0
            rr, cc = np.nonzero(flags)
            ax.scatter(cc, rr, s=2, c="black", marker=".", linewidths=0)
    ax.set_xlabel("outcome")
    ax.set_ylabel("exposure")
    ax.set_title(title, fontsize=10)
    return im


def global_heatmap(
    glob: pd.DataFrame, method: str, *, level: float = 0.95, title: str | None = None
) -> Figure:
    """Heatmap of global causal effects, exposure (rows) x outcome (columns).

    Parameters
    ----------
    glob : DataFrame
        Global effects (``pipeline.global_effects``), columns exposure, outcome, method, estimate and
        ``significant``.
    method : str
        The MR method whose global effects are drawn.
    level : float
        Confidence level (only for the caption of the significance mark).
    title : str, optional

    Returns
    -------
    Figure
        Colour: estimate (diverging, centred at 0; grey where undefined). ``*`` (or a dot for large
        matrices): Benjamini-Hochberg q-value below ``1 - level``.
    """
    mat = effect_matrix(glob, method)
    sig = effect_matrix(glob, method, "significant") if "significant" in glob else None
    n_r, n_c = mat.shape
    size = (min(14, max(5.5, 2.5 + 0.35 * n_c)), min(12, max(4.5, 2.0 + 0.3 * n_r)))
    fig, ax = plt.subplots(figsize=size)
    title = title or f"Global causal effects ({method})"
    im = _draw_matrix(ax, mat, sig, f"{title}\n* significant: BH q < {1 - level:.2g}")
    fig.colorbar(im, ax=ax, label="global effect")
    return fig


def mr_scatter(
    bx: np.ndarray,
    se_bx: np.ndarray,
    by: np.ndarray,
    se_by: np.ndarray,
    *,
    ivw: float | None = None,
    egger: tuple[float, float] | None = None,
    exposure: str = "exposure",
    outcome: str = "outcome",
    title: str | None = None,
    ax=None,
) -> Figure:
    """MR scatter plot of one sequence's instruments.

    Parameters
    ----------
    bx, se_bx, by, se_by : ndarray, shape (K,)
        Instrument effects on exposure and outcome with SEs.
    ivw : float, optional
        IVW slope (line through the origin).
    egger : (slope, intercept), optional
        MR-Egger fit on the oriented instruments.
    exposure, outcome, title : str
    ax : matplotlib Axes, optional
        Draw into this axes (its figure is returned).

    Returns
    -------
    Figure
        Instruments are oriented so that ``bx > 0`` (signs of bx and by flipped together), as
        MR-Egger is fitted; the IVW line is unchanged by the orientation.
    """
    bx, se_bx, by, se_by = (np.asarray(a, dtype=float) for a in (bx, se_bx, by, se_by))
    flip = np.where(bx < 0, -1.0, 1.0)
    x, y = bx * flip, by * flip
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4))
    else:
        fig = ax.figure
    ax.errorbar(x, y, xerr=se_bx, yerr=se_by, fmt="o", ms=3, color="#333333", ecolor="#999999",
                elinewidth=0.8, alpha=0.8, label=f"instruments (n={x.size})")  # fmt: skip
    xmax = float(np.max(x + se_bx)) if x.size else 1.0
    grid = np.linspace(0.0, xmax * 1.05, 50)
    if ivw is not None and np.isfinite(ivw):
        ax.plot(grid, ivw * grid, color="#1f77b4", lw=1.5, label=f"IVW slope {ivw:.3g}")
    if egger is not None and np.all(np.isfinite(egger)):
        slope, intercept = egger
        ax.plot(grid, intercept + slope * grid, color="#d62728", lw=1.5, ls="--",
                label=f"Egger slope {slope:.3g}, intercept {intercept:.2g}")  # fmt: skip
    ax.axhline(0, color="#cccccc", lw=0.8, zorder=0)
    ax.set_xlabel(f"effect on {exposure} (oriented)")
    ax.set_ylabel(f"effect on {outcome}")
    ax.set_title(title or f"{exposure} -> {outcome}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig


def forest(
    labels: Sequence[str],
    estimate: np.ndarray,
    ci_low: np.ndarray,
    ci_high: np.ndarray,
    *,
    pooled: tuple[float, float, float] | None = None,
    prediction: tuple[float, float] | None = None,
    title: str = "",
    xlabel: str = "causal effect",
) -> Figure:
    """Forest plot: local estimates with CIs, and the pooled (global) effect as a diamond.

    Parameters
    ----------
    labels : sequence of str, length K
        Sequence names.
    estimate, ci_low, ci_high : ndarray, shape (K,)
        Local effects (NaN rows are drawn as "no estimate").
    pooled : (estimate, ci_low, ci_high), optional
        Global random-effects estimate.
    prediction : (low, high), optional
        Prediction interval of the global effect (drawn as a line through the diamond).
    title, xlabel : str

    Returns
    -------
    Figure
    """
    est = np.asarray(estimate, dtype=float)
    lo, hi = np.asarray(ci_low, dtype=float), np.asarray(ci_high, dtype=float)
    k = est.size
    fig, ax = plt.subplots(figsize=(5.5, 1.2 + 0.22 * (k + 2)))
    ys = np.arange(k)[::-1] + 2
    ok = np.isfinite(est)
    ax.errorbar(est[ok], ys[ok], xerr=np.vstack([est[ok] - lo[ok], hi[ok] - est[ok]]), fmt="s", ms=3,
                color="#333333", ecolor="#777777", elinewidth=1)  # fmt: skip
    for y in ys[~ok]:
        ax.text(0, y, "no estimate", fontsize=6, color="#999999", va="center")
    names = list(labels)
    ticks, ticklabels = list(ys), names
    if pooled is not None and np.isfinite(pooled[0]):
        m, plo, phi = pooled
        if prediction is not None and np.all(np.isfinite(prediction)):
            ax.plot(prediction, [0.5, 0.5], color="#d62728", lw=1, alpha=0.6)
        ax.fill([plo, m, phi, m], [0.5, 0.85, 0.5, 0.15], color="#d62728", alpha=0.8)
        ticks.append(0.5)
        ticklabels = [*names, "global (RE)"]
    ax.axvline(0, color="#bbbbbb", lw=0.8, zorder=0)
    ax.set_yticks(ticks, ticklabels, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    return fig


def calibration_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = "") -> Figure:
    """Calibration curves: observed against expected confidence (a calibrated model is diagonal).

    Parameters
    ----------
    curves : sequence of (label, expected, observed)
        ``expected`` and ``observed`` of shape (P,) (one curve per label, e.g. a feature before and
        after recalibration).
    title : str

    Returns
    -------
    Figure
    """
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ax.plot([0, 1], [0, 1], color="#999999", ls=":", lw=1, label="ideal")
    for label, expected, observed in curves:
        ls = "--" if "before" in label else "-"
        ax.plot(np.asarray(expected), np.asarray(observed), ls=ls, lw=1.3, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("expected confidence level")
    ax.set_ylabel("observed frequency")
    ax.set_title(title or "Calibration of predictive uncertainty", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")
    return fig


def truth_scatter(
    true: np.ndarray,
    estimate: np.ndarray,
    ci_low: np.ndarray,
    ci_high: np.ndarray,
    labels: Sequence[str],
    *,
    title: str = "Estimated vs true global effects",
) -> Figure:
    """Estimated global effects against known true effects, with CIs and the identity line.

    Parameters
    ----------
    true, estimate, ci_low, ci_high : ndarray, shape (P,)
    labels : sequence of str, length P
        Pair names (annotated when P <= 20).
    title : str

    Returns
    -------
    Figure
    """
    t, e = np.asarray(true, dtype=float), np.asarray(estimate, dtype=float)
    lo, hi = np.asarray(ci_low, dtype=float), np.asarray(ci_high, dtype=float)
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ok = np.isfinite(e) & np.isfinite(t)
    ax.errorbar(t[ok], e[ok], yerr=np.vstack([e[ok] - lo[ok], hi[ok] - e[ok]]), fmt="o", ms=4,
                color="#1f77b4", ecolor="#9ecae1")  # fmt: skip
    vals = np.concatenate([t[ok], lo[ok], hi[ok]]) if ok.any() else np.array([-1.0, 1.0])
    span = [float(np.nanmin(vals)), float(np.nanmax(vals))]
    pad = 0.05 * (span[1] - span[0] or 1.0)
    ax.plot([span[0] - pad, span[1] + pad], [span[0] - pad, span[1] + pad], color="#999999",
            ls=":", label="estimate = truth")  # fmt: skip
    if ok.sum() <= 20:
        for x, y, lab in zip(t[ok], e[ok], np.asarray(labels, dtype=object)[ok]):
            ax.annotate(lab, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("true global effect")
    ax.set_ylabel("estimated global effect (95% CI)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return fig


def compare_figure(
    matrices: Sequence[tuple[str, pd.DataFrame]],
    sig: Sequence[pd.DataFrame | None] | None = None,
    *,
    method: str = "",
) -> Figure:
    """Global effect matrices of several runs side by side, then scatters against the first run.

    Parameters
    ----------
    matrices : sequence of (label, DataFrame (E, O))
        Aligned matrices (same index and columns) of shared pairs.
    sig : sequence of DataFrame or None, optional
        Significance flags aligned with ``matrices``.
    method : str
        MR method (title).

    Returns
    -------
    Figure
        Top row: one heatmap per run on a common colour scale. Bottom row: for runs 2.., the shared
        estimates against run 1's.
    """
    n = len(matrices)
    sig = list(sig) if sig is not None else [None] * n
    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 8), squeeze=False)
    allvals = np.concatenate([m.to_numpy(dtype=float).ravel() for _, m in matrices])
    norm = _symmetric_norm(allvals)
    im = None
    for i, (label, mat) in enumerate(matrices):
        im = _draw_matrix(axes[0, i], mat, sig[i], label, norm=norm)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="global effect")
    ref_label, ref = matrices[0]
    x = ref.to_numpy(dtype=float).ravel()
    axes[1, 0].axis("off")
    axes[1, 0].text(0.0, 0.5, f"method: {method}\nreference run: {ref_label}", fontsize=9,
                    va="center")  # fmt: skip
    for i in range(1, n):
        label, mat = matrices[i]
        y = mat.to_numpy(dtype=float).ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        ax = axes[1, i]
        ax.scatter(x[ok], y[ok], s=10, alpha=0.7)
        if ok.any():
            lo, hi = float(min(x[ok].min(), y[ok].min())), float(max(x[ok].max(), y[ok].max()))
            ax.plot([lo, hi], [lo, hi], ls=":", color="#999999")
        ax.axhline(0, color="#dddddd", lw=0.8, zorder=0)
        ax.axvline(0, color="#dddddd", lw=0.8, zorder=0)
        ax.set_xlabel(ref_label)
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs {ref_label} ({int(ok.sum())} pairs)", fontsize=9)
    return fig


# ----------------------------------------------------------------------------------------------
# a run's figures


@dataclass(frozen=True)
class FigureFile:
    """A figure written to the run folder.

    Attributes
    ----------
    path : Path
        PNG file.
    title : str
    caption : str
    """

    path: Path
    title: str
    caption: str


def slug(text: str) -> str:
    """``text`` as a safe file-name stem (at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:80] or "x"


def top_pairs(glob: pd.DataFrame, n: int = 3) -> tuple[str, list[tuple[str, str]]]:
    """The first method's ``n`` pairs with the smallest global p-values.

    Parameters
    ----------
    glob : DataFrame
    n : int

    Returns
    -------
    method : str
        ``"ivw"`` when present, else the first method of the table.
    pairs : list of (exposure, outcome)
    """
    methods = list(dict.fromkeys(glob["method"].astype(str)))
    method = "ivw" if "ivw" in methods else methods[0]
    sub = glob[(glob["method"] == method) & np.isfinite(glob["pvalue"])]
    sub = sub.sort_values(["pvalue", "exposure", "outcome"], kind="stable").head(n)
    return method, list(zip(sub["exposure"].astype(str), sub["outcome"].astype(str)))


def make_figures(
    out_dir: str | os.PathLike,
    glob: pd.DataFrame,
    local: pd.DataFrame,
    arrays: dict,
    *,
    feature_names: Sequence[str],
    used: Sequence[int],
    seq_ids: Sequence[str],
    exposures: Sequence[str] = (),
    calibration=None,
    truth: pd.DataFrame | None = None,
    level: float = 0.95,
    n_examples: int = 3,
    n_pairs: int = 3,
    created: list | None = None,
) -> list[FigureFile]:
    """Draw a run's figures into ``out_dir/figures``.

    Parameters
    ----------
    out_dir : path-like
    glob, local : DataFrame
        Global and local effect tables.
    arrays : dict
        Kept ISM arrays: ``sequence_index`` (n,), ``mean``/``se`` (n, W, 3, U) over the ``used``
        features, ``instrument_mask`` (n, W, 3, E) over ``exposures`` (empty dict: no scatter plots).
    feature_names : sequence of str
        All model features.
    used : sequence of int
        Feature indices of the last axis of ``mean``/``se``.
    seq_ids : sequence of str
    exposures : sequence of str
        Exposure names, in the order of the last axis of ``instrument_mask``.
    calibration : run.inputs.Calibration, optional
        With ``curve_before``/``curve_after`` (``calibration.curve`` results) when fitted here.
    truth : DataFrame, optional
        Columns exposure, outcome, true_effect.
    level : float
    n_examples : int
        Sequences per MR scatter figure.
    n_pairs : int
        Pairs with scatter and forest plots (smallest global p-values).
    created : list, optional
        Paths of new files are appended (clean-up on failure).

    Returns
    -------
    list of FigureFile
    """
    fig_dir = Path(out_dir) / "figures"
    if not fig_dir.exists():
        fig_dir.mkdir(parents=True)
        if created is not None:
            created.append(fig_dir)
    out: list[FigureFile] = []
    alpha = 1.0 - level

    def emit(fig, name, title, caption):
        path = save(fig, fig_dir / f"{slug(name)}.png")
        out.append(FigureFile(path, title, caption))

    if truth is not None and len(truth):
        first = top_pairs(glob, 1)[0]
        j = truth_join(glob, truth, first)
        fig = truth_scatter(
            j["true_effect"], j["estimate"], j["ci_low"], j["ci_high"],
            [f"{e}->{o}" for e, o in zip(j["exposure"], j["outcome"])],
            title=f"Estimated ({first}) vs true global effects",
        )  # fmt: skip
        emit(fig, "truth", "Estimated vs true global effects",
             f"Each point is one (exposure, outcome) pair: the planted effect against the {first} "
             f"global estimate with its {level:.0%} CI. Points on the dotted line are recovered "
             "exactly.")  # fmt: skip

    for method in dict.fromkeys(glob["method"].astype(str)):
        emit(global_heatmap(glob, method, level=level), f"heatmap_{method}",
             f"Global effects ({method})",
             f"Random-effects meta-analysis of the local {method} estimates over sequences; rows "
             f"are exposures, columns outcomes. * marks Benjamini-Hochberg q < {alpha:.2g}; grey: "
             "not estimable (or exposure = outcome).")  # fmt: skip

    method, pairs = top_pairs(glob, n_pairs)
    methods = set(glob["method"].astype(str))
    if "mean" in arrays and len(arrays["sequence_index"]):
        for e, o in pairs:
            fig = _scatter_panel(
                arrays, local, e, o, feature_names=feature_names, used=used, seq_ids=seq_ids,
                exposures=exposures, n_examples=n_examples, with_egger="egger" in methods,
            )  # fmt: skip
            if fig is not None:
                emit(fig, f"scatter_{e}__{o}", f"MR scatter: {e} -> {o}",
                     "Instruments (mutations significant for the exposure) of example sequences: "
                     "effect on the outcome against effect on the exposure, with SEs as error bars, "
                     "oriented so the exposure effect is positive. Blue: IVW slope; red dashed: "
                     "MR-Egger fit.")  # fmt: skip

    for e, o in pairs:
        rows = local[(local["method"].astype(str) == method) & (local["exposure"].astype(str) == e)
                     & (local["outcome"].astype(str) == o)].sort_values("sequence_index")  # fmt: skip
        g = glob[(glob["method"] == method) & (glob["exposure"] == e) & (glob["outcome"] == o)]
        if not len(rows) or not len(g):
            continue
        g = g.iloc[0]
        fig = forest(
            rows["sequence_id"].astype(str).tolist(), rows["estimate"], rows["ci_low"],
            rows["ci_high"], pooled=(g.get("meta_estimate", g["estimate"]),
                                     g.get("meta_ci_low", g["ci_low"]),
                                     g.get("meta_ci_high", g["ci_high"])),
            prediction=(g["pi_low"], g["pi_high"]), title=f"{e} -> {o} ({method})",
        )  # fmt: skip
        emit(fig, f"forest_{e}__{o}_{method}", f"Forest plot: {e} -> {o}",
             f"Local {method} estimates per sequence with {level:.0%} CIs; the diamond is the "
             "random-effects meta-analysis over these sequences, the line through it its "
             "prediction interval. The headline global interval is wider: it also counts the "
             "model's uncertainty, which every local estimate shares.")  # fmt: skip

    if calibration is not None and getattr(calibration, "curve_before", None) is not None:
        curves = _calibration_curves(calibration)
        if curves:
            emit(calibration_curves(curves), "calibration", "Calibration curves",
                 "Observed frequency with which labels fall in central predictive intervals, "
                 "against the intervals' nominal level, before (dashed) and after (solid) "
                 "recalibration.")  # fmt: skip
    return out


def truth_join(glob: pd.DataFrame, truth: pd.DataFrame, method: str) -> pd.DataFrame:
    """One method's global estimates and CIs beside the true effects, on their shared pairs."""
    cols = ["exposure", "outcome", "estimate", "ci_low", "ci_high"]
    cols += [c for c in ("significant", "meta_ci_low", "meta_ci_high") if c in glob.columns]
    g = glob[glob["method"] == method][cols]
    t = truth[["exposure", "outcome", "true_effect"]].astype({"exposure": str, "outcome": str})
    return g.merge(t, on=["exposure", "outcome"], how="inner")


def _scatter_panel(arrays, local, e, o, *, feature_names, used, seq_ids, exposures, n_examples,
                   with_egger):  # fmt: skip
    names = list(feature_names)
    ui = {f: i for i, f in enumerate(used)}
    ie, io = names.index(e), names.index(o)
    if ie not in ui or io not in ui or e not in list(exposures):
        return None
    ek = list(exposures).index(e)
    sel = local[(local["exposure"].astype(str) == e) & (local["outcome"].astype(str) == o)]
    panels = []
    for row, s in enumerate(arrays["sequence_index"]):
        mask = arrays["instrument_mask"][row][..., ek]
        by = arrays["mean"][row][..., ui[io]]
        sy = arrays["se"][row][..., ui[io]]
        mask = mask & np.isfinite(by) & np.isfinite(sy) & (sy > 0)
        if mask.sum() < 1:
            continue
        loc = sel[sel["sequence_index"] == s]
        ivw = loc.loc[loc["method"].astype(str) == "ivw", "estimate"]
        egg = loc[loc["method"].astype(str) == "egger"]
        panels.append((s, mask, float(ivw.iloc[0]) if len(ivw) else None,
                       (float(egg["estimate"].iloc[0]), float(egg["intercept"].iloc[0]))
                       if with_egger and len(egg) else None))  # fmt: skip
        if len(panels) >= n_examples:
            break
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4), squeeze=False)
    rows = {int(s): r for r, s in enumerate(arrays["sequence_index"])}
    for ax, (s, mask, ivw, egger) in zip(axes[0], panels):
        r = rows[int(s)]
        mr_scatter(
            arrays["mean"][r][..., ui[ie]][mask], arrays["se"][r][..., ui[ie]][mask],
            arrays["mean"][r][..., ui[io]][mask], arrays["se"][r][..., ui[io]][mask],
            ivw=ivw, egger=egger, exposure=e, outcome=o, title=f"{seq_ids[int(s)]}", ax=ax,
        )  # fmt: skip
    return fig


def _calibration_curves(cal) -> list:
    """(label, expected, observed) per curve: all features pooled, then up to 4 single features."""
    curves = []
    for tag, curve in (("before", cal.curve_before), ("after", cal.curve_after)):
        if curve is None:
            continue
        curves.append((f"all features, {tag}", curve.expected, curve.observed_overall))
        names = list(curve.feature_names or cal.features)
        observed = np.atleast_2d(curve.observed)
        if observed.shape[0] > 1:
            for j in range(min(observed.shape[0], 4)):
                curves.append((f"{names[j]}, {tag}", curve.expected, observed[j]))
    return curves
