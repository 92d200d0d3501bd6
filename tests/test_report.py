"""Global effects from a local table (against scalar meta-analyses), and the HTML report: valid,
self-contained (every figure a data: URI, nothing loaded from outside), rendered by Chromium."""

import base64
import html.parser
import shutil
import subprocess
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
                    rows.append({
                        "sequence_index": s, "sequence_id": f"seq{s}", "exposure": e, "outcome": o,
                        "method": method, "estimate": np.nan if reason else est,
                        "se": np.nan if reason else se, "ci_low": est - 1.96 * se,
                        "ci_high": est + 1.96 * se, "pvalue": 0.01, "q": np.nan, "q_pvalue": np.nan,
                        "intercept": rng.normal(0, 0.01) if method == "egger" else np.nan,
                        "intercept_se": 0.01, "intercept_pvalue": rng.uniform() if method == "egger"
                        else np.nan, "i2_gx": 95.0 if method == "egger" else np.nan,
                        "n_instruments": int(rng.integers(3, 30)), "reason": reason,
                    })  # fmt: skip
    df = pd.DataFrame(rows)
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # order must not matter


def test_global_effects_equal_scalar_meta_analysis_of_each_pair():
    local = _local_table()
    glob = pipeline.global_effects(local, N_SEQ, method="REML", test="z")
    assert len(glob) == 2 * 6
    for row in glob.itertuples():
        sub = local[(local.method == row.method) & (local.exposure == row.exposure)
                    & (local.outcome == row.outcome) & (local.reason == 0)].sort_values("sequence_index")  # fmt: skip
        ref = meta.random_effects(sub["estimate"].to_numpy(), sub["se"].to_numpy(), method="REML")
        assert row.k == len(sub) == (N_SEQ - 1 if row.exposure == "c" else N_SEQ)
        for f in ("estimate", "se", "ci_low", "ci_high", "pvalue", "tau2", "i2", "q", "pi_low",
                  "pi_high"):  # fmt: skip
            assert getattr(row, f) == pytest.approx(getattr(ref, f), rel=1e-9, abs=1e-12), f
        assert row.median_instruments == np.median(sub["n_instruments"])


def test_benjamini_hochberg_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    # sorted finite p: .01 .03 .04 .5 (m=4): .04, .06, .0533, .5 -> cumulative min from the top
    np.testing.assert_allclose(pipeline.benjamini_hochberg(p), [0.04, 0.0533333, 0.0533333, np.nan, 0.5],
                               rtol=1e-5)  # fmt: skip


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
    """Parse a report: balanced tags, every <img> a PNG data: URI, no external reference."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:3]
    assert parser.stack == [], parser.stack
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    imgs = [a for t, a in parser.attrs if t == "img"]
    for a in imgs:
        assert a["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(a["src"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for _, a in parser.attrs:
        for key in ("src", "href", "action", "poster"):
            if key in a:
                assert a[key].startswith(("data:", "#")), a[key][:60]
    assert "url(" not in text.split("</style>")[0].split("<style>")[-1]
    return parser


def _report(tmp_path, truth=None):
    local = _local_table()
    glob = pipeline.global_effects(local, N_SEQ)
    figs = []
    (tmp_path / "figures").mkdir()
    for method in ("ivw", "egger"):
        p = figures.save(figures.global_heatmap(glob, method), tmp_path / "figures" / f"h_{method}.png")
        figs.append(figures.FigureFile(p, f"Heatmap {method}", "caption <with> & specials"))
    info = RunRecord(
        deepmr_kipoi_version="0.1.0", config={"model": "tiny<model>", "level": 0.95,
                                              "methods": ["ivw", "egger"], "seed": 0},
        config_hash="0" * 16,
        model={"name": "tiny<model>", "n_samples": 4, "weights": [{"path": "w.pt", "md5": "ab"}]},
        features=FeatureSet(tuple(FEATURES), tuple(FEATURES)),
        sequences=SequenceSet(N_SEQ, 50, (0, 50), ()), seeds={}, chunks=ChunkInfo(1, N_SEQ, ()),
        calibration=None, warnings=tuple(pipeline.plain_warnings(glob, calibrated=False, n_masked=3)),
        truth=None, versions={"numpy": np.__version__}, platform="test",
        started="2024-01-01T00:00:00",
    )  # fmt: skip
    path = report.write_report(tmp_path / "report.html", info, glob, figs, truth=truth)
    return path, glob


def test_report_is_valid_self_contained_html(tmp_path):
    path, glob = _report(tmp_path)
    parser = check_self_contained(path)
    assert sum(t == "img" for t in parser.tags) == 2
    text = path.read_text()
    assert "tiny&lt;model&gt;" in text and "tiny<model>" not in text
    assert "caption &lt;with&gt; &amp; specials" in text
    for section in ("Question", "Settings", "Global effects", "Diagnostics", "Warnings",
                    "Assumptions", "Provenance"):  # fmt: skip
        assert f"<h2>{section}</h2>" in text
    assert "not calibrated" in text and "3 sequence positions hold N" in text
    n_sig = int(glob[glob.method == "ivw"]["significant"].sum())
    assert f"{n_sig} of 6 exposure&ndash;outcome pairs" in text


def test_report_headline_with_truth_matches_hand_computed_summary(tmp_path):
    truth = pd.DataFrame([(e, o, {"a": 0.8, "b": -0.3, "c": 0.0}[e]) for e in FEATURES
                          for o in FEATURES if e != o], columns=["exposure", "outcome", "true_effect"])  # fmt: skip
    path, glob = _report(tmp_path, truth)
    g = glob[glob.method == "ivw"].merge(truth, on=["exposure", "outcome"])
    s = report.truth_summary(glob, truth, "ivw")
    strong = g.true_effect != 0  # 0.8 and -0.3 are planted; 0.0 is below 5% of the largest
    assert s["n"] == 6 and s["n_strong"] == 4
    assert s["r"] == pytest.approx(np.corrcoef(g.true_effect, g.estimate)[0, 1])
    assert s["sign_agreement"] == int(np.sum(np.sign(g.estimate[strong]) == np.sign(g.true_effect[strong])))
    sig = g.significant.to_numpy(dtype=bool)
    assert s["significant"] == int(np.sum(sig[strong]
                                          & (np.sign(g.estimate[strong]) == np.sign(g.true_effect[strong]))))  # fmt: skip
    assert s["n_flagged"] == int(sig.sum())
    assert s["flagged_wrong_sign"] == int(np.sum(sig & (np.sign(g.estimate) != np.sign(g.true_effect))))
    assert s["flagged_near_null"] == int(np.sum(sig & (np.abs(g.true_effect) < 0.01)))
    assert s["max_abs_null"] == pytest.approx(np.abs(g.estimate[~strong]).max())
    assert s["coverage"] == pytest.approx(np.mean((g.ci_low <= g.true_effect) & (g.true_effect <= g.ci_high)))
    assert s["mae"] == pytest.approx(np.mean(np.abs(g.estimate - g.true_effect)))
    assert s["meta_coverage"] == pytest.approx(
        np.mean((g.meta_ci_low <= g.true_effect) & (g.true_effect <= g.meta_ci_high)))
    assert f"({s['meta_coverage']:.0%} inside the meta-analysis CI" in report.truth_headline(s)
    # a table without meta-analysis columns reports no such coverage
    s = report.truth_summary(glob.drop(columns=["meta_ci_low", "meta_ci_high"]), truth, "ivw")
    assert np.isnan(s["meta_coverage"]) and "meta-analysis" not in report.truth_headline(s)
    assert [(r["exposure"], r["outcome"]) for r in s["strong"]] == list(zip(g.exposure[strong], g.outcome[strong]))
    text = path.read_text()
    assert "Against the planted truth" in text and "true_effect" in text
    check_self_contained(path)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.chromium
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(tmp_path):
    path, _ = _report(tmp_path)
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
           f"--screenshot={shot}", path.resolve().as_uri()]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000
    # the page is drawn: not one blank colour (text, tables and the embedded figures)
    assert img[..., :3].std() > 0.05
