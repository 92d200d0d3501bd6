"""The pair axis the verdict works on: every row of the global table mapped to its ordered pair,
the rows of every pair by method (:class:`PairView`), the outcome of steps 1-6 (:class:`Decided`)
and the reasons' text. Internal to :mod:`deepmr_kipoi.verdict`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepmr_kipoi.mr.methods import method_label


def method_names(methods) -> str:
    """The display labels of ``methods`` joined by "and" (reasons' text)."""
    return " and ".join(method_label(m) for m in methods)


def _codes(column) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of a column's values as strings, and the distinct strings (object array)."""
    codes, uniques = pd.factorize(column.to_numpy() if hasattr(column, "to_numpy") else column)
    names = np.asarray([str(u) for u in uniques], dtype=object)
    # values that differ but print the same (1 and "1") are one name
    same, distinct = pd.factorize(names)
    return same[codes], np.asarray(distinct, dtype=object)


def pair_ids(table: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Pair index of every row and the pairs (exposure, outcome), in order of appearance."""
    ex, ex_names = _codes(table["exposure"])
    oc, oc_names = _codes(table["outcome"])
    n_oc = max(len(oc_names), 1)
    ids, keys = pd.factorize(ex.astype(np.int64) * n_oc + oc)
    keys = np.asarray(keys, dtype=np.int64)
    pairs = pd.DataFrame({"exposure": ex_names[keys // n_oc], "outcome": oc_names[keys % n_oc]})
    return ids, pairs


def per_pair(values, ids, rows, n_pairs) -> np.ndarray:
    """The values of the rows ``rows`` (one per pair at most) on the pair axis, NaN elsewhere."""
    out = np.full(n_pairs, np.nan)
    out[ids[rows]] = np.asarray(values, dtype=np.float64)[rows]
    return out


@dataclass(frozen=True, eq=False)
class PairView:
    """The rows of every ordered pair, as index arrays on the pair axis (P pairs).

    Attributes
    ----------
    work : DataFrame
        The table with the verdict's statistics (:func:`statistics`) alongside.
    pairs : DataFrame
        ``exposure``, ``outcome`` (str) of every pair, in order of appearance.
    ids : ndarray of int, shape (R,)
        The pair of every row.
    methods : ndarray of str, shape (R,)
        The method of every row.
    rows : dict of str to ndarray of int, shape (P,)
        Per method, the pair's row of that method (the last one), -1 where the pair lacks it.
    primary : ndarray of int, shape (P,)
        The row of the pair's primary estimator: IVW where the pair has it, else the pair's
        first method.
    """

    work: pd.DataFrame
    pairs: pd.DataFrame
    ids: np.ndarray
    methods: np.ndarray
    rows: dict
    primary: np.ndarray

    @classmethod
    def build(cls, work: pd.DataFrame) -> PairView:
        """The view of ``work`` (the global table with the verdict's statistics)."""
        ids, pairs = pair_ids(work)
        n_pairs = len(pairs)
        methods = work["method"].astype(str).to_numpy()
        rows = {}
        for m in dict.fromkeys(methods):
            at = np.flatnonzero(methods == m)
            # the last row of the method in each pair (a later row replaces an earlier one)
            last_ids, first_rev = np.unique(ids[at][::-1], return_index=True)
            rows[m] = np.full(n_pairs, -1, dtype=np.int64)
            rows[m][last_ids] = at[::-1][first_rev]
        _, first_row = np.unique(ids, return_index=True)
        primary = np.full(n_pairs, -1, dtype=np.int64)
        for m, r in rows.items():  # the first method of the pair, where it has no IVW
            primary = np.where(methods[first_row] == m, r, primary)
        if "ivw" in rows:
            primary = np.where(rows["ivw"] >= 0, rows["ivw"], primary)
        return cls(work, pairs, ids, methods, rows, primary)

    def value(self, column: str, rows=None, fill=np.nan) -> np.ndarray:
        """``column`` at the pairs' ``rows`` (default: the primary rows), ``fill`` where a pair
        lacks the row or the table lacks the column."""
        rows = self.primary if rows is None else rows
        if column not in self.work:
            return np.full(len(rows), fill, dtype=object if isinstance(fill, str) else None)
        values = self.work[column].to_numpy()[np.maximum(rows, 0)]
        if values.dtype.kind in "fiub":
            values = values.astype(np.float64) if values.dtype.kind != "b" else values
        return np.where(rows >= 0, values, fill)


def fmt(template: str, *columns) -> np.ndarray:
    """``template.format(*values)`` of every pair, as an object array."""
    return np.array([template.format(*v) for v in zip(*columns)], dtype=object)


@dataclass(frozen=True, eq=False)
class Decided:
    """Steps 1-6 of every ordered pair (arrays over P): verdict, reason, whether the pair was
    estimable and whether it passed steps 2-6 (supported), fitted and analysed sequences."""

    verdict: np.ndarray
    reason: np.ndarray
    estimable: np.ndarray
    supported: np.ndarray
    fitted: np.ndarray
    analysed: np.ndarray
