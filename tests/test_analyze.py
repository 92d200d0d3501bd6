"""``deepmr_kipoi.analyze`` on every model form (PyTorch modules and lists, Keras lists, Kipoi model
objects, names, PredictiveModels) with arrays, DNA strings and FASTA files; ``load_run``; warnings.

The reference for each form is the same network wrapped by hand (``from_torch``/``from_keras`` +
``DeepEnsemble``) or loaded by name through ``pipeline.run``/``deepmr run``: the tables must be equal.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

import deepmr_kipoi
from deepmr_kipoi import pipeline, sequences
from deepmr_kipoi.errors import DeepMRInputError, DeepMRWarning
from tests._helpers_pipeline import tiny_model, write_fasta

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::deepmr_kipoi.errors.DeepMRWarning")

LENGTH = 30
FAST = {"methods": ("ivw",), "chunk_size": 4, "progress": False, "figures": False, "report": False}


def _net(seed: int = 0, dropout: float = 0.0):
    torch.manual_seed(seed)
    layers = [torch.nn.Conv1d(4, 6, 5), torch.nn.ReLU(), torch.nn.Flatten()]
    if dropout:
        layers.append(torch.nn.Dropout(dropout))
    layers.append(torch.nn.Linear(6 * (LENGTH - 4), 3))
    return torch.nn.Sequential(*layers).eval()


def _ensemble(n: int = 3):
    """Members: one network with small independent perturbations (a model's disagreement)."""
    base = _net()
    members = []
    for i in range(n):
        m = copy.deepcopy(base)
        gen = torch.Generator().manual_seed(100 + i)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen) * p.abs().mean())
        members.append(m.eval())
    return members


@pytest.fixture(scope="module")
def onehot():
    return sequences.random_sequences(6, LENGTH, seed=3)


@pytest.fixture(scope="module")
def by_hand(onehot):
    """The reference: the ensemble wrapped by hand and run through pipeline.run."""
    from deepmr_kipoi.predictive import DeepEnsemble, from_torch

    model = DeepEnsemble([from_torch(m, feature_names=["a", "b", "c"]) for m in _ensemble()])
    config = pipeline.RunConfig(**FAST)
    ids = [f"seq_{i}" for i in range(len(onehot))]
    return pipeline.run(config, model=model, sequences=(ids, onehot))


def test_torch_list_arrays_both_layouts_strings_and_fasta(by_hand, onehot, tmp_path):
    names = ["a", "b", "c"]
    nlc = deepmr_kipoi.analyze(_ensemble(), onehot, feature_names=names, **FAST)
    ncl = deepmr_kipoi.analyze(_ensemble(), onehot.transpose(0, 2, 1), feature_names=names, **FAST)
    dna = deepmr_kipoi.analyze(_ensemble(), sequences.decode(onehot), feature_names=names, **FAST)
    fa = tmp_path / "seqs.fa"
    write_fasta(fa, sequences.decode(onehot), [f"seq_{i}" for i in range(len(onehot))])
    from_file = deepmr_kipoi.analyze(_ensemble(), str(fa), feature_names=names, **FAST)
    for result in (nlc, ncl, dna, from_file):
        assert isinstance(result, deepmr_kipoi.Analysis)
        assert_frame_equal(result.global_effects, by_hand.global_effects)
        assert_frame_equal(result.local_effects, by_hand.local_effects)
    assert nlc.run_info["model"]["n_samples"] == 3
    assert nlc.run_info["sequences"]["source"] == "one-hot array given"


def test_torch_default_feature_names_and_layout_option(onehot):
    from deepmr_kipoi.predictive import DeepEnsemble, from_torch

    class NLCNet(torch.nn.Module):
        """The same network, fed (N, L, 4) as Keras-style models are."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.transpose(1, 2))

    members = [NLCNet(m).eval() for m in _ensemble()]
    got = deepmr_kipoi.analyze(members, onehot, layout="NLC", **FAST)
    ref = DeepEnsemble(
        [from_torch(m, ["feature_0", "feature_1", "feature_2"]) for m in _ensemble()]
    )
    want = pipeline.run(
        pipeline.RunConfig(**FAST),
        model=ref,
        sequences=([f"seq_{i}" for i in range(len(onehot))], onehot),
    )
    assert_frame_equal(got.global_effects, want.global_effects)
    assert set(got.global_effects["exposure"]) == {"feature_0", "feature_1", "feature_2"}


def test_single_module_with_dropout_gets_mc_dropout_and_deterministic_is_refused(onehot):
    from deepmr_kipoi.predictive import MCDropout, from_torch

    net = _net(dropout=0.2)
    got = deepmr_kipoi.analyze(net, onehot, n_samples=4, seed=1, **FAST)
    ref = MCDropout(from_torch(net, ["feature_0", "feature_1", "feature_2"]), n_samples=4, seed=1)
    want = pipeline.run(
        pipeline.RunConfig(n_samples=4, seed=1, **FAST),
        model=ref,
        sequences=([f"seq_{i}" for i in range(len(onehot))], onehot),
    )
    assert_frame_equal(got.global_effects, want.global_effects)
    with pytest.raises(DeepMRInputError, match=r"analyze\(\[model_1, model_2"):
        deepmr_kipoi.analyze(_net(), onehot, **FAST)
    # (a dict is a model panel, {label: model}: tests/test_panel.py)
    with pytest.raises(DeepMRInputError, match="cannot analyse a model of type set"):
        deepmr_kipoi.analyze({"not a model"}, onehot, **FAST)


def test_keras_list(onehot):
    keras = pytest.importorskip("keras")
    from deepmr_kipoi.predictive import DeepEnsemble, from_keras

    def build(seed):
        keras.utils.set_random_seed(seed)
        inp = keras.Input((LENGTH, 4))
        h = keras.layers.Conv1D(4, 5, activation="relu")(inp)
        out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(h))
        return keras.Model(inp, out)

    base = build(0)
    models = []
    for i in range(3):
        m = build(0)
        m.set_weights(
            [
                w * (1 + 0.05 * np.random.default_rng(i).standard_normal(w.shape))
                for w in base.get_weights()
            ]
        )
        models.append(m)
    got = deepmr_kipoi.analyze(models, sequences.decode(onehot), feature_names=["p", "q"], **FAST)
    ref = DeepEnsemble([from_keras(m, ["p", "q"]) for m in models])
    want = pipeline.run(
        pipeline.RunConfig(**FAST),
        model=ref,
        sequences=([f"seq_{i}" for i in range(len(onehot))], onehot),
    )
    assert_frame_equal(got.global_effects, want.global_effects)


def test_kipoi_object_takes_names_from_its_description(torch_dir, tmp_path):
    import kipoi

    from tests import _kipoi_fixtures as fx

    onehot = sequences.random_sequences(6, 40, seed=5)
    fa = tmp_path / "s.fa"
    write_fasta(fa, sequences.decode(onehot))
    obj = kipoi.get_model(torch_dir, source="dir", with_dataloader=False)
    got = deepmr_kipoi.analyze(obj, str(fa), n_samples=4, **FAST)
    assert set(got.global_effects["exposure"]) == set(fx.TORCH_FEATURES)
    by_name = deepmr_kipoi.analyze(torch_dir, str(fa), n_samples=4, **FAST)
    assert_frame_equal(got.global_effects, by_name.global_effects)


def test_name_route_equals_the_command_line_and_load_run_round_trips(torch_dir, tmp_path):
    from deepmr_kipoi import cli

    onehot = sequences.random_sequences(6, 40, seed=6)
    fa = tmp_path / "s.fa"
    write_fasta(fa, sequences.decode(onehot))
    common = ["--n-samples", "4", "--methods", "ivw", "--chunk-size", "4", "--no-figures"]
    assert (
        cli.main(
            [
                "run",
                "--model",
                torch_dir,
                "--fasta",
                str(fa),
                *common,
                "--out",
                str(tmp_path / "cli"),
                "-q",
            ]
        )
        == 0
    )
    got = deepmr_kipoi.analyze(
        torch_dir,
        str(fa),
        n_samples=4,
        methods=["ivw"],
        chunk_size=4,
        figures=False,
        out=tmp_path / "nb",
        progress=False,
    )
    from_cli = deepmr_kipoi.load_run(tmp_path / "cli")
    assert_frame_equal(got.global_effects, from_cli.global_effects)
    back = deepmr_kipoi.load_run(tmp_path / "nb")
    assert_frame_equal(back.global_effects, got.global_effects)
    assert_frame_equal(back.local_effects, got.local_effects)
    assert back.warnings == got.warnings
    assert back.config.n_samples == 4
    assert len(back.verdicts) == len(got.global_effects)  # one method: one row per ordered pair
    with pytest.raises(DeepMRInputError, match="holds no finished run"):
        deepmr_kipoi.load_run(tmp_path)


def test_warnings_reach_python_and_random_dna_is_named():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deepmr_kipoi.analyze(tiny_model(), None, n_sequences=6, **FAST)
    texts = [str(w.message) for w in caught if issubclass(w.category, DeepMRWarning)]
    assert texts == list(result.warnings)
    assert any("random DNA" in t for t in texts)
    assert caught[0].filename == __file__  # points at the caller's line


def test_warnings_and_errors_name_python_arguments():
    """Through ``analyze`` the run's messages name its keywords, not the command line's options."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = deepmr_kipoi.analyze(tiny_model(), None, n_sequences=6, **FAST)
    texts = [str(w.message) for w in caught if issubclass(w.category, DeepMRWarning)]
    uncalibrated = [t for t in texts if "not calibrated" in t]
    assert uncalibrated and "(no calibration_table= or calibrator=)" in uncalibrated[0]
    assert not any("--" in t for t in texts) and texts == list(result.warnings)
    # the command line keeps its options
    cli = pipeline.run(pipeline.RunConfig(n_sequences=6, **FAST), model=tiny_model())
    assert any("--calibration-table" in w for w in cli.warnings)
    with pytest.raises(DeepMRInputError, match=r"lower z=, widen window=") as err:
        deepmr_kipoi.analyze(tiny_model(), None, n_sequences=3, z=1e6, **FAST)
    assert "--" not in str(err.value)
    from deepmr_kipoi.predictive import DeepEnsemble, from_function

    def one_output(k):
        return from_function(lambda x: k * x[:, :, 0].sum(1, keepdims=True), ["f"], 20)

    one = DeepEnsemble([one_output(1.0), one_output(2.0)])
    with pytest.raises(DeepMRInputError, match=r'a dict of models: analyze\(\{"a": ...'):
        deepmr_kipoi.analyze(one, None, n_sequences=2, **FAST)


def test_repr_is_short_and_html_summarises(by_hand):
    result = deepmr_kipoi.Analysis.from_result(by_hand)
    text = repr(result)
    assert len(text) < 200 and "ordered pairs" in text
    page = result._repr_html_()
    assert "ordered pairs" in page and "<table" in page and "max-height:600px" in page
    verdicts = result.verdicts
    assert len(verdicts) == len(verdicts[["exposure", "outcome"]].drop_duplicates())
    assert isinstance(verdicts, pd.DataFrame)


def test_import_stays_light():
    code = (
        "import sys, deepmr_kipoi; deepmr_kipoi.analyze; deepmr_kipoi.load_run; "
        "assert not {'torch', 'tensorflow', 'keras'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
