"""``deepmr run`` on a Kipoi model directory (PyTorchModel with dropout -> MC dropout)."""

import json

import pandas as pd
import pytest

from deepmr_kipoi import cli
from tests import _kipoi_fixtures as kf

pytest.importorskip("torch")


@pytest.mark.torch
def test_run_on_a_kipoi_model_directory(tmp_path, capsys):
    model_dir = kf.write_torch_model_dir(tmp_path / "tiny_cnn", length=40)
    out = tmp_path / "run"
    code = cli.main(
        [
            "run",
            "--model",
            model_dir,
            "--uncertainty",
            "mc_dropout",
            "--n-samples",
            "6",
            "--n-sequences",
            "2",
            "--z",
            "0",
            "--methods",
            "ivw",
            "--exposures",
            "TF_*",
            "--outcomes",
            "DNase",
            "--out",
            str(out),
            "--no-figures",
        ]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["model"]["n_samples"] == 6 and info["model"]["model_type"] == "PyTorchModel"
    weights = {w["arg"]: w for w in info["model"]["weights"]}
    assert len(weights["weights"]["md5"]) == 32
    glob = pd.read_csv(out / "global_effects.csv")
    assert sorted(zip(glob.exposure, glob.outcome)) == [("TF_A", "DNase"), ("TF_B", "DNase")]
    assert (glob.k == 2).all()


@pytest.mark.torch
def test_sequences_from_the_models_kipoi_dataloader(tmp_path, capsys):
    """kipoiseq's SeqIntervalDl (the fixture's default dataloader) reads BED intervals from a
    genome: the run's sequences are exactly those intervals, in ACGT order."""
    import numpy as np

    from deepmr_kipoi import pipeline, sequences
    from tests import _helpers_pipeline as helpers

    model_dir = kf.write_torch_model_dir(tmp_path / "tiny_cnn", length=40)
    genome = "".join(helpers.random_dna(1, 300, seed=4))
    helpers.write_fasta(tmp_path / "g.fa", [genome], ["chr1"])
    (tmp_path / "r.bed").write_text("chr1\t20\t60\nchr1\t100\t140\nchr1\t200\t240\n")
    ids, onehot = pipeline.load_sequences(
        pipeline.RunConfig(
            model=model_dir,
            sequences="dataloader",
            n_sequences=2,
            dataloader_args={
                "intervals_file": str(tmp_path / "r.bed"),
                "fasta_file": str(tmp_path / "g.fa"),
            },
        ),
        40,
    )
    assert ids == ["chr1:20-60", "chr1:100-140"]
    np.testing.assert_array_equal(onehot, sequences.one_hot([genome[20:60], genome[100:140]]))
    out = tmp_path / "run"
    code = cli.main(
        [
            "run",
            "--model",
            model_dir,
            "--sequences",
            "dataloader",
            "--dataloader-args",
            f"intervals_file={tmp_path / 'r.bed'}",
            f"fasta_file={tmp_path / 'g.fa'}",
            "--n-samples",
            "4",
            "--z",
            "0",
            "--methods",
            "ivw",
            "--out",
            str(out),
            "--no-figures",
            "--no-report",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["sequences"]["ids"] == ["chr1:20-60", "chr1:100-140", "chr1:200-240"]
    assert (
        cli.main(
            [
                "run",
                "--model",
                model_dir,
                "--sequences",
                "dataloader",
                "--out",
                str(tmp_path / "bad"),
                "-q",
            ]
        )
        == 2
    )
    assert "rejected its arguments" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
