"""The reports in headless Chromium: they load without errors, the table sorts and filters, the
causal graph and the zoomable heatmap render with labels (a small run and a 164-feature run)."""

import pandas as pd
import pytest

from deepmr_kipoi import pipeline, report
from tests import _browser
from tests._report_tables import zoo_table
from tests.test_report import FEATURES, N_SEQ, _local_table, _record, _report, check_self_contained

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(_browser.CHROMIUM is None, reason="headless Chromium is not installed"),
]


def _numbers(values):
    return [v for v in values if v is not None]


def check_in_browser(found: dict, glob: pd.DataFrame, feature: str) -> None:
    """What the probe found: no errors, the table sorted and filtered as the table itself says."""
    assert found["errors"] == [], found["errors"]
    assert found["initial_rows"] == min(50, len(glob)) and found["matching"] == len(glob)
    asc, desc = _numbers(found["asc"]), _numbers(found["desc"])
    assert (
        asc == sorted(asc)
        and desc == sorted(desc, reverse=True)
        and found["sorted_class"] == "estimate"
    )
    assert asc[0] == pytest.approx(glob["estimate"].min(), rel=1e-3)
    want = int(((glob["exposure"] == feature) | (glob["outcome"] == feature)).sum())
    assert found["feature_matching"] == want
    shown = zip(found["feature_exposures"], found["feature_outcomes"])
    assert all(feature in (e, o) for e, o in shown) and len(found["feature_exposures"]) == min(
        50, want
    )
    n_causal = int((glob["verdict"] == "causal").sum()) if "verdict" in glob else 0
    assert found["causal_matching"] == n_causal
    assert set(found["causal_cells"]) == ({"causal"} if n_causal else set())
    assert found["columns_all"] > found["columns_decision"] >= 8


def test_small_report_in_chromium(tmp_path):
    path, glob, _ = _report(tmp_path)
    found = _browser.probe(path, tmp_path, feature="b")
    check_in_browser(found, glob, "b")
    assert set(FEATURES) <= set(found["svg_labels"])  # the causal graph names its nodes
    assert "heatmap_labels" not in found


def test_164_feature_report_in_chromium(tmp_path):
    template = pipeline.global_effects(_local_table(), N_SEQ)
    glob = zoo_table(template, 164)
    assert len(glob) == 164 * 163 * 2
    figs = report.figures.make_figures(tmp_path, glob, report.figures.DetailInputs.none())
    path = report.write_report(tmp_path / "report.html", _record(glob), glob, figs)
    check_self_contained(path)
    assert path.stat().st_size < 8e6
    found = _browser.probe(path, tmp_path, feature="f007")
    check_in_browser(found, glob, "f007")
    rows, cols = found["heatmap_labels"]
    assert 20 <= rows < 164 and 20 <= cols < 164  # every k-th label where all do not fit
    assert found["zoomed_labels"] == [12, 12]  # zoomed into a block: every label
    assert found["heatmap_colours"] > 20  # a drawn map, not one blank colour
    shot = _browser.screenshot(path, tmp_path / "shot.png", tmp_path)
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert img.shape[:2] == (2400, 1280) and img[..., :3].std() > 0.05
