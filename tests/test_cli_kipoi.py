"""``deepmr run`` on a Kipoi model directory (PyTorchModel with dropout -> MC dropout)."""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("torch")

import _kipoi_fixtures as kf  # noqa: E402

from deepmr_kipoi import cli  # noqa: E402


@pytest.mark.torch
def test_run_on_a_kipoi_model_directory(tmp_path, capsys):
    model_dir = kf.write_torch_model_dir(tmp_path / "tiny_cnn", length=40)
    out = tmp_path / "run"
    code = cli.main(["run", "--model", model_dir, "--uncertainty", "mc_dropout", "--n-samples", "6",
                     "--n-sequences", "2", "--z", "0", "--methods", "ivw", "--exposures", "TF_*",
                     "--outcomes", "DNase", "--out", str(out), "--no-figures"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["n_samples"] == 6 and info["model"]["model_type"] == "PyTorchModel"
    weights = {w["arg"]: w for w in info["model"]["weights"]}
    assert len(weights["weights"]["md5"]) == 32
    glob = pd.read_csv(out / "global_effects.csv")
    assert sorted(zip(glob.exposure, glob.outcome)) == [("TF_A", "DNase"), ("TF_B", "DNase")]
    assert (glob.k == 2).all()
