"""``compare``: the global effects of several finished runs side by side.

The runs' (exposure, outcome, method) triples are aligned on those every run holds; the summary
gives the Spearman rank correlation of each run's estimates with the first run's, and the
disagreements list the triples whose sign or significance differs.

Features are matched across runs by label. A model whose output labels repeat numbers them
``<label>#1``, ``<label>#2``, ... (``kipoi_describe``), while another model may hold the same label
once (DeepSEA/beluga's ``K562_DNase_None#1``/``#2`` against DeepSEA/predict's ``K562_DNase_None``).
So a label is matched as (base label, occurrence): ``<label>#k`` is the k-th occurrence of
``<label>`` and a plain label is its first, and the k-th occurrence in one run meets the k-th in the
other (the lone label meets ``#1``; ``#2`` has no partner). Models with different naming schemes
are matched by an explicit mapping instead: a CSV with one column per run, in the runs' order, each
row naming the same feature in every run.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepmr_kipoi import __version__, results
from deepmr_kipoi.errors import DeepMRInputError


@dataclass(frozen=True)
class CompareResult:
    """Several runs' global effects aligned on their shared (exposure, outcome, method) triples.

    Attributes
    ----------
    labels : tuple of str
        One label per run (model name, or folder name where names repeat).
    table : DataFrame
        One row per shared triple, named by the first run's features (``exposure``, ``outcome``,
        ``method``): the other runs' own names as ``exposure_<label>``, ``outcome_<label>``, and
        every run's headline columns (``estimate``, ``se``, ``df``, ``ci_low``, ``ci_high``,
        ``pvalue``, ``qvalue``, ``significant``, ``direction``, those all runs hold) as
        ``<column>_<label>``. When the first run is a model panel, ``exposure_model`` and
        ``outcome_model`` name the panel member (label and model) of each feature.
    summary : DataFrame
        One row per (method, run other than the first): shared pairs, Spearman rank correlation of
        the estimates with the first run's (and its p-value), share of pairs with the same sign.
    disagreements : DataFrame
        Shared triples whose estimates differ in sign or whose significance differs between runs.
    out_dir : Path or None
    """

    labels: tuple[str, ...]
    table: pd.DataFrame
    summary: pd.DataFrame
    disagreements: pd.DataFrame
    out_dir: Path | None


def _run_labels(runs) -> list[str]:
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [r.path.name or r.label for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{lab}#{i + 1}" for i, lab in enumerate(labels)]
    return labels


#: the global table's headline columns compared across runs (the meta-analysis ``meta_*`` is not)
HEADLINE = (
    "estimate",
    "se",
    "df",
    "ci_low",
    "ci_high",
    "pvalue",
    "qvalue",
    "significant",
    "direction",
)
_OCCURRENCE = re.compile(r"^(.*)#([1-9][0-9]*)$")


def label_key(name: str) -> tuple[str, int]:
    """The (base label, occurrence) a feature name is matched by across runs.

    Parameters
    ----------
    name : str
        A feature name; ``<label>#k`` (k >= 1) is the k-th occurrence of a repeated label.

    Returns
    -------
    tuple of (str, int)
        ``(label, k)`` for ``<label>#k``, ``(name, 1)`` for any other name.
    """
    m = _OCCURRENCE.match(name)
    return (m.group(1), int(m.group(2))) if m else (name, 1)


def _label_matches(names: Sequence[Sequence[str]], labels: Sequence[str]) -> list[dict[str, str]]:
    """Per run, {its feature name: the first run's name} for the features matched by label."""
    keyed = []
    for run_names, label in zip(names, labels):
        by_key: dict[tuple[str, int], str] = {}
        for name in run_names:
            key = label_key(name)
            if key in by_key:
                raise DeepMRInputError(
                    f"run {label}: features '{by_key[key]}' and '{name}' are the same label; "
                    "compare it with --mapping"
                )
            by_key[key] = name
        keyed.append(by_key)
    return [{name: keyed[0][key] for key, name in k.items() if key in keyed[0]} for k in keyed]


def panel_models(run) -> dict[str, str]:
    """The model of every feature of a panel run, ``{"a/X": "a (model name)"}``; empty for a run
    of one model.

    Parameters
    ----------
    run : results.RunData
        A finished run (``results.read_run``).
    """
    members = ((getattr(run, "run_info", None) or {}).get("model") or {}).get("panel") or {}
    return {
        name: f"{label} ({member.get('name')})"
        for label, member in members.items()
        for name in member.get("feature_names") or []
    }


def _read_mapping(mapping, names: Sequence[Sequence[str]], labels: Sequence[str]):
    """Per run, {its feature name: the first run's name} from a mapping table (one column per run)."""
    if isinstance(mapping, pd.DataFrame):
        table = mapping.astype(str)
    else:
        path = Path(mapping)
        if not path.is_file():
            raise DeepMRInputError(
                f"mapping file {path} not found; give a CSV with one column per run"
            )
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if table.shape[1] != len(labels):
        raise DeepMRInputError(
            f"the mapping has {table.shape[1]} columns for {len(labels)} runs; give one column of "
            "feature names per run, in the runs' order"
        )
    out = []
    for j, (run_names, label) in enumerate(zip(names, labels)):
        col = [str(v).strip() for v in table.iloc[:, j]]
        unknown = sorted(set(col) - set(run_names))
        if unknown:
            raise DeepMRInputError(
                f"mapping column {j + 1} names features that run {label} does not hold "
                f"({', '.join(unknown[:3])}); use its feature names"
            )
        if len(set(col)) < len(col):
            raise DeepMRInputError(
                f"mapping column {j + 1} names a feature of run {label} twice; map each feature once"
            )
        out.append(dict(zip(col, (str(v).strip() for v in table.iloc[:, 0]))))
    return out


def compare(
    run_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike | None = None,
    *,
    figures: bool = True,
    mapping: str | os.PathLike | pd.DataFrame | None = None,
) -> CompareResult:
    """Compare the global causal effects of several finished runs.

    Features are matched by label (``<label>#k`` as the k-th occurrence of ``<label>``, a plain label
    as its first; module docstring), or by ``mapping``.

    Parameters
    ----------
    run_dirs : sequence of path-like, length >= 2
        Run folders written by ``run``.
    out : path-like, optional
        Folder for ``compare_table.csv``, ``compare_summary.csv``, ``disagreements.csv``,
        ``figures/compare_<method>.png`` and ``report.html``; None writes nothing.
    figures : bool
        Draw the side-by-side figures (with ``out``).
    mapping : path-like or DataFrame, optional
        Features matched explicitly: a CSV (or table) with one column per run, in the order of
        ``run_dirs``, each row naming one feature in every run. Only the listed features are
        compared; the table names them by the first column.

    Returns
    -------
    CompareResult

    Raises
    ------
    DeepMRInputError
        Fewer than two runs, a folder without a finished run, a mapping that does not fit the runs,
        two features of one run with the same label, or no shared pairs.
    """
    if len(run_dirs) < 2:
        raise DeepMRInputError("compare needs at least two run folders")
    runs = [results.read_run(d) for d in run_dirs]
    labels = _run_labels(runs)
    table = _aligned_table(runs, labels, mapping)
    models = panel_models(runs[0])
    if models:  # a panel: which of its models each feature comes from
        table.insert(3, "exposure_model", table["exposure"].map(models))
        table.insert(4, "outcome_model", table["outcome"].map(models))
    dis = _disagreements(table, labels)
    result = CompareResult(tuple(labels), table, _agreement_summary(table, labels), dis, None)
    if out is None:
        return result
    out_dir = Path(out)
    from deepmr_kipoi.run.folder import RunFolder

    # written whole into a stage and swapped in; a folder holding a run is refused
    folder = RunFolder(out_dir, kind="compare").open()
    try:
        _write_comparison(folder.stage, result, runs, labels, mapping, figures)
        folder.commit()
    finally:
        folder.close(computed=False)
    return dataclasses.replace(result, out_dir=out_dir)


def _aligned_table(runs, labels: list[str], mapping) -> pd.DataFrame:
    """The runs' global tables side by side: one row per (exposure, outcome, method) that every run
    has (named as in the first run), the headline columns suffixed with each run's label."""
    key = ["exposure", "outcome", "method"]
    tables = [r.global_effects.astype({k: str for k in key}) for r in runs]
    names = [list(dict.fromkeys([*g["exposure"], *g["outcome"]])) for g in tables]
    to_first = (
        _read_mapping(mapping, names, labels)
        if mapping is not None
        else _label_matches(names, labels)
    )
    columns = [c for c in HEADLINE if all(c in g.columns for g in tables)]
    table = None
    for i, (g, label) in enumerate(zip(tables, labels)):
        rename = to_first[i]
        g = g[g["exposure"].isin(rename) & g["outcome"].isin(rename)]
        own_names = {c: f"{c}_{label}" for c in ("exposure", "outcome")}
        own = g[list(own_names)].rename(columns=own_names)
        g = g[[*key, *columns]].rename(columns={c: f"{c}_{label}" for c in columns})
        g = g.assign(exposure=g["exposure"].map(rename), outcome=g["outcome"].map(rename))
        if i:
            g = pd.concat([g, own], axis=1)
        table = g if table is None else table.merge(g, on=key, how="inner")
    if table is None or not len(table):
        raise DeepMRInputError(
            "the runs share no (exposure, outcome, method); compare runs with common feature labels "
            "or give --mapping"
        )
    return table.reset_index(drop=True)  # the first run's order (model order of its features)


def _agreement_summary(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Per method and run: Spearman correlation and sign agreement with the first run's estimates
    (NaN correlation with fewer than 3 shared finite pairs or a constant side)."""
    from scipy.stats import spearmanr

    rows = []
    for method, sub in table.groupby("method", sort=False):
        x = sub[f"estimate_{labels[0]}"].to_numpy(float)
        for label in labels[1:]:
            y = sub[f"estimate_{label}"].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
                rho, p = spearmanr(x[ok], y[ok])
            else:
                rho, p = np.nan, np.nan
            rows.append(
                {
                    "method": method,
                    "run": label,
                    "reference": labels[0],
                    "shared_pairs": int(ok.sum()),
                    "spearman_rho": float(rho),
                    "spearman_pvalue": float(p),
                    "same_sign": float(np.mean(np.sign(x[ok]) == np.sign(y[ok])))
                    if ok.any()
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


def _disagreements(table: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Rows where the runs' estimates differ in sign or only some runs call them significant."""
    est = np.column_stack([table[f"estimate_{lab}"].to_numpy(float) for lab in labels])
    sig = np.column_stack(
        [table[f"significant_{lab}"].fillna(False).to_numpy(bool) for lab in labels]
    )
    signs = np.sign(est)
    sign_diff = np.isfinite(est).all(axis=1) & (signs.min(axis=1) != signs.max(axis=1))
    sig_diff = sig.any(axis=1) & ~sig.all(axis=1)
    what = np.where(
        sign_diff & sig_diff, "sign and significance", np.where(sign_diff, "sign", "significance")
    )
    dis = table[sign_diff | sig_diff].copy()
    dis.insert(3, "disagreement", what[sign_diff | sig_diff])
    return dis.reset_index(drop=True)


def _write_comparison(
    out_dir: Path, result: CompareResult, runs, labels, mapping, figures: bool
) -> None:
    table, summary = result.table, result.summary
    for name, df in (
        ("compare_table.csv", table),
        ("compare_summary.csv", summary),
        ("disagreements.csv", result.disagreements),
    ):
        results.write_table(df, out_dir / name)
    figs = _compare_figures(out_dir, runs, labels, table, []) if figures else []
    from deepmr_kipoi import report

    report.write_compare_report(
        out_dir / "report.html", labels, summary, result.disagreements, figs
    )
    results.write_json(
        out_dir / "compare.json",
        {
            "runs": [str(r.path) for r in runs],
            "labels": labels,
            "matched_by": "mapping" if mapping is not None else "label",
            "summary": summary.to_dict(orient="records"),
            "n_shared": int(len(table)),
            "n_disagreements": int(len(result.disagreements)),
            "deepmr_kipoi_version": __version__,
        },
    )


def _compare_figures(out_dir, runs, labels, table, created):
    from deepmr_kipoi.report import figures

    fig_dir = out_dir / "figures"
    if not fig_dir.exists():
        fig_dir.mkdir()
        created.append(fig_dir)
    figs = []
    for method in dict.fromkeys(table["method"]):
        sub = table[table["method"] == method]
        rows = list(dict.fromkeys(sub["exposure"]))
        outcomes = set(sub["outcome"])
        cols = [f for f in dict.fromkeys([*rows, *sub["outcome"]]) if f in outcomes]
        mats, sigs = [], []
        for label in labels:
            m = sub.pivot_table(
                index="exposure",
                columns="outcome",
                values=f"estimate_{label}",
                aggfunc="first",
                dropna=False,
            )
            s = sub.assign(_s=sub[f"significant_{label}"].astype(float)).pivot_table(
                index="exposure", columns="outcome", values="_s", aggfunc="first", dropna=False
            )
            mats.append((label, m.reindex(index=rows, columns=cols)))
            sigs.append(s.reindex(index=rows, columns=cols))
        with figures.plain_text():  # feature names drawn as typed, never as mathtext
            fig = figures.compare_figure(mats, sigs, method=method)
        path = figures.save(fig, fig_dir / f"compare_{figures.slug(method)}.png")
        created.append(path)
        figs.append(
            figures.FigureFile(
                path,
                f"Global effects side by side ({method})",
                "Top: each run's global effects on the shared pairs (common "
                "colour scale, * significant). Bottom: each run's estimates "
                f"against {labels[0]}'s.",
            )
        )
    return figs
