"""The run's figures and its self-contained HTML report (figures embedded as base64 PNG).

The report states the question, the headline (estimated against true effects when the truth is
known, else the strongest effects), the settings, the global table, the figures, diagnostics
(instrument counts, Egger intercepts, I^2_GX, heterogeneity), calibration, warnings and the
assumptions in plain words, and the provenance of the run. It loads nothing from outside the file.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import results

ASSUMPTIONS = (
    ("Local linearity", "each local effect is the slope of the model's outcome on its exposure "
     "around one reference sequence; far from it, the relationship may differ."),
    ("Exclusion restriction", "a mutation that changes the outcome other than through the exposure "
     "(pleiotropy) biases IVW; MR-Egger, the median and the mode estimators relax this."),
    ("Model quality", "the effects are those the model has learned, with its errors and the biases "
     "of its training data; they are hypotheses about biology, not measurements."),
    ("Calibration", "p-values and intervals are only as good as the model's uncertainty; "
     "calibrate it on held-out labelled data."),
    ("Direction", "MR on one model does not tell from the data alone which feature drives the "
     "other; compare both directions and use prior knowledge."),
)  # fmt: skip

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.headline{background:#eef5ff;border-left:4px solid #1f77b4;padding:.6em 1em}
.warn{background:#fff6e5;border-left:4px solid #f0a000;padding:.4em 1em}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555}img{max-width:100%}
.small{font-size:.8em;color:#666}
"""


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


def _slug(text: str) -> str:
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
    calibration : pipeline calibration record, optional
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
    from deepmr_kipoi import plots

    fig_dir = Path(out_dir) / "figures"
    if not fig_dir.exists():
        fig_dir.mkdir(parents=True)
        if created is not None:
            created.append(fig_dir)
    out: list[FigureFile] = []
    alpha = 1.0 - level

    def emit(fig, name, title, caption):
        path = plots.save(fig, fig_dir / f"{_slug(name)}.png")
        out.append(FigureFile(path, title, caption))

    if truth is not None and len(truth):
        first = top_pairs(glob, 1)[0]
        j = _truth_join(glob, truth, first)
        fig = plots.truth_scatter(
            j["true_effect"], j["estimate"], j["ci_low"], j["ci_high"],
            [f"{e}->{o}" for e, o in zip(j["exposure"], j["outcome"])],
            title=f"Estimated ({first}) vs true global effects",
        )  # fmt: skip
        emit(fig, "truth", "Estimated vs true global effects",
             f"Each point is one (exposure, outcome) pair: the planted effect against the {first} "
             f"global estimate with its {level:.0%} CI. Points on the dotted line are recovered "
             "exactly.")  # fmt: skip

    for method in dict.fromkeys(glob["method"].astype(str)):
        emit(plots.global_heatmap(glob, method, level=level), f"heatmap_{method}",
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
        fig = plots.forest(
            rows["sequence_id"].astype(str).tolist(), rows["estimate"], rows["ci_low"],
            rows["ci_high"], pooled=(g["estimate"], g["ci_low"], g["ci_high"]),
            prediction=(g["pi_low"], g["pi_high"]), title=f"{e} -> {o} ({method})",
        )  # fmt: skip
        emit(fig, f"forest_{e}__{o}_{method}", f"Forest plot: {e} -> {o}",
             f"Local {method} estimates per sequence with {level:.0%} CIs; the diamond is the "
             "random-effects global effect, the line through it its prediction interval.")  # fmt: skip

    if calibration is not None and getattr(calibration, "curve_before", None) is not None:
        curves = _calibration_curves(calibration)
        if curves:
            emit(plots.calibration_curves(curves), "calibration", "Calibration curves",
                 "Observed frequency with which labels fall in central predictive intervals, "
                 "against the intervals' nominal level, before (dashed) and after (solid) "
                 "recalibration.")  # fmt: skip
    return out


def _truth_join(glob: pd.DataFrame, truth: pd.DataFrame, method: str) -> pd.DataFrame:
    cols = ["exposure", "outcome", "estimate", "ci_low", "ci_high"]
    cols += [c for c in ("model_ci_low", "model_ci_high") if c in glob.columns]
    g = glob[glob["method"] == method][cols]
    t = truth[["exposure", "outcome", "true_effect"]].astype({"exposure": str, "outcome": str})
    return g.merge(t, on=["exposure", "outcome"], how="inner")


def _scatter_panel(arrays, local, e, o, *, feature_names, used, seq_ids, exposures, n_examples,
                   with_egger):  # fmt: skip
    from matplotlib import pyplot as plt

    from deepmr_kipoi import plots

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
        plots.mr_scatter(
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


# ----------------------------------------------------------------------------------------------
# HTML


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _e(x)
    if not np.isfinite(v):
        return "&ndash;"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"


def _fmt_p(x) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return _fmt(x)
    return "&lt;1e-300" if v == 0.0 else _fmt(v)


def table_html(df: pd.DataFrame, columns: Sequence[str], left: Sequence[str] = ()) -> str:
    """An HTML table of some columns of ``df`` (values escaped, numbers formatted)."""
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in columns)
    rows = []
    for _, r in df.iterrows():
        cells = "".join(
            f'<td class="l">{_e(r[c])}</td>' if c in left
            else f"<td>{_fmt_p(r[c]) if c in ('pvalue', 'qvalue') else _fmt(r[c])}</td>"
            for c in columns
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(Path(path).stem)}" src="data:image/png;base64,{data}">'


#: True effects at least this fraction of the largest |true effect| count as planted (non-zero);
#: oracle truths of unrelated pairs are tiny but not exactly 0.
STRONG_FRACTION = 0.05


def truth_summary(glob: pd.DataFrame, truth: pd.DataFrame, method: str) -> dict:
    """How well estimated global effects recover known ones.

    Parameters
    ----------
    glob : DataFrame
    truth : DataFrame
        Columns exposure, outcome, true_effect.
    method : str

    Returns
    -------
    dict
        ``n`` pairs compared; Pearson ``r``; ``n_strong`` planted effects (``|true| >=
        STRONG_FRACTION * max |true|``), of which ``sign_agreement`` have an estimate of their
        sign and ``significant`` a significant one; ``max_abs_null``, the largest |estimate| among
        the other pairs; ``coverage`` (share of true effects inside the CI); ``model_coverage``
        (the same for the model-aware interval, NaN where the run has none); ``mae`` (mean
        absolute error); ``strong``: rows (exposure, outcome, true_effect, estimate, ci_low,
        ci_high) of the planted effects.
    """
    j = _truth_join(glob, truth, method)
    j = j[np.isfinite(j["estimate"]) & np.isfinite(j["true_effect"])].reset_index(drop=True)
    t, e = j["true_effect"].to_numpy(float), j["estimate"].to_numpy(float)
    strong = np.abs(t) >= STRONG_FRACTION * np.abs(t).max() if len(t) and np.abs(t).max() > 0 \
        else np.zeros(len(t), dtype=bool)
    r = float(np.corrcoef(t, e)[0, 1]) if len(j) > 2 and np.std(t) > 0 and np.std(e) > 0 else np.nan
    lo, hi = j["ci_low"].to_numpy(float), j["ci_high"].to_numpy(float)
    inside = (lo <= t) & (t <= hi)
    model_coverage = np.nan
    if "model_ci_low" in j and len(j) and np.isfinite(j["model_ci_low"].to_numpy(float)).all():
        mlo, mhi = j["model_ci_low"].to_numpy(float), j["model_ci_high"].to_numpy(float)
        model_coverage = float(((mlo <= t) & (t <= mhi)).mean())
    sig = ~((lo <= 0) & (0 <= hi))
    return {
        "method": method,
        "n": int(len(j)),
        "r": r,
        "n_strong": int(strong.sum()),
        "sign_agreement": int(np.sum(np.sign(e[strong]) == np.sign(t[strong]))),
        "significant": int(np.sum(sig[strong] & (np.sign(e[strong]) == np.sign(t[strong])))),
        "max_abs_null": float(np.max(np.abs(e[~strong]))) if (~strong).any() else np.nan,
        "coverage": float(inside.mean()) if len(j) else np.nan,
        "model_coverage": model_coverage,
        "mae": float(np.mean(np.abs(e - t))) if len(j) else np.nan,
        "strong": j.loc[strong, ["exposure", "outcome", "true_effect", "estimate", "ci_low",
                                 "ci_high"]].to_dict(orient="records"),  # fmt: skip
    }


def truth_headline(s: dict, level: float = 0.95, html_arrow: bool = False) -> str:
    """Plain-words summary of :func:`truth_summary` (the demo's headline)."""
    arrow = "&rarr;" if html_arrow else "->"
    esc = _e if html_arrow else str
    planted = "; ".join(
        f"{esc(r['exposure'])} {arrow} {esc(r['outcome'])}: true {r['true_effect']:.3g}, estimated "
        f"{r['estimate']:.3g} [{r['ci_low']:.3g}, {r['ci_high']:.3g}]" for r in s["strong"]
    )
    return (
        f"Planted effects ({s['method']}, {level:.0%} CI): {planted or 'none'}. "
        f"{s['sign_agreement']} of {s['n_strong']} have the right sign, {s['significant']} "
        f"significantly. Other pairs (true effect near 0): largest |estimate| "
        f"{s['max_abs_null']:.3g}. Over all {s['n']} pairs: r = {s['r']:.3f}, mean absolute error "
        f"{s['mae']:.3g}, {s['coverage']:.0%} of true effects inside the CI"
        + (f" ({s['model_coverage']:.0%} inside the model-aware interval)."
           if np.isfinite(s.get("model_coverage", np.nan)) else ".")
    )


def _headline(glob: pd.DataFrame, truth, level: float) -> str:
    method, pairs = top_pairs(glob, 3)
    if truth is not None and len(truth):
        return "Against the planted truth. " + truth_headline(
            truth_summary(glob, truth, method), level, html_arrow=True
        )
    sub = glob[glob["method"] == method]
    n_sig = int(sub["significant"].fillna(False).astype(bool).sum())
    parts = []
    for e, o in pairs:
        r = sub[(sub["exposure"] == e) & (sub["outcome"] == o)].iloc[0]
        parts.append(f"{_e(e)} &rarr; {_e(o)}: {_fmt(r['estimate'])} "
                     f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]")  # fmt: skip
    return (f"{n_sig} of {len(sub)} exposure&ndash;outcome pairs have a significant global "
            f"{method} effect (BH q &lt; {1 - level:.2g}). Strongest: " + "; ".join(parts) + ".")  # fmt: skip


def _diagnostics(glob: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for method, sub in glob.groupby("method", sort=False):
        rows.append({
            "method": method,
            "pairs": len(sub),
            "pairs with >= 3 sequences": int((sub["k"] >= 3).sum()),
            "median sequences used": float(np.nanmedian(sub["k"])) if len(sub) else np.nan,
            "median instruments": float(np.nanmedian(sub["median_instruments"]))
            if sub["median_instruments"].notna().any() else np.nan,
            "median I2 (%)": float(np.nanmedian(sub["i2"])) if sub["i2"].notna().any() else np.nan,
            "median tau2": float(np.nanmedian(sub["tau2"])) if sub["tau2"].notna().any() else np.nan,
            "median I2_GX (%)": float(np.nanmedian(sub["i2_gx_median"]))
            if sub["i2_gx_median"].notna().any() else np.nan,
            "Egger intercepts != 0 (share)": float(np.nanmean(sub["egger_intercept_sig_frac"]))
            if sub["egger_intercept_sig_frac"].notna().any() else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


def _calibration_html(cal) -> str:
    if cal is None:
        return "<p>No calibration was applied: effect SEs are the raw spread over samples.</p>"
    shown = ", ".join(cal.features[:20]) + (" ..." if len(cal.features) > 20 else "")
    lines = [f"<p>Source: {_e(cal.source)}. Features calibrated: {_e(shown)}.</p>"]
    if cal.metrics_before is not None and cal.metrics_after is not None:
        before = cal.metrics_before.table().iloc[[-1]].assign(feature="overall, before")
        after = cal.metrics_after.table().iloc[[-1]].assign(feature="overall, after")
        df = pd.concat([before, after], ignore_index=True)
        lines.append(table_html(df, list(df.columns), left=["feature"]))
        lines.append('<p class="small">Miscalibration areas: mean |observed - expected| over '
                     "levels (0 = calibrated); coverage_X: share of labels inside the central X% "
                     "predictive interval.</p>")  # fmt: skip
    scales = ", ".join(f"{f}: {s:.3g}" for f, s in cal.scale_items()[:20])
    lines.append(f"<p>SE scale applied to effects: {_e(scales)}.</p>")
    return "".join(lines)


def write_report(
    path: str | os.PathLike,
    run_info: dict,
    glob: pd.DataFrame,
    figures: Sequence[FigureFile],
    *,
    calibration=None,
    truth: pd.DataFrame | None = None,
    max_rows: int = 60,
) -> Path:
    """Write the self-contained HTML report of a run atomically.

    Parameters
    ----------
    path : path-like
        Destination ``report.html``.
    run_info : dict
        What ``run.json`` holds (config, model identity, features, sequences, warnings, versions).
    glob : DataFrame
        Global effects.
    figures : sequence of FigureFile
        Embedded as base64 PNG data URIs.
    calibration : pipeline calibration record, optional
    truth : DataFrame, optional
        Known global effects (columns exposure, outcome, true_effect) for the headline.
    max_rows : int
        Rows of the global table shown (smallest p-values first; the CSV has all).

    Returns
    -------
    Path
    """
    cfg = run_info.get("config", {})
    level = float(cfg.get("level", 0.95))
    model = run_info.get("model", {})
    feats = run_info.get("features", {})
    seqs = run_info.get("sequences", {})
    ex, oc = feats.get("exposures", []), feats.get("outcomes", [])

    def names(xs):
        return _e(", ".join(xs[:12]) + (f" ... ({len(xs)} in all)" if len(xs) > 12 else ""))

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Deep MR report: {_e(model.get('name', ''))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Deep MR report: {_e(model.get('name', ''))}</h1>",
        f'<p class="small">deepmr_kipoi {_e(run_info.get("deepmr_kipoi_version", ""))}, '
        f'run {_e(run_info.get("started", ""))}</p>',
        f'<div class="headline"><p>{_headline(glob, truth, level)}</p></div>',
        "<h2>Question</h2>",
        f"<p>Which causal effects between its output features has the model "
        f"<b>{_e(model.get('name', ''))}</b> learned? Every point mutation of "
        f"{_e(seqs.get('n', '?'))} reference sequences of {_e(seqs.get('length', '?'))} bp "
        f"(window {_e(seqs.get('window', ''))}) is an instrument when it changes the exposure "
        "significantly; Mendelian randomization per sequence gives local effects of each exposure "
        "on each outcome, and a random-effects meta-analysis over sequences gives global "
        f"effects.</p><p>Exposures: {names(ex)}.<br>Outcomes: {names(oc)}.</p>",
        "<h2>Settings</h2>",
        _settings_table(cfg, model),
        "<h2>Global effects</h2>",
    ]
    shown = glob.sort_values("pvalue", kind="stable").head(max_rows)
    cols = ["exposure", "outcome", "method", "estimate", "se", "ci_low", "ci_high", "pvalue",
            "qvalue", "tau2", "i2", "pi_low", "pi_high", "k", "median_instruments"]  # fmt: skip
    if "model_se" in glob and np.isfinite(glob["model_se"].to_numpy(float)).any():
        cols[7:7] = ["model_ci_low", "model_ci_high"]
    if truth is not None and len(truth):
        t = truth[["exposure", "outcome", "true_effect"]].astype({"exposure": str, "outcome": str})
        shown = shown.merge(t, on=["exposure", "outcome"], how="left")
        cols.insert(3, "true_effect")
    parts.append(table_html(shown, cols, left=["exposure", "outcome", "method"]))
    parts.append(f'<p class="small">{min(len(glob), max_rows)} of {len(glob)} rows, smallest '
                 "p-values first; all rows in global_effects.csv. k: sequences in the "
                 "meta-analysis; pi: prediction interval; q: Benjamini-Hochberg; model_ci: the "
                 "model-aware interval (meta-analysis variance plus the leave-one-member-out "
                 "jackknife variance of the ensemble), which also counts the error every sequence "
                 "shares through the one trained model.</p>")  # fmt: skip
    parts.append("<h2>Figures</h2>")
    for fig in figures:
        parts.append(f"<figure>{_img(fig.path)}<figcaption><b>{_e(fig.title)}.</b> "
                     f"{_e(fig.caption)}</figcaption></figure>")  # fmt: skip
    parts.append("<h2>Diagnostics</h2>")
    diag = _diagnostics(glob)
    parts.append(table_html(diag, list(diag.columns), left=["method"]))
    parts.append('<p class="small">I2: between-sequence heterogeneity of the local effects. '
                 "I2_GX below 90% dilutes Egger slopes. Egger intercepts != 0: share of sequences "
                 f"whose Egger intercept is significant at {1 - level:.2g} (directional "
                 "pleiotropy).</p>")  # fmt: skip
    parts.append("<h2>Calibration</h2>")
    parts.append(_calibration_html(calibration))
    parts.append("<h2>Warnings</h2>")
    warns = run_info.get("warnings", [])
    if warns:
        parts.append("<ul>" + "".join(f'<li class="warn">{_e(w)}</li>' for w in warns) + "</ul>")
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Assumptions</h2><ul>")
    parts += [f"<li><b>{_e(a)}</b>: {_e(b)}</li>" for a, b in ASSUMPTIONS]
    parts.append("</ul><h2>Provenance</h2>")
    prov = {
        "model": model.get("name"),
        "model source": model.get("source"),
        "weights": "; ".join(f"{w.get('path')} (md5 {w.get('md5')})"
                             for w in model.get("weights", []) or []) or None,  # fmt: skip
        "uncertainty samples (S)": model.get("n_samples"),
        "config hash": run_info.get("config_hash"),
        "seed": cfg.get("seed"),
        "versions": ", ".join(f"{k} {v}" for k, v in run_info.get("versions", {}).items()),
        "platform": run_info.get("platform"),
    }
    parts.append(_kv_table(prov))
    parts.append('<p class="small">Full provenance and timings: run.json.</p></body></html>')
    return results.write_text(path, "\n".join(parts))


def _settings_table(cfg: dict, model: dict) -> str:
    keep = {
        "model": cfg.get("model"),
        "uncertainty": f"{model.get('type', '')}, S = {model.get('n_samples')}",
        "sequences": cfg.get("fasta") or cfg.get("sequences"),
        "BED": cfg.get("bed"),
        "ISM window": cfg.get("window") or "whole sequence",
        "instrument rule": f"{cfg.get('instrument_rule')} |z| >= {cfg.get('z')}"
        + (", one allele per position" if cfg.get("one_per_position") else ""),
        "minimum instruments": cfg.get("min_instruments"),
        "MR methods": ", ".join(cfg.get("methods", [])),
        "meta-analysis": f"{cfg.get('meta_method')} ({cfg.get('meta_test')} test), "
        f"level {cfg.get('level')}",
        "calibration": cfg.get("calibration_table") or cfg.get("calibrator") or "none",
        "seed": cfg.get("seed"),
    }
    return _kv_table(keep)


def _kv_table(d: dict) -> str:
    rows = "".join(
        f'<tr><th class="l">{_e(k)}</th><td class="l">{_e(v)}</td></tr>'
        for k, v in d.items()
        if v is not None
    )
    return f"<table>{rows}</table>"


# ----------------------------------------------------------------------------------------------
# compare


def write_compare_report(
    path: str | os.PathLike,
    labels: Sequence[str],
    summary: pd.DataFrame,
    disagreements: pd.DataFrame,
    figures: Sequence[FigureFile],
) -> Path:
    """Write the HTML page of ``deepmr compare`` atomically.

    Parameters
    ----------
    path : path-like
    labels : sequence of str
        Run labels.
    summary : DataFrame
        One row per (method, run): shared pairs and Spearman correlation with the first run.
    disagreements : DataFrame
        Pairs whose sign or significance differs between runs.
    figures : sequence of FigureFile

    Returns
    -------
    Path
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Deep MR comparison</title><style>{_CSS}</style></head><body>",
        "<h1>Deep MR comparison</h1>",
        f"<p>Runs: {_e(', '.join(labels))}. Only (exposure, outcome, method) triples present in "
        "every run are compared.</p>",
        "<h2>Rank agreement</h2>",
        table_html(summary, list(summary.columns), left=["method", "run", "reference"]),
    ]
    for fig in figures:
        parts.append(f"<figure>{_img(fig.path)}<figcaption><b>{_e(fig.title)}.</b> "
                     f"{_e(fig.caption)}</figcaption></figure>")  # fmt: skip
    parts.append("<h2>Pairs that disagree</h2>")
    if len(disagreements):
        parts.append(table_html(disagreements.head(200), list(disagreements.columns),
                                left=["exposure", "outcome", "method", "disagreement"]))  # fmt: skip
    else:
        parts.append("<p>None: every shared pair has the same sign and significance.</p>")
    parts.append("</body></html>")
    return results.write_text(path, "\n".join(parts))
