"""The global table as the report's interactive table reads it: compact, column-wise JSON.

The report embeds the rows once, in a ``<script type="application/json">`` block, and its script
sorts, filters and pages them in the browser, so a 164-feature run (about 53,000 rows) stays
responsive: only one page of rows is ever in the document. Text columns are stored as codes into a
list of levels, numbers rounded to :data:`DIGITS` significant digits (the CSV keeps full precision).
Decision columns come first; the technical ones are shown on request.

A run too large to embed whole (DeepSEA's 919 features give 1.7 million rows) embeds at most
``max_rows`` rows: every claimed and undetermined pair first, then the smallest p-values; the
report says how many rows the CSV holds besides.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

#: The columns a reader decides with, in this order (those the table holds).
DECISION_COLUMNS = ("exposure", "outcome", "verdict", "verdict_reason", "method", "estimate",
                    "true_effect", "ci_low", "ci_high", "qvalue", "significant", "n_sequences")  # fmt: skip
#: Significant digits of the embedded numbers.
DIGITS = 4
#: The order rows are shown in before the reader sorts them.
VERDICT_ORDER = {"causal": 0, "undetermined": 1, "not causal": 2}
#: Default cap on embedded rows.
MAX_ROWS = 60_000


def ordered_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in reading order: causal pairs, then undetermined, then not causal; by p-value within.

    Parameters
    ----------
    table : DataFrame
        Global effects.

    Returns
    -------
    DataFrame
        The same rows, reordered (a table without ``verdict`` is ordered by p-value alone).
    """
    keys = pd.DataFrame(index=table.index)
    if "verdict" in table:
        keys["v"] = table["verdict"].astype(str).map(VERDICT_ORDER).fillna(3)
    keys["p"] = pd.to_numeric(table["pvalue"], errors="coerce").fillna(np.inf)
    return table.loc[keys.sort_values(list(keys.columns), kind="stable").index]


def _rounded(values: np.ndarray) -> list:
    """Floats rounded to DIGITS significant digits; NaN and infinities become None."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    out = np.zeros_like(v)
    nz = ok & (v != 0)
    mag = np.floor(np.log10(np.abs(v[nz])))
    scale = 10.0 ** (DIGITS - 1 - mag)
    out[nz] = np.round(v[nz] * scale) / scale
    return [float(x) if k else None for x, k in zip(out.tolist(), ok.tolist())]


def _column(series: pd.Series) -> dict:
    """One column as ``{"type", "values"}`` or, for text, ``{"type", "levels", "codes"}``."""
    if series.dtype == bool or str(series.dtype) == "boolean":
        return {"type": "flag", "values": [None if pd.isna(x) else bool(x) for x in series]}
    if pd.api.types.is_numeric_dtype(series.dtype):
        return {"type": "number", "values": _rounded(series.to_numpy(dtype=np.float64, na_value=np.nan))}
    codes, levels = pd.factorize(series.astype(str), sort=False)
    return {"type": "text", "levels": [str(x) for x in levels], "codes": codes.tolist()}


def table_payload(
    table: pd.DataFrame, truth: pd.DataFrame | None = None, *, max_rows: int = MAX_ROWS
) -> dict:
    """The global table as the report's script reads it.

    Parameters
    ----------
    table : DataFrame
        Global effects.
    truth : DataFrame, optional
        Known effects (exposure, outcome, true_effect), shown as the ``true_effect`` column.
    max_rows : int
        Rows embedded at most (reading order, :func:`ordered_rows`).

    Returns
    -------
    dict
        ``columns``: list of ``{"name", "group"}`` plus the column data (``group`` is ``decision``
        or ``technical``); ``n_rows`` embedded; ``n_total`` rows in the table.
    """
    rows = ordered_rows(table).head(max_rows).reset_index(drop=True)
    if truth is not None and len(truth):
        t = truth[["exposure", "outcome", "true_effect"]].astype({"exposure": str, "outcome": str})
        rows = rows.astype({"exposure": str, "outcome": str}).merge(t, on=["exposure", "outcome"], how="left")
    decision = [c for c in DECISION_COLUMNS if c in rows.columns]
    technical = [c for c in rows.columns if c not in decision]
    columns = [
        {"name": c, "group": "decision" if c in decision else "technical", **_column(rows[c])}
        for c in [*decision, *technical]
    ]
    return {"columns": columns, "n_rows": int(len(rows)), "n_total": int(len(table))}


def to_json(payload) -> str:
    """JSON for an inline ``<script>`` block: compact, no ``</`` that would close the block."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
