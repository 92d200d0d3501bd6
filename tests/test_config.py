"""RunConfig: settings grouped by concern, built and read with the flat names; the resume hash over
the settings that change numbers."""

import dataclasses
import pickle

import pytest

from deepmr_kipoi.run import config as cfg
from deepmr_kipoi.run.config import RunConfig, config_hash, validate

IDENTITY = {"name": "m", "n_samples": 3, "n_features": 2}


def test_flat_names_build_and_read_the_groups():
    c = RunConfig(model="DeepSEA/predict", fasta="g.fa", z=2.5, out="run", window=(2, 9))
    assert (c.model, c.fasta, c.z, c.out, c.window) == (
        "DeepSEA/predict",
        "g.fa",
        2.5,
        "run",
        (2, 9),
    )
    assert c.model_source.model == "DeepSEA/predict" and c.sequence_source.fasta == "g.fa"
    assert c.instruments.z == 2.5 and c.outputs.out == "run" and c.sequence_source.window == (2, 9)
    assert c.mr == cfg.MRSettings() and c.execution == cfg.ExecutionSettings()
    grouped = RunConfig(instruments=cfg.InstrumentSettings(z=3.0), floor=0.2)
    assert (grouped.z, grouped.floor) == (3.0, 0.2)  # flat settings apply on top of a group


def test_replace_validate_pickle_and_dict_keep_the_flat_names():
    c = RunConfig(model="m", methods=["ivw"], meta_method="reml")
    v = validate(c)
    assert v.methods == ("ivw",) and v.meta_method == "REML" and c.meta_method == "reml"
    assert c.replace(z=3.0).z == 3.0 and c.z == 1.96
    assert dataclasses.replace(c, seed=7).execution.seed == 7
    assert pickle.loads(pickle.dumps(v)) == v
    d = v.to_dict()
    assert set(d) == set(cfg.SETTINGS) and len(d) == len(cfg.SETTINGS)
    assert validate(RunConfig.from_dict(d)) == v and d["methods"] == ["ivw"]
    with pytest.raises(TypeError, match="did you mean z"):
        RunConfig(zz=1.0)
    with pytest.raises(ValueError, match="unknown config key 'windw'; did you mean window"):
        RunConfig.from_dict({"windw": [0, 5]})
    with pytest.raises(AttributeError, match="no setting"):
        c.not_a_setting  # noqa: B018


def test_every_setting_is_effects_analysis_or_display_once():
    parts = [cfg.fields_affecting(kind) for kind in ("effects", "analysis", None)]
    flat = [name for part in parts for name in part]
    assert sorted(flat) == sorted(cfg.SETTINGS) and len(flat) == len(set(flat))
    assert "window" in parts[0] and "z" in parts[1] and "out" in parts[2]
    assert parts[2] == cfg.DISPLAY_FIELDS


@pytest.mark.parametrize(
    ("name", "value", "changes"),
    [
        ("out", "elsewhere", False),
        ("device", "cpu", False),
        ("executor", "dask", False),
        ("figures", False, False),
        ("z", 3.0, True),
        ("window", (0, 5), True),
        ("seed", 1, True),
    ],
)
def test_the_hash_changes_with_numbers_only(name, value, changes):
    base = validate(RunConfig(model="m"))
    other = validate(base.replace(**{name: value}))
    h = config_hash(base, IDENTITY, ["a", "b"], 10)
    assert (config_hash(other, IDENTITY, ["a", "b"], 10) != h) == changes
