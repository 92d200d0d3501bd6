"""Global effects from a local table (against scalar meta-analyses), and the HTML report: valid,
self-contained (every figure a data: URI or inline SVG, nothing loaded from outside), its headline
built on the verdicts and its embedded table (Chromium checks: test_report_browser.py)."""

import base64
import html
import html.parser
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import meta, pipeline, report
from deepmr_kipoi.report import figures
from deepmr_kipoi.run.record import ChunkInfo, FeatureSet, RunRecord, SequenceSet

FEATURES = ["a", "b", "c"]
N_SEQ = 7


def _local_table(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for method in ("ivw", "egger"):
        for e in FEATURES:
            for o in FEATURES:
                if e == o:
                    continue
                true = {"a": 0.8, "b": -0.3, "c": 0.0}[e]
                for s in range(N_SEQ):
                    se = rng.uniform(0.05, 0.3)
                    reason = 1 if (s == 0 and e == "c") else 0
                    est = true + rng.normal(0, 0.2) + rng.normal(0, se)
                    rows.append(
                        {
                            "sequence_index": s,
                            "sequence_id": f"seq{s}",
                            "exposure": e,
                            "outcome": o,
                            "method": method,
                            "estimate": np.nan if reason else est,
                            "se": np.nan if reason else se,
                            "ci_low": est - 1.96 * se,
                            "ci_high": est + 1.96 * se,
                            "pvalue": 0.01,
                            "q": np.nan,
                            "q_pvalue": np.nan,
                            "intercept": rng.normal(0, 0.01) if method == "egger" else np.nan,
                            "intercept_se": 0.01,
                            "intercept_pvalue": rng.uniform() if method == "egger" else np.nan,
                            "i2_gx": 95.0 if method == "egger" else np.nan,
                            "n_instruments": int(rng.integers(3, 30)),
                            "reason": reason,
                        }
                    )
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order must not matter


def test_global_effects_equal_scalar_meta_analysis_of_each_pair():
    local = _local_table()
    glob = pipeline.global_effects(local, N_SEQ, pipeline.GlobalSettings(method="REML", test="z"))
    assert len(glob) == 2 * 6
    for row in glob.itertuples():
        sub = local[
            (local.method == row.method)
            & (local.exposure == row.exposure)
            & (local.outcome == row.outcome)
            & (local.reason == 0)
        ].sort_values("sequence_index")
        ref = meta.random_effects(sub["estimate"].to_numpy(), sub["se"].to_numpy(), method="REML")
        assert row.k == len(sub) == (N_SEQ - 1 if row.exposure == "c" else N_SEQ)
        for f in (
            "estimate",
            "se",
            "ci_low",
            "ci_high",
            "pvalue",
            "tau2",
            "i2",
            "q",
            "pi_low",
            "pi_high",
        ):
            assert getattr(row, f) == pytest.approx(getattr(ref, f), rel=1e-9, abs=1e-12), f
        assert row.median_instruments == np.median(sub["n_instruments"])


def test_benjamini_hochberg_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted finite p: .01 .03 .04 .5 (m=4): .04, .06, .0533, .5 -> cumulative min from the top
    np.testing.assert_allclose(
        pipeline.benjamini_hochberg(p), [0.04, 0.0533333, 0.0533333, np.nan, 0.5], rtol=1e-5
    )


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.stack, self.errors = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        if tag not in ("meta", "img", "br", "link", "input", "hr"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


def check_self_contained(path: Path) -> _Collector:
    """Parse a report: balanced tags, every <img> a PNG data: URI, scripts and styles inline,
    nothing loaded from outside (no src/href but data: URIs and in-page anchors, no url() in CSS,
    no http(s) address outside the SVG namespace declarations)."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:3]
    assert parser.stack == [], parser.stack
    assert "link" not in parser.tags and "iframe" not in parser.tags
    assert all("src" not in a for t, a in parser.attrs if t == "script")
    imgs = [a for t, a in parser.attrs if t == "img"]
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(a["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for _, a in parser.attrs:
        for key in ("src", "href", "xlink:href", "action", "poster"):
            if key in a:
                assert a[key].startswith(("data:", "#")), a[key][:60]
    assert "url(" not in text.split("</style>")[0].split("<style>")[-1]
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert addresses <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, addresses
    return parser


def with_verdicts(glob: pd.DataFrame) -> pd.DataFrame:
    """A real global table with verdict columns: the run's own where it has them, else a fixed
    assignment per pair (a -> b causal, b -> a undetermined, the rest not causal)."""
    if "verdict" in glob:
        return glob
    fixed = {
        ("a", "b"): ("causal", "IVW and MR-Egger agree, reverse direction not supported"),
        ("b", "a"): (
            "undetermined",
            "IVW finds an effect that MR-Egger does not: invalid instruments cannot be ruled out",
        ),
    }
    pairs = list(zip(glob["exposure"], glob["outcome"]))
    rest = ("not causal", "no estimator finds an effect")
    return glob.assign(
        verdict=[fixed.get(p, rest)[0] for p in pairs],
        verdict_reason=[fixed.get(p, rest)[1] for p in pairs],
    )


def _record(glob, warnings=()):
    return RunRecord(
        deepmr_kipoi_version="0.1.0",
        config={"model": "tiny<model>", "level": 0.95, "methods": ["ivw", "egger"], "seed": 0},
        config_hash="0" * 16,
        model={"name": "tiny<model>", "n_samples": 4, "weights": [{"path": "w.pt", "md5": "ab"}]},
        features=FeatureSet(tuple(FEATURES), tuple(FEATURES)),
        sequences=SequenceSet(N_SEQ, 50, (0, 50), ()),
        seeds={},
        chunks=ChunkInfo(1, N_SEQ, ()),
        calibration=None,
        warnings=tuple(warnings),
        truth=None,
        versions={"numpy": np.__version__},
        platform="test",
        started="2024-01-01T00:00:00",
    )


def _report(tmp_path, truth=None):
    local = _local_table()
    glob = with_verdicts(pipeline.global_effects(local, N_SEQ))
    (tmp_path / "figures").mkdir()
    figs = report.figures.make_figures(
        tmp_path, glob, report.figures.DetailInputs.none(local), truth=truth
    )
    p = figures.save(
        figures.forest(["s"], np.array([1.0]), np.array([0.5]), np.array([1.5])),
        tmp_path / "figures" / "extra.png",
    )
    figs.append(figures.FigureFile(p, "Extra", "caption <with> & specials"))
    warnings = pipeline.plain_warnings(glob, calibrated=False, n_masked=3)
    path = report.write_report(
        tmp_path / "report.html", _record(glob, warnings), glob, figs, truth=truth
    )
    return path, glob, figs


def _embedded_table(text: str) -> pd.DataFrame:
    """The interactive table's rows, decoded from the report's JSON block."""
    block = text.split('<script type="application/json" id="deepmr-table">')[1].split("</script>")[
        0
    ]
    data = json.loads(block)
    return pd.DataFrame({c["name"]: decode_column(c) for c in data["columns"]})


def decode_column(c: dict) -> list:
    """One embedded column's values (None where missing), decoded as the report's script does."""
    if "float32" in c:
        v = np.frombuffer(base64.b64decode(c["float32"]), dtype="<f4").astype(float)
        return [None if np.isnan(x) else x for x in v]
    codes = np.frombuffer(base64.b64decode(c["codes"]), dtype=f"<u{c['width']}")
    return [c["levels"][k] for k in codes]


def test_report_is_valid_self_contained_html(tmp_path):
    path, glob, figs = _report(tmp_path)
    parser = check_self_contained(path)
    pngs = [f for f in figs if f.path.suffix == ".png"]
    assert sum(t == "img" for t in parser.tags) == len(pngs) and "svg" in parser.tags
    text = path.read_text()
    assert "tiny&lt;model&gt;" in text and "tiny<model>" not in text
    assert "caption &lt;with&gt; &amp; specials" in text
    for section in (
        "Overview",
        "Global effects",
        "Pair details",
        "Warnings",
        "Question",
        "Calibration",
        "Settings",
        "Figures",
        "Diagnostics",
        "Assumptions",
        "Provenance",
    ):
        assert f"<h2>{section}</h2>" in text
    assert "not calibrated" in text and "3 sequence positions hold N" in text
    # the headline says in words that the run was not calibrated and what that means
    headline = text[text.index('<section id="headline"') : text.index('<section id="overview"')]
    assert "Uncalibrated: instruments, intervals and verdicts rest on the raw spread" in headline
    # the headline counts causal verdicts and quotes the IVW row of each claim
    ivw = glob[(glob.method == "ivw") & (glob.verdict == "causal")]
    assert f"{len(ivw)} of 6 ordered pairs causal" in text
    for r in ivw.itertuples():
        assert (
            f'<b>{r.exposure} &rarr; {r.outcome}</b>: <span class="num">{r.estimate:+.3g} '
            f"[{r.ci_low:.3g}, {r.ci_high:.3g}]</span>, {r.n_sequences} sequences, "
            f"{html.escape(r.verdict_reason)}"
        ) in text
    # the table holds every row, claims first, values to 4 significant digits
    shown = _embedded_table(text)
    assert len(shown) == len(glob)
    order = shown["verdict"].map({"causal": 0, "undetermined": 1, "not causal": 2}).to_numpy()
    assert (np.diff(order) >= 0).all()
    merged = shown.merge(glob, on=["exposure", "outcome", "method"], suffixes=("", "_full"))
    np.testing.assert_allclose(merged["estimate"].astype(float), merged["estimate_full"], rtol=1e-6)
    # the per-method flag is explained beside the table
    assert "unadjusted" in text and "Benjamini-Hochberg" in text


def test_report_with_truth_puts_it_beside_claims_and_in_the_table(tmp_path):
    truth = pd.DataFrame(
        [(e, o, {"a": 0.8, "b": -0.3, "c": 0.0}[e]) for e in FEATURES for o in FEATURES if e != o],
        columns=["exposure", "outcome", "true_effect"],
    )
    path, glob, _ = _report(tmp_path, truth)
    text = path.read_text()
    for r in glob[(glob.method == "ivw") & (glob.verdict == "causal")].itertuples():
        t = truth.set_index(["exposure", "outcome"]).loc[(r.exposure, r.outcome), "true_effect"]
        assert f"(true effect {t:+.3g})" in text
    assert "Against the planted truth" in text
    shown = _embedded_table(text).merge(truth, on=["exposure", "outcome"], suffixes=("", "_t"))
    np.testing.assert_allclose(shown["true_effect"].astype(float), shown["true_effect_t"])
    s = report.truth_summary(glob, truth, "ivw")
    g = glob[glob.method == "ivw"].merge(truth, on=["exposure", "outcome"])
    assert s["r"] == pytest.approx(np.corrcoef(g.true_effect, g.estimate)[0, 1])
    assert s["coverage"] == pytest.approx(
        np.mean((g.ci_low <= g.true_effect) & (g.true_effect <= g.ci_high))
    )
    assert s["mae"] == pytest.approx(np.mean(np.abs(g.estimate - g.true_effect)))
    check_self_contained(path)
