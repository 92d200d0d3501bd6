"""The headline of a run, built on the pair verdicts: what is claimed, what is not, and why.

Every ordered (exposure, outcome) pair of a run has one verdict in the global table (``verdict``:
``causal``, ``not causal`` or ``undetermined``, the same on each of the pair's method rows) and
its reason (``verdict_reason``). The headline states one plain sentence per causal claim, e.g.
``GATA1 -> TAL1: +2.12 [1.88, 2.35], 16 sequences, IVW and MR-Egger agree``, with the estimate and
interval of the primary estimator (IVW when it was run, else the table's first method), then
counts the pairs not claimed by verdict and reason. With a known truth (the demo, simulations)
each claim carries its true effect and the headline says how the claims meet the planted effects.

Reasons that quote numbers (``no estimator finds an effect (IVW +0.01 [-0.02, 0.04])``) are
counted by their words alone (:func:`reason_kind`), so pairs that fail for the same reason are
counted together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: The three verdicts, in the order the report lists them.
VERDICTS = ("causal", "undetermined", "not causal")
#: Claims listed one by one at most (the largest); the table holds the others.
MAX_LISTED = 12
#: True effects at least this fraction of the largest |true effect| count as planted (non-zero);
#: oracle truths of unrelated pairs are tiny but not exactly 0.
STRONG_FRACTION = 0.05
#: True effects below this size count as null when a flagged pair is judged.
NEAR_NULL = 0.01

_PAREN = re.compile(r"\s*\([^()]*\)")
_SHARE = re.compile(r"\s+in\s+[0-9.]+%\s+of\s+sequences")


def primary_method(table: pd.DataFrame) -> str:
    """The estimator whose numbers the headline quotes: ``ivw`` when run, else the first method."""
    methods = [str(m) for m in pd.unique(table["method"].to_numpy(dtype=object))]
    return "ivw" if "ivw" in methods else methods[0]


def reason_kind(reason: str) -> str:
    """A verdict reason without its numbers (parenthesised details, shares of sequences).

    Parameters
    ----------
    reason : str

    Returns
    -------
    str
        ``"no estimator finds an effect (IVW +0.01 [-0.02, 0.04])"`` gives ``"no estimator finds
        an effect"``; a reason without numbers is returned unchanged (stripped).
    """
    return _SHARE.sub("", _PAREN.sub("", str(reason))).strip() or str(reason).strip()


@dataclass(frozen=True)
class Claim:
    """One causal claim: an ordered pair with a ``causal`` verdict.

    Attributes
    ----------
    exposure, outcome : str
    method : str
        The estimator whose numbers are quoted.
    estimate, ci_low, ci_high : float
        Its headline estimate and interval.
    n_sequences : int
        Sequences the headline inference used.
    reason : str
        The verdict's reason.
    true_effect : float or None
        The known effect, where the truth is known.
    """

    exposure: str
    outcome: str
    method: str
    estimate: float
    ci_low: float
    ci_high: float
    n_sequences: int
    reason: str
    true_effect: float | None = None

    def sentence(self, arrow: str = "->") -> str:
        """``"X -> Y: +2.12 [1.88, 2.35], 16 sequences, <reason>"`` (and the true effect)."""
        text = (
            f"{self.exposure} {arrow} {self.outcome}: {self.estimate:+.3g} "
            f"[{self.ci_low:.3g}, {self.ci_high:.3g}], {self.n_sequences} sequences, {self.reason}"
        )
        if self.true_effect is not None and np.isfinite(self.true_effect):
            text += f" (true effect {self.true_effect:+.3g})"
        return text


@dataclass(frozen=True)
class TruthCheck:
    """How the claims meet a known truth.

    Attributes
    ----------
    n_planted : int
        Pairs whose true effect is at least ``STRONG_FRACTION`` of the largest |true effect|.
    planted_claimed : int
        Planted pairs claimed causal with the sign of their true effect.
    false_claims : tuple of str
        Claims on pairs without a planted effect or with the wrong sign ("X -> Y").
    missed : tuple of (str, str)
        Planted pairs not claimed: ("X -> Y", their verdict).
    coverage : (int, int)
        Pairs whose headline interval holds the true effect, and pairs compared.
    """

    n_planted: int
    planted_claimed: int
    false_claims: tuple[str, ...]
    missed: tuple[tuple[str, str], ...]
    coverage: tuple[int, int]


@dataclass(frozen=True)
class Headline:
    """The verdicts of a run, summarised.

    Attributes
    ----------
    method : str
        The estimator whose numbers are quoted.
    n_pairs : int
        Ordered pairs in the table.
    claims : tuple of Claim
        Causal pairs, largest |estimate| first.
    not_claimed : tuple of (verdict, reason kind, count)
        Pairs not claimed, grouped; undetermined before not causal, larger groups first.
    truth : TruthCheck or None
    has_verdicts : bool
        False for a table without a ``verdict`` column (written before verdicts existed).
    """

    method: str
    n_pairs: int
    claims: tuple[Claim, ...]
    not_claimed: tuple[tuple[str, str, int], ...]
    truth: TruthCheck | None = None
    has_verdicts: bool = True

    def summary(self) -> str:
        """One line: how many ordered pairs are claimed causal."""
        if not self.has_verdicts:
            return f"{self.n_pairs} ordered pairs; this table has no verdicts (an older run)"
        n = len(self.claims)
        return f"{n} of {self.n_pairs} ordered pairs causal" + (":" if n else ".")

    def not_claimed_text(self) -> str:
        """``"4 not causal: no estimator finds an effect; 1 undetermined: ..."``."""
        return "; ".join(f"{n} {verdict}: {kind}" for verdict, kind, n in self.not_claimed)

    def truth_text(self) -> str:
        """The truth check in words ("" without a truth)."""
        t = self.truth
        if t is None:
            return ""
        parts = [
            f"Against the planted truth: {t.planted_claimed} of {t.n_planted} planted "
            f"effects claimed with the right sign"
        ]
        parts.append(
            f"{len(t.false_claims)} false claims"
            + (f" ({', '.join(t.false_claims)})" if t.false_claims else "")
        )
        if t.missed:
            parts.append("missed: " + ", ".join(f"{p} ({v})" for p, v in t.missed))
        inside, n = t.coverage
        parts.append(
            f"the headline interval holds the true effect for {inside} of {n} pairs (it covers "
            "the effect the model learned; an error all model samples share is outside it)"
        )
        return "; ".join(parts) + "."

    def listed(self) -> tuple[Claim, ...]:
        """The claims stated one by one: the `MAX_LISTED` largest."""
        return self.claims[:MAX_LISTED]

    def more_text(self) -> str:
        """``"... and 152 more causal pairs (verdict = causal in the table)"`` ("" when all listed)."""
        more = len(self.claims) - len(self.listed())
        return f"... and {more} more causal pairs (verdict = causal in the table)" if more else ""

    def lines(self, arrow: str = "->") -> list[str]:
        """The headline as plain-text lines (the command line's summary)."""
        out = [self.summary()]
        out += [f"  {c.sentence(arrow)}" for c in self.listed()]
        if self.more_text():
            out.append(f"  {self.more_text()}")
        if self.not_claimed:
            out.append("Not claimed: " + self.not_claimed_text() + ".")
        if self.truth is not None:
            out.append(self.truth_text())
        return out


def build_headline(table: pd.DataFrame, truth: pd.DataFrame | None = None) -> Headline:
    """The headline of a global table.

    Parameters
    ----------
    table : DataFrame
        Global effects with ``exposure, outcome, method, estimate, ci_low, ci_high, verdict,
        verdict_reason`` and ``n_sequences``.
    truth : DataFrame, optional
        Known effects (columns exposure, outcome, true_effect).

    Returns
    -------
    Headline
    """
    method = primary_method(table)
    rows = table[table["method"].astype(str) == method].reset_index(drop=True)
    rows = rows.astype({"exposure": str, "outcome": str})
    true = _truth_lookup(truth)
    if "verdict" not in rows:
        return Headline(method, len(rows), (), (), None, has_verdicts=False)
    verdict = rows["verdict"].astype(str)
    causal = rows[verdict == "causal"]
    claims = tuple(
        Claim(
            r.exposure,
            r.outcome,
            method,
            float(r.estimate),
            float(r.ci_low),
            float(r.ci_high),
            int(r.n_sequences),
            str(r.verdict_reason),
            true.get((r.exposure, r.outcome)) if true else None,
        )
        for r in causal.reindex(
            causal["estimate"].abs().sort_values(ascending=False).index
        ).itertuples(index=False)
    )
    rest = rows[verdict != "causal"]
    groups = (
        pd.DataFrame(
            {
                "verdict": rest["verdict"].astype(str),
                "kind": _kinds(rest["verdict_reason"]),
            }
        )
        .value_counts(sort=False)
        .reset_index(name="n")
    )
    groups["order"] = groups["verdict"].map({v: i for i, v in enumerate(VERDICTS)})
    groups = groups.sort_values(["order", "n", "kind"], ascending=[True, False, True])
    not_claimed = tuple(
        (v, k, int(n)) for v, k, n in groups[["verdict", "kind", "n"]].itertuples(index=False)
    )
    check = _truth_check(rows, true) if true else None
    return Headline(method, len(rows), claims, not_claimed, check)


def _kinds(reasons: pd.Series) -> np.ndarray:
    """:func:`reason_kind` of every reason, computed once per distinct reason (a run of 10^5
    pairs repeats most of them)."""
    codes, distinct = pd.factorize(reasons.to_numpy(dtype=object), use_na_sentinel=False)
    return np.array([reason_kind(r) for r in distinct], dtype=object)[codes]


def _truth_lookup(truth: pd.DataFrame | None) -> dict:
    if truth is None or not len(truth):
        return {}
    return {
        (str(e), str(o)): float(t)
        for e, o, t in zip(truth["exposure"], truth["outcome"], truth["true_effect"])
    }


def _truth_check(rows: pd.DataFrame, true: dict) -> TruthCheck:
    keys = list(zip(rows["exposure"], rows["outcome"]))
    t = np.array([true.get(k, np.nan) for k in keys], dtype=float)
    known = np.isfinite(t)
    biggest = float(np.nanmax(np.abs(t))) if known.any() else 0.0
    planted = known & (np.abs(np.nan_to_num(t)) >= STRONG_FRACTION * biggest) & (biggest > 0)
    claimed = rows["verdict"].astype(str).to_numpy() == "causal"
    right_sign = np.sign(rows["estimate"].to_numpy(float)) == np.sign(np.nan_to_num(t))
    names = [f"{e} -> {o}" for e, o in keys]
    lo, hi = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
    inside = known & (lo <= np.nan_to_num(t)) & (np.nan_to_num(t) <= hi)
    return TruthCheck(
        n_planted=int(planted.sum()),
        planted_claimed=int((planted & claimed & right_sign).sum()),
        false_claims=tuple(
            n for n, c, p, s in zip(names, claimed, planted, right_sign) if c and not (p and s)
        ),
        missed=tuple(
            (n, v) for n, c, p, v in zip(names, claimed, planted, rows["verdict"]) if p and not c
        ),
        coverage=(int(inside.sum()), int(known.sum())),
    )


def truth_summary(global_table: pd.DataFrame, truth: pd.DataFrame, method: str) -> dict:
    """How well estimated global effects recover known ones.

    Parameters
    ----------
    global_table : DataFrame
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
    j = truth_join(global_table, truth, method)
    j = j[np.isfinite(j["estimate"]) & np.isfinite(j["true_effect"])].reset_index(drop=True)
    t, e = j["true_effect"].to_numpy(float), j["estimate"].to_numpy(float)
    strong = (
        np.abs(t) >= STRONG_FRACTION * np.abs(t).max()
        if len(t) and np.abs(t).max() > 0
        else np.zeros(len(t), dtype=bool)
    )
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
        "strong": j.loc[
            strong, ["exposure", "outcome", "true_effect", "estimate", "ci_low", "ci_high"]
        ].to_dict(orient="records"),
    }


def truth_join(global_table: pd.DataFrame, truth: pd.DataFrame, method: str) -> pd.DataFrame:
    """One method's global estimates and CIs beside the true effects, on their shared pairs."""
    cols = ["exposure", "outcome", "estimate", "ci_low", "ci_high"]
    cols += [c for c in ("significant", "meta_ci_low", "meta_ci_high") if c in global_table.columns]
    g = global_table[global_table["method"] == method][cols].astype(
        {"exposure": str, "outcome": str}
    )
    t = truth[["exposure", "outcome", "true_effect"]].astype({"exposure": str, "outcome": str})
    return g.merge(t, on=["exposure", "outcome"], how="inner")


def calibration_sentence(calibration) -> str:
    """Whether a run's uncertainty was calibrated, and what that changes, in plain words.

    Parameters
    ----------
    calibration : dict or None
        ``run.json``'s ``calibration`` record (``source``, ``method``, ``se_scale``: feature to
        SE factor); None when the run was not calibrated.

    Returns
    -------
    str
    """
    if not calibration:
        return (
            "Uncalibrated: instruments, intervals and verdicts rest on the raw spread of the "
            "model's samples (no --calibration-table or --calibrator). A deep ensemble's spread "
            "usually understates its error, so intervals may be too narrow; claims must still "
            "exclude effects below the smallest effect of interest (--min-effect), which the "
            "simulation experiment shows keeps false claims rare without a calibration table."
        )
    scales = calibration.get("se_scale") or {}
    span = ""
    if scales:
        values = [float(v) for v in scales.values()]
        span = f", SE factors {min(values):.2g}-{max(values):.2g}"
    return (
        f"Calibrated on {calibration.get('source', 'held-out labels')} "
        f"({calibration.get('method', '')}{span}): instruments, intervals and verdicts use the "
        "recalibrated spread of the model's samples; wider intervals mean fewer instruments and "
        "fewer directions that can be tested."
    )
