"""The self-contained HTML pages: a run's report and ``deepmr compare``'s page (Jinja2 templates).

The report leads with the verdicts (`headline.build_headline`): one sentence per causal claim, then
what was not claimed and why. Then the overview of the claims (the causal graph, or a zoomable
clustered heatmap at zoo scale), the interactive global table (sorting, filters by feature,
verdict and method, decision columns first and the technical ones on request, pages of 50 rows),
per-pair details (MR scatter, instrument map, forest plot), the warnings, the question, settings,
further figures, diagnostics, calibration, assumptions and provenance.

Everything is in the one file: figures as base64 PNG data URIs or inline SVG, the table and the
heatmap as JSON blocks, the style sheet and the script inline. It loads nothing from outside. The
templates, style sheet and script live in ``report/templates``.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import results
from deepmr_kipoi.mr.methods import method_label
from deepmr_kipoi.report.figure_file import FigureFile
from deepmr_kipoi.report.headline import build_headline, calibration_sentence, truth_summary
from deepmr_kipoi.report.table import table_payload, to_json

ASSUMPTIONS = (
    (
        "Local linearity",
        "each local effect is the slope of the model's outcome on its exposure "
        "around one reference sequence; far from it, the relationship may differ.",
    ),
    (
        "Exclusion restriction",
        "a mutation that changes the outcome other than through the exposure "
        "(pleiotropy) biases IVW; MR-Egger, the median and the mode estimators relax this.",
    ),
    (
        "Model quality",
        "the effects are those the model has learned, with its errors and the biases "
        "of its training data; they are hypotheses about biology, not measurements.",
    ),
    (
        "Calibration",
        "p-values and intervals are only as good as the model's uncertainty; "
        "calibrate it on held-out labelled data.",
    ),
    (
        "Direction",
        "MR on one model does not tell from the data alone which feature drives the "
        "other; the verdict claims one direction only where the reverse is not supported, and "
        "prior knowledge still matters.",
    ),
)

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def fmt_number(x, column: str = "", digits: int = 3) -> str:
    """A table cell: booleans as yes/no, p-values with ``<1e-300`` for 0, 3 significant digits."""
    if x is None:
        return ""
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(v):
        return "\u2013"
    if v == 0.0 and column in ("pvalue", "qvalue"):
        return "<1e-300"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) >= 1 else f"{v:.{digits}f}"


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
    )
    env.filters["num"] = fmt_number
    return env


def _asset(name: str) -> str:
    return (_TEMPLATES / name).read_text(encoding="utf-8")


def render(template: str, **context) -> str:
    """Render one of the page templates with the inline style sheet and script.

    Parameters
    ----------
    template : str
        ``report.html.j2`` or ``compare.html.j2``.
    **context
        The template's variables.

    Returns
    -------
    str
    """
    from markupsafe import Markup

    env = _environment()
    return env.get_template(template).render(
        css=Markup(_asset("report.css")), js=Markup(_asset("report.js")), **context
    )


def figure_context(fig: FigureFile) -> dict:
    """A figure for the templates: a PNG as a data URI, an SVG inline (its XML prologue dropped)."""
    from markupsafe import Markup

    path = Path(fig.path)
    item = {"title": fig.title, "caption": fig.caption, "alt": path.stem, "svg": None, "src": None}
    if path.suffix.lower() == ".svg":
        text = path.read_text(encoding="utf-8")
        # the prologue and matplotlib's RDF metadata (addresses of vocabularies) are not needed inline
        text = re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.DOTALL)
        item["svg"] = Markup(text)
    else:
        item["src"] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return item


def _names(xs: Sequence[str]) -> str:
    xs = list(xs)
    return ", ".join(xs[:12]) + (f" ... ({len(xs)} in all)" if len(xs) > 12 else "")


def write_report(
    path: str | os.PathLike,
    record,
    global_table: pd.DataFrame,
    figures: Sequence[FigureFile],
    *,
    calibration=None,
    truth: pd.DataFrame | None = None,
    max_rows: int | None = None,
) -> Path:
    """Write the self-contained HTML report of a run atomically.

    Parameters
    ----------
    path : path-like
        Destination ``report.html``.
    record : run.record.RunRecord
        The run's record (config, model identity, features, sequences, warnings, versions).
    global_table : DataFrame
        Global effects (with ``verdict`` and ``verdict_reason``).
    figures : sequence of FigureFile
        PNGs embedded as data URIs, SVGs inline; placed by their ``section``.
    calibration : pipeline calibration record, optional
    truth : DataFrame, optional
        Known global effects (columns exposure, outcome, true_effect): beside each claim, in the
        table, and a recovery summary.
    max_rows : int, optional
        Rows embedded in the interactive table (default `table.MAX_ROWS`; the CSV has all).

    Returns
    -------
    Path
    """
    cfg = record.config
    level = float(cfg.get("level", 0.95))
    has_truth = truth is not None and len(truth)
    headline = build_headline(global_table, truth if has_truth else None)
    payload = table_payload(
        global_table, truth if has_truth else None, **({"max_rows": max_rows} if max_rows else {})
    )
    context = {
        "model_name": record.model.get("name", ""),
        "version": record.deepmr_kipoi_version,
        "started": record.started,
        "headline": headline,
        "calibration_note": calibration_sentence(
            None
            if calibration is None
            else {
                "source": calibration.source,
                "method": cfg.get("calibration_method", ""),
                "se_scale": dict(calibration.scale_items()),
            }
        ),
        "level_pct": f"{level:.0%}",
        "alpha": f"{1 - level:.2g}",
        "methods": list(dict.fromkeys(global_table["method"].astype(str))),
        "table_json": _json_markup(payload),
        "table_rows_note": _rows_note(payload),
        "warnings": list(record.warnings),
        "assumptions": ASSUMPTIONS,
        **_overview_context(global_table, figures),
        **_pair_context(global_table, figures),
        **_record_context(record, cfg),
        **_diagnostics_context(global_table, calibration),
        **_truth_context(global_table, truth if has_truth else None, headline.method),
    }
    context["method_label"] = method_label(headline.method)
    return results.write_text(path, render("report.html.j2", **context))


def _json_markup(payload) -> str:
    from markupsafe import Markup

    return Markup(to_json(payload))


def _rows_note(payload: dict) -> str:
    n, total = payload["n_rows"], payload["n_total"]
    if n == total:
        return f"All {total} rows of global_effects.csv."
    return (
        f"{n} of {total} rows (the claimed and undetermined pairs first, then the smallest "
        "p-values); every row is in global_effects.csv."
    )


def _overview_context(global_table: pd.DataFrame, figures: Sequence[FigureFile]) -> dict:
    from deepmr_kipoi.report.overview import GRAPH_MAX_FEATURES, features_of, heatmap_payload

    over = [f for f in figures if f.section == "overview"]
    graph = next((figure_context(f) for f in over if Path(f.path).suffix == ".svg"), None)
    rest = [figure_context(f) for f in over if Path(f.path).suffix != ".svg"]
    out = {"graph": graph, "overview_figures": rest, "heatmap_json": None}
    if len(features_of(global_table)) > GRAPH_MAX_FEATURES:
        hm = heatmap_payload(global_table)
        out.update(
            heatmap_json=_json_markup(hm),
            heatmap_method=hm["method"],
            heatmap_label=method_label(hm["method"]),
            heatmap_rows=len(hm["rows"]),
            heatmap_cols=len(hm["cols"]),
            heatmap_vmax=f"{hm['vmax']:.3g}",
        )
    out["figures"] = [figure_context(f) for f in figures if f.section not in ("overview", "pair")]
    return out


def _pair_context(global_table: pd.DataFrame, figures: Sequence[FigureFile]) -> dict:
    from deepmr_kipoi.report.headline import primary_method

    method = primary_method(global_table)
    first = global_table[global_table["method"].astype(str) == method].astype(
        {"exposure": str, "outcome": str}
    )
    by_pair = {
        (e, o): r
        for (e, o), r in zip(
            zip(first["exposure"], first["outcome"]), first.itertuples(index=False)
        )
    }
    pairs = []
    for pair in dict.fromkeys(f.pair for f in figures if f.section == "pair" and f.pair):
        r = by_pair.get(pair)
        line = ""
        if r is not None:
            line = (
                f"{method_label(method)} {fmt_number(r.estimate)} "
                f"[{fmt_number(r.ci_low)}, {fmt_number(r.ci_high)}]"
            )
            if hasattr(r, "verdict"):
                line = f"Verdict: {r.verdict} ({r.verdict_reason}). " + line
        pairs.append(
            {
                "label": f"{pair[0]} \u2192 {pair[1]}",
                "verdict_line": line,
                "figures": [
                    figure_context(f) for f in figures if f.section == "pair" and f.pair == pair
                ],
            }
        )
    return {"pairs": pairs}


def _record_context(record, cfg: dict) -> dict:
    model, seqs = record.model, record.sequences
    return {
        "n_sequences": seqs.n,
        "seq_length": seqs.length,
        "window": list(seqs.window),
        "exposures": _names(record.features.exposures),
        "outcomes": _names(record.features.outcomes),
        "settings": list(_settings(cfg, model).items()),
        "provenance": list(
            {
                "model": model.get("name"),
                "model source": model.get("source"),
                "weights": "; ".join(
                    f"{w.get('path')} (md5 {w.get('md5')})" for w in model.get("weights", []) or []
                )
                or None,
                "uncertainty samples (S)": model.get("n_samples"),
                "panel members": _panel_members(model),
                "config hash": record.config_hash,
                "seed": cfg.get("seed"),
                "versions": ", ".join(f"{k} {v}" for k, v in record.versions.items()),
                "platform": record.platform,
            }.items()
        ),
    }


def _panel_members(model: dict) -> str | None:
    """A model panel's members in words: each label's model, features, input length, samples."""
    members = model.get("panel")
    if not members:
        return None
    return "; ".join(
        f"{label}: {m.get('name')} ({m.get('sequence_length') or 'any'} bp, S = "
        f"{m.get('n_samples')}; features {', '.join(m.get('feature_names') or [])})"
        for label, m in members.items()
    )


def _model_setting(value) -> str | None:
    """The model setting as the report shows it: a panel as ``label = model`` items."""
    if isinstance(value, dict):
        return ", ".join(
            f"{label} = {m.get('model') if isinstance(m, dict) else m}"
            for label, m in value.items()
        )
    return value


def _settings(cfg: dict, model: dict) -> dict:
    return {
        "model": _model_setting(cfg.get("model")),
        "uncertainty": f"{model.get('type', '')}, S = {model.get('n_samples')}",
        "sequences": cfg.get("fasta") or cfg.get("sequences"),
        "BED": cfg.get("bed"),
        "ISM window": cfg.get("window") or "whole sequence",
        "instrument rule": f"{cfg.get('instrument_rule')} |z| >= {cfg.get('z')}"
        + (f", floor {cfg.get('floor')} x spread" if cfg.get("floor") else "")
        + (", one allele per position" if cfg.get("one_per_position") else "")
        + (
            f", directionality ({cfg.get('direction_scale', 'effects')} spread)"
            if cfg.get("directional")
            else ""
        )
        + (", sample splitting" if cfg.get("sample_split") else ""),
        "minimum instruments": cfg.get("min_instruments"),
        "MR methods": ", ".join(cfg.get("methods", [])),
        "global inference": "mean over sequences and model samples, crossed random effects, "
        f"Satterthwaite t; level {cfg.get('level')}",
        "meta-analysis (meta_* columns)": f"{cfg.get('meta_method')} ({cfg.get('meta_test')} test)",
        "calibration": cfg.get("calibration_table") or cfg.get("calibrator") or "none",
        "seed": cfg.get("seed"),
    }


def _median(sub: pd.DataFrame, column: str) -> float:
    if column not in sub or not sub[column].notna().any():
        return np.nan
    return float(np.nanmedian(sub[column].to_numpy(dtype=float)))


def _diagnostics_context(global_table: pd.DataFrame, cal) -> dict:
    rows = []
    for method, sub in global_table.groupby("method", sort=False):
        rows.append(
            {
                "method": method,
                "pairs": len(sub),
                "pairs with >= 3 sequences": int((sub["k"] >= 3).sum()),
                "median sequences used": _median(sub, "k"),
                "median instruments": _median(sub, "median_instruments"),
                "median I2 (%)": _median(sub, "i2"),
                "median tau2": _median(sub, "tau2"),
                "median I2_GX (%)": _median(sub, "i2_gx_median"),
                "Egger intercepts != 0 (share)": float(np.nanmean(sub["egger_intercept_sig_frac"]))
                if sub["egger_intercept_sig_frac"].notna().any()
                else np.nan,
            }
        )
    return {
        "diagnostics": rows,
        "diagnostic_columns": list(rows[0]) if rows else ["method"],
        "calibration": _calibration(cal),
    }


def _calibration(cal) -> dict | None:
    if cal is None:
        return None
    out = {
        "source": cal.source,
        "features": _names(cal.features),
        "rows": None,
        "columns": None,
        "scales": ", ".join(f"{f}: {s:.3g}" for f, s in cal.scale_items()[:20]),
    }
    if cal.metrics_before is not None and cal.metrics_after is not None:
        before = cal.metrics_before.table().iloc[[-1]].assign(feature="overall, before")
        after = cal.metrics_after.table().iloc[[-1]].assign(feature="overall, after")
        df = pd.concat([before, after], ignore_index=True)
        out["rows"], out["columns"] = df.to_dict(orient="records"), list(df.columns)
    return out


def _truth_context(global_table: pd.DataFrame, truth, method: str) -> dict:
    if truth is None:
        return {"truth_rows": None, "truth_columns": None}
    s = truth_summary(global_table, truth, method)
    row = {
        "method": method,
        "pairs": s["n"],
        "r": s["r"],
        "mean absolute error": s["mae"],
        "inside headline interval": s["coverage"],
        "inside meta-analysis interval": s["meta_coverage"],
    }
    return {"truth_rows": [row], "truth_columns": list(row)}


# ----------------------------------------------------------------------------------------------
# compare


def write_compare_report(
    path: str | os.PathLike,
    labels: Sequence[str],
    summary: pd.DataFrame,
    disagreements: pd.DataFrame,
    figures: Sequence[FigureFile],
    max_rows: int = 200,
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
    max_rows : int
        Disagreements shown (the CSV has all).

    Returns
    -------
    Path
    """
    text = render(
        "compare.html.j2",
        labels=", ".join(labels),
        summary=summary.to_dict(orient="records"),
        summary_columns=list(summary.columns),
        figures=[figure_context(f) for f in figures],
        disagreements=disagreements.head(max_rows).to_dict(orient="records"),
        disagreement_columns=list(disagreements.columns),
        n_disagreements=len(disagreements),
    )
    return results.write_text(path, text)
