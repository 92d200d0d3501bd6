"""Overview of the claims: a causal graph for small runs, a clustered heatmap at zoo scale.

* :func:`causal_graph` (up to :data:`GRAPH_MAX_FEATURES` features): features as nodes on a circle,
  one arrow per causal claim (colour: sign, width: size of the effect), dashed grey arrows for
  undetermined pairs where some estimator finds an effect.
* :func:`clustered_heatmap` (any size; 164 and 919 features stay readable): the primary
  estimator's global effects, rows and columns in hierarchical-cluster order, labels where they fit,
  claimed cells outlined.
* :func:`heatmap_payload`: the same matrix for the report's zoomable canvas.

Approximation named: the cluster order comes from average-linkage clustering of each feature's
effect profile (its row and its column of the matrix, missing effects as 0); it groups features
that act alike, it is not a model of the biology.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from deepmr_kipoi.mr.methods import method_label
from deepmr_kipoi.report.headline import primary_method
from deepmr_kipoi.report.table import effect_matrix

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch

#: Runs with at most this many features get the causal graph; larger ones the clustered heatmap.
GRAPH_MAX_FEATURES = 50
#: Colours of positive and negative causal effects (as the heatmaps' RdBu_r ends).
POSITIVE, NEGATIVE, UNDETERMINED = "#b2182b", "#2166ac", "#8c8c8c"
#: Node fills of a model panel's members, in label order (a colour-blind safe set, Okabe-Ito).
MODEL_COLOURS = ("#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7")
#: Verdict codes of the heatmap payload.
VERDICT_CODES = {"not causal": 1, "undetermined": 2, "causal": 3}


def _pyplot():
    """matplotlib's pyplot on the Agg backend, imported when a figure is drawn: the report's
    tables and heatmap payload need no matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pair_rows(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """The method's rows with ``any_significant`` (some method row of the pair significant)."""
    t = table.astype({"exposure": str, "outcome": str})
    sig = (
        t.assign(_s=t["significant"].fillna(False).astype(bool))
        .groupby(["exposure", "outcome"], sort=False)["_s"]
        .any()
    )
    rows = t[t["method"].astype(str) == method]
    return rows.assign(
        any_significant=[
            bool(sig.get((e, o), False)) for e, o in zip(rows["exposure"], rows["outcome"])
        ]
    )


def features_of(table: pd.DataFrame) -> list[str]:
    """Exposures and outcomes of a table, in order of first appearance."""
    return list(dict.fromkeys([*table["exposure"].astype(str), *table["outcome"].astype(str)]))


def graph_edges(table: pd.DataFrame, method: str | None = None) -> pd.DataFrame:
    """The arrows of the causal graph.

    Parameters
    ----------
    table : DataFrame
        Global effects with ``verdict``.
    method : str, optional
        Estimator whose estimates size the arrows (default: the primary one).

    Returns
    -------
    DataFrame
        Columns exposure, outcome, estimate, verdict: every causal pair, and every undetermined
        pair where at least one estimator is significant.
    """
    rows = _pair_rows(table, method or primary_method(table))
    verdict = rows["verdict"].astype(str)
    keep = (verdict == "causal") | ((verdict == "undetermined") & rows["any_significant"])
    return rows.loc[keep, ["exposure", "outcome", "estimate", "verdict"]].reset_index(drop=True)


def causal_graph(
    table: pd.DataFrame, *, method: str | None = None, title: str = "", models=None
) -> Figure:
    """The causal graph of a run's claims.

    Parameters
    ----------
    table : DataFrame
        Global effects with ``verdict`` (at most about :data:`GRAPH_MAX_FEATURES` features).
    method : str, optional
        Estimator whose estimates size the arrows (default: IVW when run).
    title : str
    models : mapping of str to str, optional
        The model (panel label) of every feature: nodes are filled with their model's colour and
        the legend names the models (model panels).

    Returns
    -------
    Figure
        Nodes on a circle; solid arrows for causal pairs (red positive, blue negative, width by
        |estimate| relative to the largest claim), dashed grey for undetermined pairs with an
        effect. Every node and arrow has a ``gid`` (``node:<name>``, ``edge:<x>|<y>``).
    """
    plt = _pyplot()

    method = method or primary_method(table)
    names = features_of(table)
    edges = graph_edges(table, method)
    n = len(names)
    angle = np.pi / 2 - 2 * np.pi * np.arange(n) / max(n, 1)
    xy = {name: (np.cos(a), np.sin(a)) for name, a in zip(names, angle)}
    size = min(11.0, 4.5 + 0.13 * n)
    fig, ax = plt.subplots(figsize=(size, size))
    causal = edges[edges["verdict"] == "causal"]
    node_r = 0.06 if n <= 20 else 0.035
    _draw_edges(ax, edges, xy, node_r)
    claimed = set(causal["exposure"]) | set(causal["outcome"])
    labels = list(dict.fromkeys(models.get(name, "") for name in names)) if models else []
    fill = {lab: MODEL_COLOURS[i % len(MODEL_COLOURS)] for i, lab in enumerate(labels)}
    for name, a in zip(names, angle):
        colour = fill.get((models or {}).get(name), "#ffffff")
        _draw_node(ax, name, a, node_r, small=n <= 20, claimed=name in claimed, fill=colour)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.35, 1.35)
    ax.set_aspect("equal")
    ax.axis("off")
    handles = [
        plt.Line2D([], [], color=POSITIVE, lw=3, label="causal, positive"),
        plt.Line2D([], [], color=NEGATIVE, lw=3, label="causal, negative"),
        plt.Line2D([], [], color=UNDETERMINED, lw=1, ls="--", label=UNDETERMINED_LABEL),
    ]
    handles += [  # a panel: the model of each node
        plt.Line2D([], [], ls="", marker="o", ms=9, color=fill[lab], label=f"model {lab}")
        for lab in labels
    ]
    ax.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, -0.06),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    plural = "" if len(causal) == 1 else "s"
    ax.set_title(
        title
        or f"Causal claims ({len(causal)} causal pair{plural}; arrow width: "
        f"|{method_label(method)} effect|)",
        fontsize=10,
    )
    return fig


#: Legend entry of the dashed arrows.
UNDETERMINED_LABEL = "undetermined (an estimator finds an effect)"


def _draw_edges(ax, edges: pd.DataFrame, xy: dict, node_r: float) -> None:
    """One arrow per edge: causal ones solid, coloured by sign, as wide as the estimate relative
    to the largest claim; undetermined ones dashed grey."""
    from matplotlib.patches import FancyArrowPatch

    causal = edges[edges["verdict"] == "causal"]
    biggest = float(causal["estimate"].abs().max()) if len(causal) else 1.0
    for r in edges.itertuples(index=False):
        is_causal = r.verdict == "causal"
        colour = (POSITIVE if r.estimate > 0 else NEGATIVE) if is_causal else UNDETERMINED
        width = 1.2 + 4.5 * abs(r.estimate) / biggest if is_causal and biggest > 0 else 1.0
        arrow = FancyArrowPatch(
            xy[r.exposure],
            xy[r.outcome],
            arrowstyle="-|>",
            mutation_scale=10 + 2 * width,
            lw=width,
            color=colour,
            ls="-" if is_causal else (0, (4, 3)),
            connectionstyle="arc3,rad=0.12",
            shrinkA=0,
            shrinkB=0,
            zorder=2,
            patchA=None,
            patchB=None,
            alpha=0.95 if is_causal else 0.7,
        )
        arrow.set_gid(f"edge:{r.exposure}|{r.outcome}")
        ax.add_patch(arrow)
        _shorten(arrow, xy[r.exposure], xy[r.outcome], node_r)


def _draw_node(
    ax, name: str, a: float, node_r: float, *, small: bool, claimed: bool, fill: str = "#ffffff"
) -> None:
    """A feature's node at angle ``a`` on the unit circle, filled with ``fill`` (its model's colour
    in a panel), and its label outside it (bold and dark when the feature is in a claim)."""
    x, y = np.cos(a), np.sin(a)
    dot = ax.scatter(
        [x],
        [y],
        s=(420 if small else 120),
        zorder=3,
        color=fill,
        edgecolors="#333333" if claimed else "#aaaaaa",
        linewidths=1.6 if claimed else 0.8,
    )
    dot.set_gid(f"node:{name}")
    lx = 1.0 + node_r * 2.2
    ax.text(
        x * lx,
        y * lx,
        name,
        fontsize=9 if small else 7,
        ha="left" if np.cos(a) > 0.2 else ("right" if np.cos(a) < -0.2 else "center"),
        va="bottom" if np.sin(a) > 0.2 else ("top" if np.sin(a) < -0.2 else "center"),
        fontweight="bold" if claimed else "normal",
        rotation=0,
        zorder=4,
        gid=f"label:{name}",
    )


def _shorten(arrow: FancyArrowPatch, a, b, r: float) -> None:
    """Start and end the arrow at the node circles' rims, not their centres."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    length = float(np.hypot(*d)) or 1.0
    arrow.set_positions(tuple(a + d * (r / length)), tuple(b - d * (r * 1.2 / length)))


def cluster_order(mat: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Rows and columns of an effect matrix in hierarchical-cluster order.

    Parameters
    ----------
    mat : DataFrame, shape (E, O)

    Returns
    -------
    rows, columns : list of str
        Average-linkage (Euclidean) leaf order of each feature's effect profile, missing effects
        as 0. Features that are both exposure and outcome are clustered once, on their row and
        column together, and keep one order on both axes (the diagonal stays aligned).
    """
    from scipy.cluster.hierarchy import leaves_list, linkage

    values = np.nan_to_num(mat.to_numpy(dtype=float))
    rows, cols = list(mat.index), list(mat.columns)

    def order(profiles: np.ndarray) -> np.ndarray:
        if len(profiles) < 3:
            return np.arange(len(profiles))
        return leaves_list(linkage(profiles, method="average", metric="euclidean"))

    if set(rows) == set(cols):
        at = {c: j for j, c in enumerate(cols)}
        square = values[:, [at[r] for r in rows]]
        joint = [rows[i] for i in order(np.hstack([square, square.T]))]
        return joint, joint
    return [rows[i] for i in order(values)], [cols[j] for j in order(values.T)]


def _ordered_matrices(table: pd.DataFrame, method: str):
    rows = _pair_rows(table, method)
    mat = effect_matrix(rows, method)
    order_r, order_c = cluster_order(mat)
    mat = mat.reindex(index=order_r, columns=order_c)
    codes = rows.assign(
        _v=rows["verdict"].astype(str).map(VERDICT_CODES).fillna(0) if "verdict" in rows else 0
    )
    verdict = effect_matrix(codes, method, "_v").reindex(index=order_r, columns=order_c)
    return mat, verdict.fillna(0).to_numpy(dtype=np.int64)


def clip_value(values: np.ndarray) -> float:
    """The colour scale's end: the 99th percentile of |effect| (one outlier washes out nothing)."""
    finite = np.abs(values[np.isfinite(values)])
    if not finite.size or finite.max() == 0:
        return 1.0
    return float(np.percentile(finite, 99)) or float(finite.max())


def clustered_heatmap(table: pd.DataFrame, *, method: str | None = None, title: str = "") -> Figure:
    """The global effects of a large run as a clustered, labelled heatmap.

    Parameters
    ----------
    table : DataFrame
        Global effects (with ``verdict`` for the claimed cells).
    method : str, optional
        Estimator shown (default: the primary one).
    title : str

    Returns
    -------
    Figure
        Rows exposures, columns outcomes, both in cluster order (:func:`cluster_order`); colour
        clipped at the 99th percentile of |effect|; every label where rows are at least 7 px apart,
        else every k-th; claimed (causal) cells outlined in black.
    """
    from deepmr_kipoi.report.drawing import symmetric_norm

    plt = _pyplot()

    method = method or primary_method(table)
    mat, verdict = _ordered_matrices(table, method)
    n_r, n_c = mat.shape
    height = min(16.0, max(5.0, 2.5 + 0.09 * n_r))
    width = min(18.0, max(6.0, 3.5 + 0.09 * n_c))
    fig, ax = plt.subplots(figsize=(width, height))
    values = mat.to_numpy(dtype=float)
    vmax = clip_value(values)
    norm = symmetric_norm(np.clip(values, -vmax, vmax))
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#e6e6e6")
    im = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest"
    )
    dpi = 110
    for axis, labels, inches, n in (
        ("y", mat.index, height * 0.8, n_r),
        ("x", mat.columns, width * 0.8, n_c),
    ):
        step = int(np.ceil(n * 7.0 / (inches * dpi))) or 1
        ticks = np.arange(0, n, step)
        fontsize = float(np.clip(inches * dpi / n * step * 0.72, 3.5, 8))
        if axis == "y":
            ax.set_yticks(ticks, [labels[i] for i in ticks], fontsize=fontsize)
        else:
            ax.set_xticks(ticks, [labels[i] for i in ticks], fontsize=fontsize, rotation=90)
    rr, cc = np.nonzero(verdict == VERDICT_CODES["causal"])
    ax.scatter(
        cc,
        rr,
        s=max(6.0, 2400.0 / max(n_r, n_c)),
        facecolors="none",
        edgecolors="black",
        linewidths=0.8,
        marker="s",
    )
    ax.set_xlabel("outcome (cluster order)")
    ax.set_ylabel("exposure (cluster order)")
    ax.set_title(
        title or f"Global effects ({method}), clustered; outlined: causal claims", fontsize=10
    )
    fig.colorbar(im, ax=ax, shrink=0.6, label=f"global effect (clipped at ±{vmax:.3g})")
    return fig


def heatmap_payload(table: pd.DataFrame, *, method: str | None = None) -> dict:
    """The clustered effect matrix for the report's zoomable canvas.

    Parameters
    ----------
    table : DataFrame
    method : str, optional

    Returns
    -------
    dict
        ``rows``, ``cols`` (names in cluster order), ``vmax`` (colour clip), ``method``,
        ``values``: base64 of int8 codes, row-major (effect / vmax * 127, clipped; -128 where
        missing), ``verdict``: base64 of uint8 codes (:data:`VERDICT_CODES`, 0 where absent).
    """
    method = method or primary_method(table)
    mat, verdict = _ordered_matrices(table, method)
    values = mat.to_numpy(dtype=float)
    vmax = clip_value(values)
    q = np.clip(np.round(np.nan_to_num(values) / vmax * 127), -127, 127).astype(np.int8)
    q[~np.isfinite(values)] = -128
    return {
        "method": method,
        "rows": [str(x) for x in mat.index],
        "cols": [str(x) for x in mat.columns],
        "vmax": vmax,
        "values": base64.b64encode(q.tobytes()).decode("ascii"),
        "verdict": base64.b64encode(verdict.astype(np.uint8).tobytes()).decode("ascii"),
    }
