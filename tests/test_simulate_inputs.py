"""User mistakes in the simulation helpers raise DeepMRInputError with one line naming the fix."""

import numpy as np
import pytest

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.simulate import demo_model as demo
from deepmr_kipoi.simulate import motifs
from deepmr_kipoi.simulate.model import ModelConfig
from deepmr_kipoi.simulate.train import TrainConfig, train_ensemble

GATA = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]], dtype=float)


def _jaspar(tmp_path, text):
    path = tmp_path / "m.jaspar"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda tmp: demo.demo_sequences(n=0),
            r"n \(number of demo sequences\) must be an integer >= 1",
        ),
        (lambda tmp: demo.load_demo_model(str(tmp)), "run examples/simulation/train_demo_model.py"),
        (lambda tmp: ModelConfig(channels=(8, 8)), "need 3 values each"),
        (lambda tmp: ModelConfig(kernel_sizes=(4, 3, 3)), "odd positive integers"),
        (lambda tmp: ModelConfig(dropout=1.0), r"dropout must be >= 0 and < 1, got 1"),
        (lambda tmp: TrainConfig(n_members=1), "n_members must be an integer >= 2"),
        (lambda tmp: TrainConfig(val_fraction=0.0), r"val_fraction must be > 0 and < 1"),
        (lambda tmp: TrainConfig(patience=0), "patience must be an integer >= 1"),
        (lambda tmp: motifs.Motif("m", "MA1", np.ones((3, 5))), r"shape \(W, 4\)"),
        (lambda tmp: motifs.Motif("m", "MA1", -GATA), "give counts >= 0"),
        (lambda tmp: motifs.Motif("m", "MA1", GATA * [[1], [0], [1]]), "count > 0"),
        (
            lambda tmp: motifs.Motif("m", "MA1", GATA).probabilities(1.0),
            "pseudocount must be >= 0 and < 1",
        ),
        (lambda tmp: motifs.check_background([0.5, 0.5, 0, 0]), "summing to 1"),
        (lambda tmp: motifs.read_jaspar(_jaspar(tmp, "A [ 1 ]\n")), "must start with '>'"),
        (lambda tmp: motifs.read_jaspar(_jaspar(tmp, ">MA1 m\nX [ 1 ]\n")), "'A \\[ counts \\]'"),
        (
            lambda tmp: motifs.read_jaspar(_jaspar(tmp, ">MA1 m\nA [ 1 ]\nC [ 1 2 ]\n")),
            "equally long",
        ),
        (lambda tmp: motifs.load_motif("NOPE"), "unknown motif 'NOPE'"),
        (lambda tmp: motifs.window_scores(np.zeros((1, 2, 4)), GATA), "at least 3 bases"),
        (
            lambda tmp: train_ensemble(np.zeros((2, 5)), np.zeros((2, 2))),
            r"onehot must have shape \(N, L, 4\)",
        ),
        (
            lambda tmp: train_ensemble(np.zeros((2, 5, 4)), np.zeros((3, 2))),
            "one row of labels per sequence",
        ),
    ],
)
def test_simulation_user_mistakes_are_input_errors(tmp_path, call, match):
    with pytest.raises(DeepMRInputError, match=match) as info:
        call(tmp_path)
    assert "\n" not in str(info.value)
