"""ISM once, analyse many times: a run stores its per-sample ISM effects; a reanalysis with new
analysis settings reads them (no model runs) and gives the tables of a fresh run with those
settings; a changed analysis setting in the same folder reuses the effects with a note."""

from __future__ import annotations

import logging
import textwrap

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import deepmr_kipoi
from deepmr_kipoi import cli, pipeline
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run.reanalysis import reanalyze

pytestmark = pytest.mark.filterwarnings("ignore::deepmr_kipoi.errors.DeepMRWarning")

QUIET = {"progress": False, "figures": False, "report": False}
RUN = {"n_sequences": 8, "chunk_size": 3, "methods": ("ivw", "egger"), **QUIET}

WORKING = """
from tests._helpers_pipeline import tiny_model


def build(seed=0):
    return tiny_model(seed)
"""

RAISING = """
def build(seed=0):
    raise RuntimeError("the model was loaded, but a reanalysis must not need it")
"""


def _factory(folder, text):
    path = folder / "factory.py"
    path.write_text(textwrap.dedent(text))
    return f"{path}:build"


@pytest.fixture()
def first_run(tmp_path):
    spec = _factory(tmp_path, WORKING)
    result = pipeline.run(pipeline.RunConfig(model=spec, out=str(tmp_path / "run"), **RUN))
    return tmp_path, spec, result


def test_reanalysis_with_new_z_equals_a_fresh_run_without_the_model(first_run):
    tmp_path, spec, _ = first_run
    fresh = pipeline.run(pipeline.RunConfig(model=spec, z=3.0, **RUN))
    _factory(tmp_path, RAISING)  # from here on, loading the model fails
    again = reanalyze(tmp_path / "run", z=3.0, out=str(tmp_path / "z3"), **QUIET)
    assert_frame_equal(again.global_effects, fresh.global_effects)
    assert_frame_equal(again.local_effects, fresh.local_effects)
    assert "ism" not in again.record.timings_s
    # the reanalysed folder is a run folder of its own: it loads and reanalyses again
    back = deepmr_kipoi.load_run(tmp_path / "z3")
    assert_frame_equal(back.global_effects, fresh.global_effects)
    twice = back.reanalyze(z=1.96)
    first = deepmr_kipoi.load_run(tmp_path / "run")
    assert_frame_equal(twice.global_effects, first.global_effects)


def test_other_pairs_and_methods_and_the_command_line(first_run, capsys):
    tmp_path, spec, _ = first_run
    fresh = pipeline.run(
        pipeline.RunConfig(
            model=spec,
            exposures=["x"],
            outcomes=["y", "z"],
            methods=["ivw"],
            min_instruments=4,
            **{k: v for k, v in RUN.items() if k != "methods"},
        )
    )
    _factory(tmp_path, RAISING)
    argv = ["reanalyze", str(tmp_path / "run"), "--out", str(tmp_path / "cli"), "--exposures", "x"]
    argv += ["--outcomes", "y", "z", "--methods", "ivw", "--min-instruments", "4", "--no-figures"]
    assert cli.main([*argv, "-q"]) == 0
    got = deepmr_kipoi.load_run(tmp_path / "cli")
    assert_frame_equal(got.global_effects, fresh.global_effects)
    assert (
        cli.main(
            ["reanalyze", str(tmp_path / "run"), "--out", str(tmp_path / "x"), "--window", "0", "5"]
        )
        == 2
    )
    assert "unrecognized arguments: --window" in capsys.readouterr().err


def test_effects_settings_and_calibration_tables_need_the_model(first_run):
    tmp_path, _, _ = first_run
    with pytest.raises(DeepMRInputError, match="window changes the ISM effects"):
        reanalyze(tmp_path / "run", window=(0, 10))
    with pytest.raises(DeepMRInputError, match="calibration table is fitted on the model"):
        reanalyze(tmp_path / "run", calibration_table=str(tmp_path / "labels.tsv"))
    with pytest.raises(
        DeepMRInputError, match="unknown exposure|no feature|not a feature|matches no"
    ):
        reanalyze(tmp_path / "run", exposures=["nope"])


def test_a_changed_analysis_setting_in_the_same_folder_reuses_the_effects(first_run, caplog):
    tmp_path, spec, first = first_run
    with caplog.at_level(logging.WARNING):
        again = pipeline.run(
            pipeline.RunConfig(model=spec, z=2.5, out=str(tmp_path / "run"), **RUN)
        )
    assert any("stored ISM effects are reused" in r.getMessage() for r in caplog.records)
    assert "ism" not in again.record.timings_s
    fresh = pipeline.run(pipeline.RunConfig(model=spec, z=2.5, **RUN))
    assert_frame_equal(again.global_effects, fresh.global_effects)
    # the folder now holds the z = 2.5 run, and still its effects
    back = deepmr_kipoi.load_run(tmp_path / "run")
    assert back.config.z == 2.5
    assert back.effects.samples.shape[:2] == (4, 8)  # S members, N sequences


def test_a_calibrated_run_stores_raw_effects_and_reanalyses_like_a_fresh_run(tmp_path):
    """The run calibrates per-sample effects in place; the store must keep them raw, or every
    reanalysis of a calibrated run would apply the calibration twice."""
    from deepmr_kipoi import sequences
    from tests import _helpers_pipeline as helpers

    seqs = helpers.random_dna(40, helpers.LENGTH, seed=5)
    samples = helpers.tiny_model().predict_samples(sequences.one_hot(seqs))
    mean, sd = samples.mean(0), samples.std(0, ddof=1)
    y = mean + 3.0 * sd * np.random.default_rng(1).normal(size=mean.shape)
    labels = tmp_path / "labels.tsv"
    pd.DataFrame({"sequence": seqs, "x": y[:, 0], "y": y[:, 1]}).to_csv(
        labels, sep="\t", index=False
    )
    spec = _factory(tmp_path, WORKING)
    cal = {"calibration_table": str(labels), "calibration_method": "sigma"}
    run = pipeline.run(pipeline.RunConfig(model=spec, out=str(tmp_path / "cal"), **cal, **RUN))
    assert run.run_info["calibration"]["se_scale"]["x"] > 1.5
    pipeline.run(pipeline.RunConfig(model=spec, out=str(tmp_path / "raw"), **RUN))
    np.testing.assert_array_equal(
        deepmr_kipoi.load_run(tmp_path / "cal").effects.samples,
        deepmr_kipoi.load_run(tmp_path / "raw").effects.samples,
    )
    fresh = pipeline.run(pipeline.RunConfig(model=spec, z=3.0, **cal, **RUN))
    again = reanalyze(tmp_path / "cal", z=3.0, out=str(tmp_path / "z3"), **QUIET)
    assert_frame_equal(again.global_effects, fresh.global_effects)


def test_stored_effects_are_the_engines_per_sample_differences(first_run):
    from deepmr_kipoi import ism
    from deepmr_kipoi.run.inputs import load_sequences
    from tests._helpers_pipeline import tiny_model

    tmp_path, spec, result = first_run
    stored = deepmr_kipoi.load_run(tmp_path / "run").effects
    model = tiny_model(0)
    _, onehot = load_sequences(result.config, model.sequence_length)
    direct = ism.saturation_effects(model, onehot, per_sample=True, progress=False)
    np.testing.assert_array_equal(stored.samples, direct.samples.astype(np.float32))
    assert stored.feature_names == ("x", "y", "z", "w")


def test_figures_are_kept_when_nothing_they_show_changed(tmp_path):
    import os

    spec = _factory(tmp_path, WORKING)
    settings = {**RUN, "figures": True, "out": str(tmp_path / "run"), "n_examples": 1}
    settings.update(n_sequences=4, exposures=["x"], outcomes=["y"], methods=["ivw"])
    first = pipeline.run(pipeline.RunConfig(model=spec, **settings))
    files = [tmp_path / "run" / f for f in first.record.figures]
    inodes = [os.stat(f).st_ino for f in files]
    again = pipeline.run(pipeline.RunConfig(model=spec, **settings))  # every chunk resumed
    assert again.record.figures == first.record.figures
    assert [os.stat(f).st_ino for f in files] == inodes  # the same files, not drawn again
    other = pipeline.run(pipeline.RunConfig(model=spec, **{**settings, "z": 3.0}))
    assert other.record.figures_digest != first.record.figures_digest
    assert [os.stat(tmp_path / "run" / f).st_ino for f in other.record.figures] != inodes
