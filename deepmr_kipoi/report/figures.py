"""Figures of a Deep MR run (matplotlib, Agg backend).

`make_figures` draws a run's figures into its folder:

* the overview of the claims: `overview.causal_graph` (SVG, up to `overview.GRAPH_MAX_FEATURES`
  features) or `overview.clustered_heatmap` at zoo scale;
* `global_heatmap` per estimator (small runs) - headline global effects, exposure x outcome,
  significant cells marked;
* per pair worth a look (the claims first): `mr_scatter` of example sequences' instruments with the
  fitted IVW and Egger lines, `instrument_map` along one sequence, and `forest` over sequences;
* `calibration_curves`, and `truth_scatter` where the truth is known (demo, simulations).

`compare_figure` draws `deepmr compare`'s side-by-side matrices. `save` writes a figure atomically
as PNG and closes it, `save_svg` as SVG. The drawing functions are defined in `report.drawing` and
`report.overview` and re-exported here.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deepmr_kipoi.mr.methods import method_label  # noqa: E402
from deepmr_kipoi.report.drawing import (  # noqa: E402
    calibration_curves,
    compare_figure,
    effect_matrix,
    forest,
    global_heatmap,
    instrument_map,
    mr_scatter,
    plain_text,
    save,
    save_svg,
    truth_scatter,
)
from deepmr_kipoi.report.figure_file import FigureFile  # noqa: E402
from deepmr_kipoi.report.headline import primary_method, truth_join  # noqa: E402
from deepmr_kipoi.report.overview import (  # noqa: E402
    GRAPH_MAX_FEATURES,
    causal_graph,
    clustered_heatmap,
    features_of,
)

__all__ = [
    "DETAIL_PAIRS",
    "FigureFile",
    "DetailInputs",
    "calibration_curves",
    "causal_graph",
    "clustered_heatmap",
    "compare_figure",
    "detail_pairs",
    "effect_matrix",
    "forest",
    "global_heatmap",
    "instrument_map",
    "make_figures",
    "mr_scatter",
    "pair_stem",
    "plain_text",
    "save",
    "save_svg",
    "slug",
    "top_pairs",
    "truth_join",
    "truth_scatter",
]


def slug(text: str) -> str:
    """``text`` as a safe file-name stem (at most 80 characters)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_")[:80] or "x"


def pair_stem(name: str, pair: tuple[str, str]) -> str:
    """The file-name stem of a pair's figure: ``slug(name)`` and a short hash of the pair's exact
    names, so pairs whose names slug alike (``p+q`` and ``p*q``) never share a file."""
    digest = hashlib.sha256("\0".join(map(str, pair)).encode()).hexdigest()[:8]
    return f"{slug(name)[:71]}-{digest}"


def top_pairs(global_table: pd.DataFrame, n: int = 3) -> tuple[str, list[tuple[str, str]]]:
    """The primary method's ``n`` pairs with the smallest global p-values.

    Parameters
    ----------
    global_table : DataFrame
    n : int

    Returns
    -------
    method : str
        ``"ivw"`` when present, else the first method of the table.
    pairs : list of (exposure, outcome)
    """
    method = primary_method(global_table)
    sub = global_table[(global_table["method"] == method) & np.isfinite(global_table["pvalue"])]
    sub = sub.sort_values(["pvalue", "exposure", "outcome"], kind="stable").head(n)
    return method, list(zip(sub["exposure"].astype(str), sub["outcome"].astype(str)))


def detail_pairs(global_table: pd.DataFrame, n: int = 4) -> tuple[str, list[tuple[str, str]]]:
    """The pairs worth a detailed look: claims first, then undetermined pairs with an effect.

    Parameters
    ----------
    global_table : DataFrame
        Global effects (with ``verdict``; without it, the smallest p-values).
    n : int
        Pairs at most.

    Returns
    -------
    method : str
        The primary method.
    pairs : list of (exposure, outcome)
        Causal pairs by |estimate|, then undetermined pairs where an estimator is significant, then
        the remaining smallest p-values.
    """
    method = primary_method(global_table)
    if "verdict" not in global_table:
        return top_pairs(global_table, n)
    t = global_table.astype({"exposure": str, "outcome": str})
    sig = (
        t.assign(_s=t["significant"].fillna(False).astype(bool))
        .groupby(["exposure", "outcome"], sort=False)["_s"]
        .any()
    )
    sub = t[t["method"] == method].copy()
    rank = sub["verdict"].map({"causal": 0, "undetermined": 1}).fillna(2)
    has_effect = [bool(sig.get((e, o), False)) for e, o in zip(sub["exposure"], sub["outcome"])]
    sub["rank"] = np.where((rank == 1) & ~np.asarray(has_effect), 2, rank)
    sub["size"] = np.where(sub["rank"] == 0, -sub["estimate"].abs(), sub["pvalue"].fillna(np.inf))
    sub = sub.sort_values(["rank", "size", "exposure", "outcome"], kind="stable").head(n)
    return method, list(zip(sub["exposure"], sub["outcome"]))


@dataclass(frozen=True)
class DetailInputs:
    """What a run kept of its ISM effects and local fits, for the per-pair figures.

    Attributes
    ----------
    local : DataFrame
        The local table (one row per sequence, pair and method).
    arrays : dict
        ``sequence_index`` (n,), ``mean``/``se`` (n, W, 3, U) over the ``used`` features,
        ``instrument_mask`` (n, W, 3, E) over ``exposures``, ``alt_bases`` (n, W, 3) and
        ``positions`` (W,); an empty dict draws no scatter plots or instrument maps.
    feature_names : tuple of str
        All model features.
    used : tuple of int
        Feature indices of the last axis of ``mean``/``se``.
    seq_ids : tuple of str
    exposures : tuple of str
        Exposure names, in the order of the last axis of ``instrument_mask``.
    models : tuple of str
        The model (panel label) of every feature of ``feature_names``; empty for one model.
    """

    local: pd.DataFrame
    arrays: dict
    feature_names: tuple
    used: tuple
    seq_ids: tuple
    exposures: tuple = ()
    models: tuple = ()

    @classmethod
    def none(cls, local: pd.DataFrame | None = None) -> DetailInputs:
        """Nothing kept: no scatter plots or instrument maps (forest plots where ``local`` is)."""
        if local is None:
            local = pd.DataFrame(columns=["method", "exposure", "outcome", "sequence_index"])
        return cls(local, {}, (), (), ())


#: Pairs that get detail figures (`detail_pairs`).
DETAIL_PAIRS = 4


def make_figures(
    out_dir: str | os.PathLike,
    global_table: pd.DataFrame,
    kept: DetailInputs,
    *,
    calibration=None,
    truth: pd.DataFrame | None = None,
    level: float = 0.95,
    n_examples: int = 3,
    created: list | None = None,
) -> list[FigureFile]:
    """Draw a run's figures into ``out_dir/figures``.

    Parameters
    ----------
    out_dir : path-like
    global_table : DataFrame
        Global effects.
    kept : DetailInputs
        Local table and kept ISM arrays (per-pair figures of the `DETAIL_PAIRS` pairs of
        `detail_pairs`).
    calibration : calibration.Calibration, optional
        With ``curve_before``/``curve_after`` (``calibration.curve`` results) when fitted here.
    truth : DataFrame, optional
        Columns exposure, outcome, true_effect.
    level : float
    n_examples : int
        Sequences per MR scatter figure.
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
    emit = _Emitter(fig_dir)
    models = dict(zip(kept.feature_names, kept.models)) if kept.models else None
    method, pairs = detail_pairs(global_table, DETAIL_PAIRS)
    context = _PairContext(kept, global_table, n_examples, level)
    with plain_text():  # feature names are drawn as typed, never as mathtext
        # matplotlib spends its time laying out text, one core's work: a second process draws
        # most pairs' figures meanwhile (this one has the overview and the calibration curves)
        first = len(pairs) // 3
        later = (
            _forked(lambda: _draw_pairs(fig_dir, context, method, pairs[first:]))
            if len(pairs) > 1
            else None
        )
        try:
            _overview_figures(emit, global_table, truth, level, models)
            for e, o in pairs[:first] if later is not None else pairs:
                _pair_figures(emit, context, method, e, o)
            at = len(emit.out)
            if calibration is not None and getattr(calibration, "curve_before", None) is not None:
                curves = _calibration_curves(calibration)
                if curves:
                    emit(
                        calibration_curves(curves),
                        "calibration",
                        "Calibration curves",
                        "Observed frequency with which labels fall in central predictive "
                        "intervals, against the intervals' nominal level, before (dashed) and "
                        "after (solid) recalibration.",
                    )
            if later is not None:
                emit.out[at:at] = later.result()
                later = None
        finally:
            if later is not None:
                later.cancel()
    return emit.out


class _Emitter:
    """Saves each figure into ``fig_dir`` and lists it (``out``) in the order drawn."""

    def __init__(self, fig_dir: Path):
        self.fig_dir = fig_dir
        self.out: list[FigureFile] = []

    def __call__(self, fig, name, title, caption, section="figures", pair=None, svg=False):
        stem = slug(name) if pair is None else pair_stem(name, pair)
        path = (save_svg if svg else save)(fig, self.fig_dir / f"{stem}.{'svg' if svg else 'png'}")
        self.out.append(FigureFile(path, title, caption, section, pair))


def _draw_pairs(fig_dir: Path, context, method: str, pairs) -> list[FigureFile]:
    """The per-pair figures of ``pairs``, saved into ``fig_dir``."""
    emit = _Emitter(fig_dir)
    for e, o in pairs:
        _pair_figures(emit, context, method, e, o)
    return emit.out


class _Forked:
    """A job running in a forked child process; ``result`` waits for its return value."""

    def __init__(self, job):
        ctx = multiprocessing.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)

        def target():
            try:
                send.send((True, job()))
            except BaseException as err:  # noqa: BLE001 - reported by the parent
                send.send((False, f"{type(err).__name__}: {err}"))

        self._proc = ctx.Process(target=target, daemon=True)
        self._proc.start()
        send.close()

    def result(self):
        try:
            ok, value = self._recv.recv()
        except EOFError:
            ok, value = False, f"the process ended with status {self._proc.exitcode}"
        self._proc.join()
        if not ok:
            raise RuntimeError(f"drawing figures in a second process failed: {value}")
        return value

    def cancel(self) -> None:
        self._proc.terminate()
        self._proc.join()


def _forked(job) -> _Forked | None:
    """``job`` started in a forked process when a second core is free; else None, and the caller
    runs the work itself.

    Only on Linux (not Windows; not macOS, where forking a process with threads is unsafe), not
    inside a daemon process, and only while the load average leaves a core free: on a busy
    machine a second process only competes with the first (measured: 7.5 s against 6.3 s serial
    for the demo's figures at load 4 on 2 cores).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    if (
        cores < 2
        or sys.platform == "darwin"
        or "fork" not in multiprocessing.get_all_start_methods()
        or multiprocessing.current_process().daemon
        or os.getloadavg()[0] > cores - 0.5
    ):
        return None
    return _Forked(job)


def _overview_figures(emit, global_table: pd.DataFrame, truth, level: float, models=None) -> None:
    """The claims' overview (nodes coloured by model for a panel: ``models`` maps every feature
    to its panel label), the per-method heatmaps and the truth plot."""
    alpha = 1.0 - level
    methods = list(dict.fromkeys(global_table["method"].astype(str)))
    small = len(features_of(global_table)) <= GRAPH_MAX_FEATURES
    if "verdict" in global_table and small:
        emit(
            causal_graph(global_table, models=models),
            "causal_graph",
            "Causal graph of the claims",
            "Features as nodes; a solid arrow per causal verdict (red: positive, blue: negative "
            f"effect; width: size of the {method_label(primary_method(global_table))} headline estimate), a "
            "dashed grey arrow per undetermined pair where some estimator finds an effect. Pairs without an "
            "arrow are not causal or could not be judged (the table says why)."
            + (" Node colours: the model of each feature." if models else ""),
            section="overview",
            svg=True,
        )
    for method in methods if not small else []:
        emit(
            clustered_heatmap(global_table, method=method),
            f"heatmap_clustered_{method}",
            f"Global effects, clustered ({method})",
            f"Headline global {method} estimates (mean of the per-sample local estimates over "
            "sequences and model samples), exposures as rows and outcomes as columns, both in "
            "hierarchical-cluster order of the features' effect profiles; colour clipped at the "
            "99th percentile of |effect|; black outlines: causal verdicts; grey: not estimable. "
            "The report's zoomable map of the primary estimator shows every label.",
        )
    for method in methods if small else []:
        emit(
            global_heatmap(global_table, method, level=level),
            f"heatmap_{method}",
            f"Global effects ({method})",
            f"Headline global {method} estimates: the mean of the per-sample local estimates over "
            "sequences and model samples, with the interval from both; rows are exposures, "
            f"columns outcomes. * marks Benjamini-Hochberg q < {alpha:.2g} for this estimator "
            "(the verdict needs more: see the table); grey: not estimable (or exposure = "
            "outcome).",
        )
    if truth is not None and len(truth):
        first = primary_method(global_table)
        j = truth_join(global_table, truth, first)
        fig = truth_scatter(
            j["true_effect"],
            j["estimate"],
            j["ci_low"],
            j["ci_high"],
            [f"{e}->{o}" for e, o in zip(j["exposure"], j["outcome"])],
            title=f"Estimated ({first}) vs true global effects",
        )
        emit(
            fig,
            "truth",
            "Estimated vs true global effects",
            f"Each point is one (exposure, outcome) pair: the planted effect against the {first} "
            f"headline estimate with its {level:.0%} interval. Points on the dotted line are "
            "recovered exactly.",
        )


@dataclass(frozen=True)
class _PairContext:
    kept: DetailInputs
    global_table: pd.DataFrame
    n_examples: int
    level: float

    def index(self, e: str, o: str):
        """(position of e and o on the arrays' feature axis, e's instrument-mask index) or None."""
        k = self.kept
        at = {f: i for i, f in enumerate(k.used)}
        names = list(k.feature_names)
        if e not in names or o not in names or e not in k.exposures:
            return None
        ie, io = names.index(e), names.index(o)
        if ie not in at or io not in at:
            return None
        return at[ie], at[io], list(k.exposures).index(e)


def _pair_figures(emit, c: _PairContext, method: str, e: str, o: str) -> None:
    """MR scatter, instrument map and forest plot of one pair."""
    pair = (e, o)
    a = c.kept.arrays
    if "mean" in a and len(a["sequence_index"]):
        fig = _scatter_panel(c, e, o)
        if fig is not None:
            emit(
                fig,
                f"scatter_{e}__{o}",
                f"MR scatter: {e} -> {o}",
                "Instruments (mutations significant for the exposure) of example sequences: "
                "effect on the outcome against effect on the exposure, with SEs as error bars, "
                "oriented so the exposure effect is positive. Blue: IVW slope; red dashed: "
                "MR-Egger fit.",
                section="pair",
                pair=pair,
            )
        fig = _instrument_map(c, e, o)
        if fig is not None:
            emit(
                fig,
                f"instruments_{e}__{o}",
                f"Instrument map: {e} -> {o}",
                f"Every point mutation of the sequence with the most {e} instruments: its effect "
                f"on {e} (top) and on {o} (bottom) by position, coloured by the new base; the "
                "grey line is the mean over the three new bases (the ISM track); black-edged "
                "dots are the instruments.",
                section="pair",
                pair=pair,
            )
    local = c.kept.local
    rows = local[
        (local["method"].astype(str) == method)
        & (local["exposure"].astype(str) == e)
        & (local["outcome"].astype(str) == o)
    ].sort_values("sequence_index")
    g = c.global_table[
        (c.global_table["method"] == method)
        & (c.global_table["exposure"] == e)
        & (c.global_table["outcome"] == o)
    ]
    if not len(rows) or not len(g):
        return
    g = g.iloc[0]
    fig = forest(
        rows["sequence_id"].astype(str).tolist(),
        rows["estimate"],
        rows["ci_low"],
        rows["ci_high"],
        pooled=(
            g.get("meta_estimate", g["estimate"]),
            g.get("meta_ci_low", g["ci_low"]),
            g.get("meta_ci_high", g["ci_high"]),
        ),
        prediction=(g["pi_low"], g["pi_high"]),
        title=f"{e} -> {o} ({method})",
    )
    emit(
        fig,
        f"forest_{e}__{o}_{method}",
        f"Forest plot: {e} -> {o}",
        f"Local {method} estimates per sequence with {c.level:.0%} CIs; the diamond is the "
        "random-effects meta-analysis over these sequences, the line through it its "
        "prediction interval. The headline global interval is wider: it also counts the "
        "model's uncertainty, which every local estimate shares.",
        section="pair",
        pair=pair,
    )


def _instrument_map(c: _PairContext, e: str, o: str):
    """The instrument map of the kept sequence with the most instruments of ``e``."""
    a, at = c.kept.arrays, c.index(e, o)
    if at is None or "alt_bases" not in a:
        return None
    ue, uo, ek = at
    mask = np.asarray(a["instrument_mask"])[..., ek]  # (n, W, 3)
    counts = mask.reshape(len(mask), -1).sum(axis=1)
    if not len(counts) or counts.max() == 0:
        return None
    r = int(np.argmax(counts))
    s = int(a["sequence_index"][r])
    return instrument_map(
        np.asarray(a["positions"]),
        np.asarray(a["alt_bases"][r]),
        [(e, a["mean"][r][..., ue]), (o, a["mean"][r][..., uo])],
        mask[r],
        title=f"{c.kept.seq_ids[s]}: {int(counts[r])} instruments for {e}",
    )


def _scatter_panel(c: _PairContext, e: str, o: str):
    """MR scatter plots of up to ``n_examples`` kept sequences with instruments for ``e``."""
    a, at = c.kept.arrays, c.index(e, o)
    if at is None:
        return None
    ue, uo, ek = at
    local = c.kept.local
    sel = local[(local["exposure"].astype(str) == e) & (local["outcome"].astype(str) == o)]
    with_egger = "egger" in set(c.global_table["method"].astype(str))
    panels = []
    for row, s in enumerate(a["sequence_index"]):
        by, sy = a["mean"][row][..., uo], a["se"][row][..., uo]
        mask = a["instrument_mask"][row][..., ek] & np.isfinite(by) & np.isfinite(sy) & (sy > 0)
        if mask.sum() < 1:
            continue
        loc = sel[sel["sequence_index"] == s]
        ivw = loc.loc[loc["method"].astype(str) == "ivw", "estimate"]
        egg = loc[loc["method"].astype(str) == "egger"]
        egger = (
            (float(egg["estimate"].iloc[0]), float(egg["intercept"].iloc[0]))
            if with_egger and len(egg)
            else None
        )
        panels.append((row, s, mask, float(ivw.iloc[0]) if len(ivw) else None, egger))
        if len(panels) >= c.n_examples:
            break
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4), squeeze=False)
    for ax, (r, s, mask, ivw, egger) in zip(axes[0], panels):
        mean, se = a["mean"][r], a["se"][r]
        mr_scatter(
            mean[..., ue][mask],
            se[..., ue][mask],
            mean[..., uo][mask],
            se[..., uo][mask],
            ivw=ivw,
            egger=egger,
            exposure=e,
            outcome=o,
            title=f"{c.kept.seq_ids[int(s)]}",
            ax=ax,
        )
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
