"""A fully resumed ``deepmr run`` checks its key before loading the model and does not load it;
any change the key covers (a setting, the model's code) or a chunk that does not read back loads
the model as before, and the tables are those of the first run."""

import json
from pathlib import Path

import pandas as pd

from deepmr_kipoi import cli
from tests import _helpers_pipeline as helpers

FACTORY = """
from pathlib import Path

from tests._helpers_pipeline import tiny_model


def build():
    counter = Path(__file__).with_name("loads.txt")
    counter.write_text(str(int(counter.read_text() or 0) + 1 if counter.exists() else 1))
    return tiny_model()
"""


def _argv(tmp_path: Path, out: Path, *extra):
    return [
        "run",
        "--model",
        f"{tmp_path / 'factory.py'}:build",
        "--fasta",
        str(tmp_path / "in.fa"),
        "--window",
        "10",
        "20",
        "--chunk-size",
        "2",
        "--no-figures",
        "--no-report",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


def _loads(tmp_path: Path) -> int:
    return int((tmp_path / "loads.txt").read_text())


def test_a_fully_resumed_run_does_not_load_the_model(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    (tmp_path / "factory.py").write_text(FACTORY)
    helpers.write_fasta(tmp_path / "in.fa", helpers.random_dna(6, 40, seed=3))
    out = tmp_path / "run"
    assert cli.main(_argv(tmp_path, out)) == 0
    first = pd.read_csv(out / "global_effects.csv")
    assert _loads(tmp_path) == 1
    # the same command again: every chunk resumed, no model loaded, the same tables
    assert cli.main(_argv(tmp_path, out)) == 0
    assert _loads(tmp_path) == 1
    info = json.loads((out / "run.json").read_text())
    assert info["chunks"]["resumed"] == [0, 1, 2]
    pd.testing.assert_frame_equal(pd.read_csv(out / "global_effects.csv"), first)
    # a chunk whose files do not read back and whose effects are gone: the model computes it
    arrays = out / "chunks" / "arrays_00001.npz"
    arrays.write_bytes(arrays.read_bytes()[:100])
    for effects in (out / "chunks").glob("effects_000002_000004.npz"):
        effects.unlink()
    assert cli.main(_argv(tmp_path, out)) == 0
    assert _loads(tmp_path) == 2
    assert json.loads((out / "run.json").read_text())["chunks"]["resumed"] == [0, 2]
    pd.testing.assert_frame_equal(pd.read_csv(out / "global_effects.csv"), first)


def test_a_changed_setting_or_model_code_loads_the_model(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1]))
    (tmp_path / "factory.py").write_text(FACTORY)
    helpers.write_fasta(tmp_path / "in.fa", helpers.random_dna(6, 40, seed=3))
    out = tmp_path / "run"
    assert cli.main(_argv(tmp_path, out)) == 0
    # another analysis setting: another key, so the model is loaded (its stored effects reused)
    assert cli.main(_argv(tmp_path, out, "--z", "2.5")) == 0
    assert _loads(tmp_path) == 2
    # edited model code: the key differs, the model is loaded and the folder refused as before
    (tmp_path / "factory.py").write_text(FACTORY + "\n# edited\n")
    assert cli.main(_argv(tmp_path, out, "--z", "2.5")) == 2
    assert _loads(tmp_path) == 3
