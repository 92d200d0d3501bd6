"""Drawing of Deep MR figures (matplotlib, Agg backend); each function returns a Figure.

`report.figures` re-exports these and draws a run's figure set with them (the list of figures is in
its docstring). `save` writes a figure atomically as PNG and closes it.

Feature names are the user's text: inside :func:`plain_text` (where figures are made and saved)
matplotlib never reads them as mathtext (``$x^$`` is drawn as typed, not parsed).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from deepmr_kipoi import results  # noqa: E402
from deepmr_kipoi.report.table import effect_matrix  # noqa: E402, F401 - drawn by the heatmaps

_LABELLED_MAX = 40  # matrices larger than this lose per-cell labels and significance stars
#: Text is drawn as typed: a feature name with ``$`` is never parsed as mathtext.
PLAIN_TEXT = {"text.parse_math": False, "text.usetex": False}
#: Titles sit at the top of their axes: no figure here has tick labels above an axes, where
#: matplotlib's automatic placement (a tenth of every draw) would move the title up.
FIXED_TITLES = {"axes.titley": 1.0}


def plain_text():
    """A context in which figures made and saved draw every label as plain text (and titles at
    a fixed height, ``FIXED_TITLES``).

    Returns
    -------
    contextlib.AbstractContextManager
    """
    return matplotlib.rc_context({**PLAIN_TEXT, **FIXED_TITLES})


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
    # a figure with a layout engine is laid out already: cropping it to its tight box would lay
    # out and draw it twice; zlib level 1 writes 2% larger files in a third of the time
    tight = "tight" if fig.get_layout_engine() is None else None
    with plain_text():
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=tight, pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return results.write_bytes(path, buf.getvalue())


def save_svg(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as an SVG atomically (text kept as text, so a page can show and search it)
    and close it.

    Parameters
    ----------
    fig : Figure
    path : path-like
        Destination ``.svg``; its folder must exist.

    Returns
    -------
    Path
    """
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "deepmr", **PLAIN_TEXT}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return results.write_bytes(path, buf.getvalue())


def symmetric_norm(values: np.ndarray) -> TwoSlopeNorm:
    """A colour norm centred at 0 spanning the largest |finite value| (1 where there is none)."""
    finite = np.abs(values[np.isfinite(values)])
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    return TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)


def _draw_matrix(ax, mat: pd.DataFrame, sig: pd.DataFrame | None, title: str, norm=None):
    values = mat.to_numpy(dtype=float)
    norm = norm or symmetric_norm(values)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#dddddd")
    im = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
    )
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
    global_table: pd.DataFrame, method: str, *, level: float = 0.95, title: str | None = None
) -> Figure:
    """Heatmap of global causal effects, exposure (rows) x outcome (columns).

    Parameters
    ----------
    global_table : DataFrame
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
    mat = effect_matrix(global_table, method)
    sig = (
        effect_matrix(global_table, method, "significant")
        if "significant" in global_table
        else None
    )
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
    _draw_instruments(ax, x, y, se_bx, se_by)
    xmax = float(np.max(x + se_bx)) if x.size else 1.0
    _draw_mr_lines(ax, np.linspace(0.0, xmax * 1.05, 50), ivw, egger)
    ax.axhline(0, color="#cccccc", lw=0.8, zorder=0)
    ax.set_xlabel(f"effect on {exposure} (oriented)")
    ax.set_ylabel(f"effect on {outcome}")
    ax.set_title(title or f"{exposure} -> {outcome}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig


def _draw_instruments(ax, x: np.ndarray, y: np.ndarray, se_x: np.ndarray, se_y: np.ndarray):
    """The oriented instruments with their SEs as error bars."""
    ax.errorbar(
        x,
        y,
        xerr=se_x,
        yerr=se_y,
        fmt="o",
        ms=3,
        color="#333333",
        ecolor="#999999",
        elinewidth=0.8,
        alpha=0.8,
        label=f"instruments (n={x.size})",
    )


def _draw_mr_lines(ax, grid: np.ndarray, ivw, egger) -> None:
    """The IVW line through the origin and the MR-Egger line over ``grid`` (those given and
    finite)."""
    if ivw is not None and np.isfinite(ivw):
        ax.plot(grid, ivw * grid, color="#1f77b4", lw=1.5, label=f"IVW slope {ivw:.3g}")
    if egger is not None and np.all(np.isfinite(egger)):
        slope, intercept = egger
        ax.plot(
            grid,
            intercept + slope * grid,
            color="#d62728",
            lw=1.5,
            ls="--",
            label=f"Egger slope {slope:.3g}, intercept {intercept:.2g}",
        )


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
    ax.errorbar(
        est[ok],
        ys[ok],
        xerr=np.vstack([est[ok] - lo[ok], hi[ok] - est[ok]]),
        fmt="s",
        ms=3,
        color="#333333",
        ecolor="#777777",
        elinewidth=1,
    )
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


def calibration_curves(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = ""
) -> Figure:
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
    ax.errorbar(
        t[ok],
        e[ok],
        yerr=np.vstack([e[ok] - lo[ok], hi[ok] - e[ok]]),
        fmt="o",
        ms=4,
        color="#1f77b4",
        ecolor="#9ecae1",
    )
    vals = np.concatenate([t[ok], lo[ok], hi[ok]]) if ok.any() else np.array([-1.0, 1.0])
    span = [float(np.nanmin(vals)), float(np.nanmax(vals))]
    pad = 0.05 * (span[1] - span[0] or 1.0)
    ax.plot(
        [span[0] - pad, span[1] + pad],
        [span[0] - pad, span[1] + pad],
        color="#999999",
        ls=":",
        label="estimate = truth",
    )
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
    # constrained layout keeps each panel's tick labels and titles clear of its neighbours
    fig, axes = plt.subplots(2, n, figsize=(4.6 * n + 1.0, 9), squeeze=False, layout="constrained")
    allvals = np.concatenate([m.to_numpy(dtype=float).ravel() for _, m in matrices])
    norm = symmetric_norm(allvals)
    im = None
    for i, (label, mat) in enumerate(matrices):
        im = _draw_matrix(axes[0, i], mat, sig[i], label, norm=norm)
        if i:  # the matrices share their rows: the first panel names them for all
            axes[0, i].set_yticklabels([])
            axes[0, i].set_ylabel("")
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="global effect")
    ref_label, ref = matrices[0]
    x = ref.to_numpy(dtype=float).ravel()
    axes[1, 0].axis("off")
    axes[1, 0].text(
        0.0, 0.5, f"method: {method}\nreference run: {ref_label}", fontsize=9, va="center"
    )
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
        ax.set_xlabel(f"estimate, {ref_label}")
        ax.set_ylabel(f"estimate, {label}")
        ax.set_title(f"{label} vs {ref_label} ({int(ok.sum())} pairs)", fontsize=9, pad=10)
    return fig


#: Colours of the alternative bases in ISM track plots (the sequence-logo convention).
BASE_COLOURS = {"A": "#109648", "C": "#255c99", "G": "#f7b32b", "T": "#d62839"}


def instrument_map(
    positions: np.ndarray,
    alt_bases: np.ndarray,
    effects: Sequence[tuple[str, np.ndarray]],
    instruments: np.ndarray,
    *,
    alphabet: str = "ACGT",
    title: str = "",
) -> Figure:
    """Instrument map along one sequence: each mutation's effects per position and base.

    Parameters
    ----------
    positions : ndarray, shape (W,)
        Sequence positions of the window.
    alt_bases : ndarray, shape (W, 3)
        Codes (into ``alphabet``) of the three alternative bases per position.
    effects : sequence of (label, ndarray (W, 3))
        One track per feature (e.g. the exposure, then the outcome): the paired effect of every
        mutation (NaN where the reference base is N).
    instruments : ndarray of bool, shape (W, 3)
        Mutations used as instruments.
    alphabet : str
    title : str

    Returns
    -------
    Figure
        One panel per track sharing the position axis: a grey line through the per-position mean
        effect (the ISM track), every mutation as a dot coloured by its alternative base, the
        instruments as larger dots with black edges.
    """
    pos = np.asarray(positions)
    alt = np.asarray(alt_bases)
    inst = np.asarray(instruments, dtype=bool)
    width = float(np.clip(4.0 + pos.size / 40.0, 7.0, 16.0))
    fig, axes = plt.subplots(
        len(effects),
        1,
        figsize=(width, 1.9 * len(effects) + 0.8),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, (label, eff) in zip(axes[:, 0], effects):
        _instrument_track(ax, pos, alt, np.asarray(eff, dtype=float), inst, alphabet)
        ax.set_ylabel(f"effect on\n{label}", fontsize=8)
    colours = {b: BASE_COLOURS.get(b.upper(), "#777777") for b in alphabet}
    handles = [
        plt.Line2D([], [], ls="", marker="o", color=colours[b], label=f"mutation to {b}")
        for b in alphabet
    ]
    n_inst = int(inst.sum())
    handles.append(
        plt.Line2D(
            [], [], ls="", marker="o", mfc="white", mec="black", label=f"instrument ({n_inst})"
        )
    )
    axes[0, 0].legend(
        handles=handles,
        fontsize=7,
        ncol=len(handles),
        loc="lower left",
        bbox_to_anchor=(0, 1.02),
        frameon=False,
    )
    axes[-1, 0].set_xlabel("position in the sequence")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def _instrument_track(ax, pos, alt, eff, inst, alphabet: str) -> None:
    """One feature's panel: the per-position mean effect as a grey line, every mutation a dot
    coloured by its alternative base, the instruments larger with black edges."""
    xs = np.repeat(pos[:, None], 3, axis=1)
    with warnings.catch_warnings():  # a position no mutant reaches (outside a panel member's
        warnings.simplefilter("ignore", RuntimeWarning)  # window) stays NaN
        track = np.nanmean(np.where(np.isfinite(eff), eff, np.nan), axis=1)
    ax.plot(pos, track, color="#bbbbbb", lw=0.8, zorder=1)
    for code, base in enumerate(alphabet):
        sel = alt == code
        if not sel.any():
            continue
        colour = BASE_COLOURS.get(base.upper(), "#777777")
        rest, chosen = sel & ~inst, sel & inst
        ax.scatter(xs[rest], eff[rest], s=5, color=colour, alpha=0.45, linewidths=0, zorder=2)
        ax.scatter(
            xs[chosen],
            eff[chosen],
            s=26,
            color=colour,
            edgecolors="black",
            linewidths=0.7,
            zorder=3,
            label=f"to {base}",
        )
    ax.axhline(0, color="#dddddd", lw=0.8, zorder=0)
