"""``deepmr info MODEL``: features with index, input, weights, uncertainty and how to run it, for
Kipoi directories, templated group members and factories; ``--dataloader-args`` in Kipoi's JSON
form."""

from __future__ import annotations

import os
import shutil

import pytest

from deepmr_kipoi import cli
from deepmr_kipoi.analysis.info import model_info
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.run import arguments


def test_kipoi_directory_from_its_description(torch_dir, tmp_path, capsys):
    from tests import _kipoi_fixtures as fx

    info = model_info(torch_dir)
    assert info.features == fx.TORCH_FEATURES
    assert (info.layout, info.sequence_length, info.alphabet) == ("NCL", 40, "ACGT")
    assert [present for _, _, present in info.weights] == [True]
    assert cli.main(["info", torch_dir]) == 0
    text = capsys.readouterr().out
    for i, name in enumerate(fx.TORCH_FEATURES):
        assert f"{i:>4} {name}" in text
    assert "input: NCL (N, 4, L), length 40, alphabet ACGT" in text
    assert (
        f"deepmr run --model {torch_dir} --fasta seqs.fa --exposures TF_A --outcomes DNase" in text
    )
    # a copy without its weight file says so
    copy = shutil.copytree(torch_dir, tmp_path / "copy")
    os.remove(copy / "weights.pth")
    assert cli.main(["info", str(copy)]) == 0
    assert "weights (weights): MISSING" in capsys.readouterr().out


def test_templated_group_member(kipoi_groups):
    from tests._kipoi_groups import CPGENIE_LABELS, CPGENIE_MODELS

    info = model_info(f"CpGenie/{CPGENIE_MODELS[0]}", source=kipoi_groups)
    assert info.features == CPGENIE_LABELS
    assert info.layout == "NC1L"
    assert all(present for _, _, present in info.weights)


def test_factory_is_loaded_and_unknown_models_are_one_line(capsys):
    info = model_info("tests/_helpers_pipeline.py:tiny_model")
    assert info.features == ("x", "y", "z", "w")
    assert info.kind == "Python factory" and "4 samples" in info.uncertainty
    assert cli.main(["info", "./no/such/model_dir"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(DeepMRInputError):
        model_info("")


def test_dataloader_args_take_kipoi_json():
    parsed = arguments.dataloader_args(
        ['{"intervals_file": "a.bed", "fasta_file": "g.fa", "n": 3}']
    )
    assert parsed == {"intervals_file": "a.bed", "fasta_file": "g.fa", "n": 3}
    assert arguments.dataloader_args(["intervals_file=a.bed", "fasta_file=g.fa"]) == {
        "intervals_file": "a.bed",
        "fasta_file": "g.fa",
    }
    with pytest.raises(DeepMRInputError, match="not valid JSON"):
        arguments.dataloader_args(['{"intervals_file": '])
    with pytest.raises(DeepMRInputError, match="KEY=VALUE items or one JSON object"):
        arguments.dataloader_args(["intervals_file"])


def test_panel_lists_each_members_features_as_the_run_names_them(torch_dir, capsys):
    """``deepmr info --model a=M1 --model b=M2``: every member, its window in the common
    sequences and its features under the ``label/feature`` names a panel run gives them."""
    from deepmr_kipoi.run.config import RunConfig
    from deepmr_kipoi.run.inputs import load_configured_model
    from tests import _kipoi_fixtures as fx

    factory = "tests/_panel_sim.py:model_b"
    assert cli.main(["info", "--model", f"k={torch_dir}", "--model", f"b={factory}"]) == 0
    text = capsys.readouterr().out
    panel, _ = load_configured_model(RunConfig(model={"k": torch_dir, "b": factory}))
    assert panel.feature_names == tuple(f"k/{f}" for f in fx.TORCH_FEATURES) + ("b/Y",)
    listed = [line.split()[1] for line in text.splitlines() if line.startswith("     ")]
    assert tuple(listed) == panel.feature_names
    # the common sequences have the longest input (50 bases); the 40-bp model reads 5-45
    assert "sequences of 50 bases" in text and "length 40, alphabet ACGT; reads bases 5-45" in text
    assert f"deepmr run --model k={torch_dir} --model b={factory}" in text
    # one model stays as before; a panel and a model together are refused in one line
    assert cli.main(["info", "--model", factory]) == 0
    assert capsys.readouterr().out.startswith(f"{factory}: Python factory")
    assert cli.main(["info", torch_dir, "--model", f"b={factory}"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
