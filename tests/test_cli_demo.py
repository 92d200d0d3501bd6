"""``deepmr demo`` in a reduced size: no network, full results folder, headline against the truth."""

import json

import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import calibration, cli, demo, report, sequences, simulate
from tests import _browser
from tests.test_report import check_self_contained
from tests.test_report_browser import check_in_browser

pytest.importorskip("torch")


@pytest.mark.torch
def test_reduced_demo_writes_everything_and_compares_with_truth(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    monkeypatch.chdir(tmp_path)  # a relative --out, as a user types it
    assert cli.main(["demo", "--out", "demo", "--n-sequences", "4"]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    for name in (
        "global_effects.csv",
        "global_effects.parquet",
        "local_effects.parquet",
        "effects.h5",
        "report.html",
        "run.json",
        "config.yaml",
        "figures/truth.png",
    ):
        assert (out / name).is_file(), name
    assert len(list((out / "inputs").glob("demo_sequences_*.fa"))) == 1
    info = json.loads((out / "run.json").read_text())
    assert info["sequences"]["n"] == 4
    assert info["model"]["name"] == demo.DEMO_FACTORY
    assert all(len(w["md5"]) == 32 for w in info["model"]["weights"])
    # calibrated on held-out labelled sequences: the factors equal sigma scaling (Poisson noise of
    # variance 1 removed) fitted by hand on the model's predictions of that table
    tables = list((out / "inputs").glob("demo_labels_*.tsv"))
    assert len(tables) == 1 and info["calibration"]["method"] == "sigma"
    labels = pd.read_csv(tables[0], sep="\t")
    assert len(labels) == demo.CALIBRATION_SEQUENCES
    assert list(labels.columns) == ["sequence", *simulate.DEMO_FEATURES]
    samples = simulate.load_demo_model().predict_samples(sequences.one_hot(list(labels.sequence)))
    ref = calibration.fit(
        samples.mean(0),
        samples.std(0, ddof=1),
        labels[list(simulate.DEMO_FEATURES)].to_numpy(),
        method="sigma",
        aleatoric_variance=1.0,
    )
    np.testing.assert_allclose(
        list(info["calibration"]["se_scale"].values()), ref.se_scale, rtol=1e-6
    )
    assert (ref.se_scale > 1).all()  # the ensemble's spread understates its error
    truth = simulate.demo_truth(n=4, seed=0)
    recorded = pd.DataFrame(info["truth"])
    pd.testing.assert_frame_equal(recorded[["exposure", "outcome"]], truth[["exposure", "outcome"]])
    glob = pd.read_parquet(out / "global_effects.parquet")
    # the printed headline is the report's: claims (with the truth beside them), then the rest
    assert "\n".join(report.build_headline(glob, demo.truth_table(truth)).lines()) in printed
    s = report.truth_summary(glob, demo.truth_table(truth), "ivw")
    assert s["n"] == 6
    # the one planted effect (GATA1 -> TAL1) is found with its sign, as in the full demo
    assert [(r["exposure"], r["outcome"]) for r in s["strong"]] == [("GATA1", "TAL1")]
    assert s["sign_agreement"] == 1
    html = (out / "report.html").read_text()
    assert "Against the planted truth" in html
    check_self_contained(out / "report.html")
    if _browser.CHROMIUM is not None:  # the demo report in headless Chromium (CI installs it)
        check_in_browser(
            _browser.probe(out / "report.html", tmp_path, feature="TAL1"), glob, "TAL1"
        )
    # the written config repeats the run through `deepmr run`, from another folder (its paths are
    # absolute, not doubled as in demo/demo/inputs): every chunk is found finished (the figures,
    # drawn and checked above, are left out: without the truth they would all be drawn again)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert cli.main(["run", "--config", "../demo/config.yaml", "--no-figures", "--quiet"]) == 0, (
        capsys.readouterr().err
    )
    assert json.loads((out / "run.json").read_text())["chunks"]["resumed"] == [0]
