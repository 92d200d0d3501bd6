"""The global table as the report's interactive table reads it: compact, column-wise JSON.

The report embeds the rows once, in a ``<script type="application/json">`` block, and its script
sorts, filters and pages them in the browser, so a 164-feature run (about 53,000 rows) stays
responsive: only one page of rows is ever in the document. Text columns are stored as codes into a
list of levels, numbers with few distinct values likewise, the others as base64 float32 (7
significant digits; the CSV keeps full precision).
Decision columns come first; the technical ones are shown on request.

A run too large to embed whole (DeepSEA's 919 features give 1.7 million rows) embeds at most
``max_rows`` rows: every claimed and undetermined pair first, then the smallest p-values; the
report says how many rows the CSV holds besides.
"""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd

#: The columns a reader decides with, in this order (those the table holds).
DECISION_COLUMNS = (
    "exposure",
    "outcome",
    "verdict",
    "verdict_reason",
    "method",
    "estimate",
    "true_effect",
    "ci_low",
    "ci_high",
    "qvalue",
    "significant",
    "n_sequences",
)
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


def _codes(codes: np.ndarray) -> dict:
    """Level codes as little-endian unsigned integers of the smallest width, in base64."""
    top = int(codes.max()) if len(codes) else 0
    dtype = "<u1" if top < 2**8 else ("<u2" if top < 2**16 else "<u4")
    data = np.ascontiguousarray(codes, dtype=dtype).tobytes()
    return {"width": np.dtype(dtype).itemsize, "codes": base64.b64encode(data).decode("ascii")}


def _column(series: pd.Series) -> dict:
    """One column, encoded compactly.

    Returns
    -------
    dict
        ``type`` (``text``, ``number`` or ``flag``) and either ``levels`` (the distinct values,
        None for missing) with ``codes`` (base64 of unsigned integers of ``width`` bytes, one per
        row) -- for text, flags and numbers with at most 255 distinct values -- or ``float32``
        (base64 of little-endian float32, NaN where missing) for other numbers.
    """
    if series.dtype == bool or str(series.dtype) == "boolean":
        kind = "flag"
        values = (
            series.astype(object)
            .where(series.notna(), None)
            .map(lambda x: None if x is None else bool(x))
        )
    elif pd.api.types.is_numeric_dtype(series.dtype):
        kind = "number"
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        distinct = pd.unique(values)
        if len(distinct) > 255:
            data = np.ascontiguousarray(values, dtype="<f4").tobytes()
            return {"type": kind, "float32": base64.b64encode(data).decode("ascii")}
        values = pd.Series(values)
    else:
        kind = "text"
        values = (
            series.astype(object)
            .where(series.notna(), None)
            .map(lambda x: None if x is None else str(x))
        )
    codes, levels = pd.factorize(values, sort=False, use_na_sentinel=True)
    levels = [_plain(x) for x in levels]
    if (codes < 0).any():  # missing values get a level of their own
        codes = np.where(codes < 0, len(levels), codes)
        levels.append(None)
    return {"type": kind, "levels": levels, **_codes(codes)}


def _plain(x):
    """A level as JSON takes it (numpy scalars to Python, non-finite numbers to None)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, float, np.integer, np.floating)):
        v = float(x)
        return (int(v) if v.is_integer() and abs(v) < 2**53 else v) if np.isfinite(v) else None
    return x


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
        rows = rows.astype({"exposure": str, "outcome": str}).merge(
            t, on=["exposure", "outcome"], how="left"
        )
    decision = [c for c in DECISION_COLUMNS if c in rows.columns]
    technical = [c for c in rows.columns if c not in decision]
    columns = [
        {"name": c, "group": "decision" if c in decision else "technical", **_column(rows[c])}
        for c in [*decision, *technical]
    ]
    return {"columns": columns, "n_rows": int(len(rows)), "n_total": int(len(table))}


#: Characters that mean something to an HTML parser inside a ``<script>`` block (``</script``,
#: ``<!--``), to an attribute or entity reader, or end a line in older JavaScript: written as JSON
#: escapes, which ``JSON.parse`` reads back as the same characters.
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def to_json(payload) -> str:
    """JSON for an inline ``<script>`` block: compact, with ``<``, ``>``, ``&``, U+2028 and U+2029
    escaped (``\\u003c`` ...), so no text in it (``</script>``, ``<!--``, ``<script``) can end or
    re-open the block, whichever way a name is split across values."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_ESCAPES[m.group()], text)


def effect_matrix(global_table: pd.DataFrame, method: str, value: str = "estimate") -> pd.DataFrame:
    """One column of the global table as an exposure x outcome matrix.

    Parameters
    ----------
    global_table : DataFrame
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
    sub = global_table[global_table["method"].astype(str) == method]
    rows = list(dict.fromkeys(sub["exposure"].astype(str)))
    outcomes = set(sub["outcome"].astype(str))
    # features that are both exposure and outcome keep one order on both axes (diagonal aligned)
    cols = [f for f in dict.fromkeys([*rows, *sub["outcome"].astype(str)]) if f in outcomes]
    mat = sub.pivot_table(
        index="exposure",
        columns="outcome",
        values=value,
        aggfunc="first",
        observed=True,
        dropna=False,
    )
    mat.index = mat.index.astype(str)
    mat.columns = mat.columns.astype(str)
    return mat.reindex(index=rows, columns=cols).astype(float)
