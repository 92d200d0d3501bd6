"""Figures of a Deep MR run (matplotlib, Agg backend).

`make_figures` draws a run's figures into its folder; the drawing functions each return a
Figure:

* `global_heatmap` - global effects, exposure x outcome, significant cells marked;
* `mr_scatter` - one sequence's instruments, outcome effect against exposure effect, with error
  bars and the fitted IVW and Egger lines;
* `forest` - local effects of one pair over sequences with the pooled global effect;
* `calibration_curves` - expected against observed confidence, before and after calibration;
* `truth_scatter` - estimated against known global effects (demo, simulations);
* `compare_figure` - global effect matrices of several runs side by side, with a scatter of
  each run's shared estimates against the first run's.

`save` writes a figure atomically as PNG and closes it. The drawing functions and `save` are
defined in `report.drawing` and re-exported here.
"""

from __future__ import annotations

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

from deepmr_kipoi.report.drawing import (  # noqa: E402
    calibration_curves,
    compare_figure,
    effect_matrix,
    forest,
    global_heatmap,
    mr_scatter,
    save,
    truth_scatter,
)

__all__ = [
    "FigureFile",
    "calibration_curves",
    "compare_figure",
    "effect_matrix",
    "forest",
    "global_heatmap",
    "make_figures",
    "mr_scatter",
    "save",
    "slug",
    "top_pairs",
    "truth_join",
    "truth_scatter",
]


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
