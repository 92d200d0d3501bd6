"""The self-contained HTML report of a run (figures embedded as base64 PNG), from its ``RunRecord``.

The report states the question, the headline (estimated against true effects when the truth is
known, else the strongest effects), the settings, the global table, the figures, diagnostics
(instrument counts, Egger intercepts, I^2_GX, heterogeneity), calibration, warnings and the
assumptions in plain words, and the provenance of the run. It loads nothing from outside the file.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import results
from deepmr_kipoi.report.figures import FigureFile, top_pairs, truth_join

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
#: True effects below this size count as null when a flagged pair is judged.
NEAR_NULL = 0.01


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
        sign and ``significant`` a significant one (the run's ``significant`` flag); ``max_abs_null``,
        the largest |estimate| among the other pairs; ``n_flagged`` pairs flagged significant, of
        which ``flagged_wrong_sign`` have the opposite sign of their true effect and
        ``flagged_near_null`` a true effect below 0.01 in size; ``coverage`` (share of true effects
        inside the headline interval); ``meta_coverage`` (the same for the meta-analysis CI, NaN
        where the table has none); ``mae`` (mean absolute error); ``strong``: rows (exposure,
        outcome, true_effect, estimate, ci_low, ci_high) of the planted effects.
    """
    j = truth_join(glob, truth, method)
    j = j[np.isfinite(j["estimate"]) & np.isfinite(j["true_effect"])].reset_index(drop=True)
    t, e = j["true_effect"].to_numpy(float), j["estimate"].to_numpy(float)
    strong = np.abs(t) >= STRONG_FRACTION * np.abs(t).max() if len(t) and np.abs(t).max() > 0 \
        else np.zeros(len(t), dtype=bool)
    r = float(np.corrcoef(t, e)[0, 1]) if len(j) > 2 and np.std(t) > 0 and np.std(e) > 0 else np.nan
    lo, hi = j["ci_low"].to_numpy(float), j["ci_high"].to_numpy(float)
    inside = (lo <= t) & (t <= hi)
    meta_coverage = np.nan
    if "meta_ci_low" in j and len(j) and np.isfinite(j["meta_ci_low"].to_numpy(float)).all():
        mlo, mhi = j["meta_ci_low"].to_numpy(float), j["meta_ci_high"].to_numpy(float)
        meta_coverage = float(((mlo <= t) & (t <= mhi)).mean())
    if "significant" in j:
        sig = j["significant"].fillna(False).to_numpy(dtype=bool)
    else:
        sig = ~((lo <= 0) & (0 <= hi))
    return {
        "method": method,
        "n": int(len(j)),
        "r": r,
        "n_strong": int(strong.sum()),
        "sign_agreement": int(np.sum(np.sign(e[strong]) == np.sign(t[strong]))),
        "significant": int(np.sum(sig[strong] & (np.sign(e[strong]) == np.sign(t[strong])))),
        "max_abs_null": float(np.max(np.abs(e[~strong]))) if (~strong).any() else np.nan,
        "n_flagged": int(sig.sum()),
        "flagged_wrong_sign": int(np.sum(sig & (np.sign(e) != np.sign(t)))),
        "flagged_near_null": int(np.sum(sig & (np.abs(t) < NEAR_NULL))),
        "coverage": float(inside.mean()) if len(j) else np.nan,
        "meta_coverage": meta_coverage,
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
        f"significantly. Flagged significant: {s['n_flagged']} of {s['n']} pairs, "
        f"{s['flagged_wrong_sign']} with the wrong sign, {s['flagged_near_null']} with a true "
        f"effect below {NEAR_NULL}. Other pairs (true effect near 0): largest |estimate| "
        f"{s['max_abs_null']:.3g}. Over all {s['n']} pairs: r = {s['r']:.3f}, mean absolute error "
        f"{s['mae']:.3g}, {s['coverage']:.0%} of true effects inside the CI"
        + (f" ({s['meta_coverage']:.0%} inside the meta-analysis CI over sequences alone)."
           if np.isfinite(s.get("meta_coverage", np.nan)) else ".")
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
    record,
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
    record : run.record.RunRecord
        The run's record (config, model identity, features, sequences, warnings, versions).
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
    cfg = record.config
    level = float(cfg.get("level", 0.95))
    model = record.model
    seqs = record.sequences
    ex, oc = list(record.features.exposures), list(record.features.outcomes)

    def names(xs):
        return _e(", ".join(xs[:12]) + (f" ... ({len(xs)} in all)" if len(xs) > 12 else ""))

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Deep MR report: {_e(model.get('name', ''))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Deep MR report: {_e(model.get('name', ''))}</h1>",
        f'<p class="small">deepmr_kipoi {_e(record.deepmr_kipoi_version)}, '
        f'run {_e(record.started)}</p>',
        f'<div class="headline"><p>{_headline(glob, truth, level)}</p></div>',
        "<h2>Question</h2>",
        f"<p>Which causal effects between its output features has the model "
        f"<b>{_e(model.get('name', ''))}</b> learned? Every point mutation of "
        f"{_e(seqs.n)} reference sequences of {_e(seqs.length)} bp "
        f"(window {_e(list(seqs.window))}) is an instrument when it changes the exposure "
        "significantly, clearly, and more than the outcome; Mendelian randomization per sequence "
        "gives local effects of each exposure on each outcome, for the whole model and for each of "
        "its samples (ensemble members or dropout masks), and the global effect is their mean with "
        "an interval that counts both the sequences and the model's uncertainty.</p>"
        "<p><b>What the intervals cover:</b> the effect this model learned, given its training "
        "data, averaged over sequences like those analysed. A bias that every sample of the model "
        "shares (the same training data, the same architecture) stays invisible to them, and a "
        "significant effect is a statement about the model, not proof of biology.</p>"
        f"<p>Exposures: {names(ex)}.<br>Outcomes: {names(oc)}.</p>",
        "<h2>Settings</h2>",
        _settings_table(cfg, model),
        "<h2>Global effects</h2>",
    ]
    shown = glob.sort_values("pvalue", kind="stable").head(max_rows)
    cols = [c for c in ("exposure", "outcome", "method", "estimate", "se", "ci_low", "ci_high",
                        "pvalue", "qvalue", "direction", "robust_disagreement", "meta_estimate",
                        "meta_ci_low", "meta_ci_high", "tau2", "i2", "pi_low", "pi_high", "k",
                        "median_instruments") if c in glob.columns]  # fmt: skip
    if truth is not None and len(truth):
        t = truth[["exposure", "outcome", "true_effect"]].astype({"exposure": str, "outcome": str})
        shown = shown.merge(t, on=["exposure", "outcome"], how="left")
        cols.insert(3, "true_effect")
    parts.append(table_html(shown, cols, left=["exposure", "outcome", "method"]))
    parts.append(f'<p class="small">{min(len(glob), max_rows)} of {len(glob)} rows, smallest '
                 "p-values first; all rows in global_effects.csv. estimate, CI, p, q: mean of the "
                 "per-sample local estimates over sequences and model samples, with a t interval "
                 "from the crossed random-effects model (sequences and samples); q: "
                 "Benjamini-Hochberg; direction: verdict for the unordered pair; "
                 "robust_disagreement: IVW and a robust method disagree beyond their intervals; "
                 "meta_*: random-effects meta-analysis over sequences only (it treats the local "
                 "estimates as independent although they share the model's error); k: sequences "
                 "with a local fit; pi: prediction interval of a sequence's local effect.</p>")  # fmt: skip
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
    warns = record.warnings
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
        "config hash": record.config_hash,
        "seed": cfg.get("seed"),
        "versions": ", ".join(f"{k} {v}" for k, v in record.versions.items()),
        "platform": record.platform,
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
        + (f", floor {cfg.get('floor')} x spread" if cfg.get("floor") else "")
        + (", one allele per position" if cfg.get("one_per_position") else "")
        + (f", directionality ({cfg.get('direction_scale', 'effects')} spread)"
           if cfg.get("directional") else "")
        + (", sample splitting" if cfg.get("sample_split") else ""),
        "minimum instruments": cfg.get("min_instruments"),
        "MR methods": ", ".join(cfg.get("methods", [])),
        "global inference": "mean over sequences and model samples, crossed random effects, "
        f"Satterthwaite t; level {cfg.get('level')}",
        "meta-analysis (meta_* columns)": f"{cfg.get('meta_method')} ({cfg.get('meta_test')} test)",
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
