"""Calibration in the run: effect SEs scaled by exactly the fitted calibrator's se_scale per feature,
the calibrator from a table equal to calibration.fit on the same predictions, report sections."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from deepmr_kipoi import calibration, pipeline, sequences
from tests import _helpers_pipeline as helpers
from tests.test_report import check_self_contained

FACTORY = f"{Path(__file__).parent / '_helpers_pipeline.py'}:tiny_model"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Labels whose spread is 3x the ensemble's SD for x and y (z, w unlabelled)."""
    base = tmp_path_factory.mktemp("cal")
    seqs = helpers.random_dna(60, helpers.LENGTH, seed=11)
    samples = helpers.tiny_model().predict_samples(sequences.one_hot(seqs))
    mean, sd = samples.mean(0), samples.std(0, ddof=1)
    rng = np.random.default_rng(0)
    y = mean + 3.0 * sd * rng.normal(size=mean.shape)
    table = pd.DataFrame({"sequence": seqs, "x": y[:, 0], "y": y[:, 1]})
    path = base / "labels.tsv"
    table.to_csv(path, sep="\t", index=False)
    return path, mean[:, :2], sd[:, :2], y[:, :2]


def test_calibrated_run_scales_effect_ses_per_feature(tmp_path, labelled):
    path, mean, sd, y = labelled
    common = dict(model=FACTORY, n_sequences=3, progress=False, methods=("ivw",), save_effects=True)
    raw = pipeline.run(
        pipeline.RunConfig(out=str(tmp_path / "raw"), figures=False, report=False, **common)
    )
    cal = pipeline.run(
        pipeline.RunConfig(
            out=str(tmp_path / "cal"),
            calibration_table=str(path),
            calibration_method="sigma",
            **common,
        )
    )
    ref = calibration.fit(mean, sd, y, method="sigma")
    scales = cal.run_info["calibration"]["se_scale"]
    assert set(scales) == {"x", "y"}
    np.testing.assert_allclose([scales["x"], scales["y"]], ref.se_scale, rtol=1e-10)
    assert 2.0 < scales["x"] < 4.0
    with h5py.File(raw.out_dir / "effects.h5") as f0, h5py.File(cal.out_dir / "effects.h5") as f1:
        se0, se1 = f0["se"][()], f1["se"][()]
        np.testing.assert_array_equal(f0["mean"][()], f1["mean"][()])
    factor = np.array([scales["x"], scales["y"], 1.0, 1.0], dtype=np.float32)
    np.testing.assert_allclose(se1, se0 * factor, rtol=1e-6)
    assert not any("not calibrated" in w for w in cal.warnings)
    text = (cal.out_dir / "report.html").read_text()
    assert "<h2>Calibration</h2>" in text and "overall, before" in text and "overall, after" in text
    headline = text[text.index('<section id="headline"') : text.index('<section id="overview"')]
    low, high = sorted(scales.values())
    assert f"(sigma, SE factors {low:.2g}-{high:.2g}): instruments, intervals" in headline
    assert (cal.out_dir / "figures" / "calibration.png").is_file()
    check_self_contained(cal.out_dir / "report.html")


def test_saved_calibrator_is_applied_by_name(tmp_path, labelled):
    _, mean, sd, y = labelled
    ref = calibration.fit(mean, sd, y, method="sigma", feature_names=["x", "y"])
    ref.save(tmp_path / "cal.json")
    res = pipeline.run(
        pipeline.RunConfig(
            model=FACTORY, n_sequences=2, progress=False, calibrator=str(tmp_path / "cal.json")
        )
    )
    np.testing.assert_allclose(list(res.run_info["calibration"]["se_scale"].values()), ref.se_scale)


def test_calibration_table_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"seq": ["ACGT"], "x": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(ValueError, match="needs a 'sequence' column"):
        pipeline.run(
            pipeline.RunConfig(
                model=FACTORY, n_sequences=2, progress=False, calibration_table=str(bad)
            )
        )
    short = tmp_path / "short.csv"
    pd.DataFrame({"sequence": ["ACGT", "ACGA"], "x": [1.0, 2.0]}).to_csv(short, index=False)
    with pytest.raises(ValueError, match="calibration sequences must all be 40"):
        pipeline.run(
            pipeline.RunConfig(
                model=FACTORY, n_sequences=2, progress=False, calibration_table=str(short)
            )
        )
