"""Inputs read as the user meant them, or one line naming the problem and the fix (third corpus).

* ``--feature-names`` with a factory model was accepted and ignored: refused in one line;
* a names file starting with a byte-order mark named the first feature ``'\\ufeffalpha'``;
* ``--weights ARCH.json W.h5`` for a Kipoi Keras model whose own file is a whole model was refused
  ("its weights file holds the whole model"): the pair is loaded;
* a Keras 3 file of the right architecture was refused as "does not fit": named as Keras 3, with
  the tf_keras fix;
* ``--sequences dataloader`` on a templated group member ended in a traceback: one line;
* a single-output model stopped with "exposure and outcome are the same feature": pointed to
  model panels;
* a bug before any chunk claimed "the chunks already computed are kept": it says none was.
"""

import textwrap
from pathlib import Path

import numpy as np
import pytest

from deepmr_kipoi import cli
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models.load import feature_names_from
from tests import _helpers_pipeline as helpers

HERE = Path(__file__).parent
FACTORY = f"{HERE / '_helpers_pipeline.py'}:tiny_model"


def _fasta(tmp_path: Path) -> Path:
    return helpers.write_fasta(tmp_path / "in.fa", helpers.random_dna(4, 40, seed=9))


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_feature_names_with_a_factory_is_refused(tmp_path, capsys):
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\n")
    argv = ["run", "--model", FACTORY, "--fasta", str(_fasta(tmp_path)), "--quiet"]
    argv += ["--feature-names", str(tmp_path / "names.txt"), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    line = _one_line(capsys)
    assert "--feature-names does not apply to the model factory" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("form", ["list", "mapping"])
def test_names_file_with_a_byte_order_mark(tmp_path, form):
    text = "alpha\nbeta\n" if form == "list" else "x,alpha\ny,beta\n"
    path = tmp_path / "names.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert feature_names_from(str(path), ("x", "y")) == ("alpha", "beta")


def _keras_net(tf_keras, seed: int):
    tf_keras.utils.set_random_seed(seed)
    inp = tf_keras.layers.Input((32, 4), name="seq")
    h = tf_keras.layers.Conv1D(6, 5, activation="relu", name="conv")(inp)
    h = tf_keras.layers.GlobalMaxPooling1D(name="pool")(h)
    out = tf_keras.layers.Dense(2, name="out")(h)
    return tf_keras.Model(inp, out)


@pytest.fixture(scope="module")
def whole_model_dir(tmp_path_factory):
    """A Kipoi KerasModel whose only model file is a whole-model h5 (no ``arch``)."""
    tf_keras = pytest.importorskip("tf_keras")
    from tests._kipoi_fixtures import save_keras_h5

    root = tmp_path_factory.mktemp("whole") / "m"
    root.mkdir()
    save_keras_h5(_keras_net(tf_keras, 1), root / "model.h5")
    (root / "model.yaml").write_text(
        textwrap.dedent("""\
        defined_as: kipoi.model.KerasModel
        args:
          weights: model.h5
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            auto_resize_len: 32
        info:
          authors:
            - name: t
          doc: whole-model h5
        schema:
          inputs:
            name: seq
            shape: (32, 4)
            doc: one-hot DNA
          targets:
            name: marks
            shape: (2, )
            doc: two marks
            column_labels: [m1, m2]
        """)
    )
    return root


def test_keras_architecture_and_weights_pair_for_a_whole_model(whole_model_dir, tmp_path):
    import tf_keras

    from deepmr_kipoi.kipoi_models import load_model

    net = _keras_net(tf_keras, 7)
    (tmp_path / "arch.json").write_text(net.to_json())
    net.save_weights(str(tmp_path / "w.h5"))
    model = load_model(
        str(whole_model_dir),
        weight_files=[str(tmp_path / "arch.json"), str(tmp_path / "w.h5")],
        uncertainty="none",
    )
    x = np.eye(4, dtype=np.float32)[np.random.default_rng(0).integers(0, 4, (3, 32))]
    np.testing.assert_allclose(
        model.predict_samples(x)[0], net(x, training=False).numpy(), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("kind", ["keras_archive", "keras3_h5", "keras3_weights"])
def test_a_keras3_file_is_named_as_such(whole_model_dir, tmp_path, kind):
    keras = pytest.importorskip("keras")
    if not keras.__version__.startswith("3."):
        pytest.skip("needs Keras 3")
    from deepmr_kipoi.kipoi_models import load_model

    inp = keras.Input((32, 4))
    h = keras.layers.Conv1D(6, 5, activation="relu", name="conv")(inp)
    net = keras.Model(inp, keras.layers.Dense(2, name="out")(keras.layers.GlobalMaxPooling1D()(h)))
    path = (
        tmp_path
        / {"keras_archive": "m.keras", "keras3_h5": "m.h5", "keras3_weights": "m.weights.h5"}[kind]
    )
    if kind == "keras3_weights":
        net.save_weights(str(path))
    else:
        net.save(str(path))
    with pytest.raises(DeepMRInputError) as info:
        load_model(str(whole_model_dir), weight_files=[str(path)], uncertainty="none")
    message = str(info.value)
    assert "\n" not in message and "Keras 3" in message and "tf_keras" in message
    assert "does not fit" not in message


def test_dataloader_sequences_of_a_group_member_is_one_line(kipoi_groups, tmp_path, capsys):
    from tests import _kipoi_groups as kg

    argv = ["run", "--model", "CpGenie/" + kg.CPGENIE_MODELS[0], "--source", kipoi_groups]
    argv += ["--sequences", "dataloader", "--out", str(tmp_path / "out"), "--quiet"]
    assert cli.main(argv) == 2
    line = _one_line(capsys)
    assert "dataloader" in line and "--dataloader-args" in line
    assert "chunks" not in line and not (tmp_path / "out").exists()


def test_a_single_output_model_is_pointed_to_model_panels(tmp_path, capsys):
    factory = tmp_path / "one.py"
    factory.write_text(
        "from deepmr_kipoi.predictive import DeepEnsemble, from_function\n"
        "def f():\n"
        "    return DeepEnsemble([from_function(lambda x, k=k: x[:, :, 0].sum(1, keepdims=True)"
        " * (1 + 0.1 * k), ('only',), sequence_length=40) for k in range(3)])\n"
    )
    argv = ["run", "--model", f"{factory}:f", "--fasta", str(_fasta(tmp_path)), "--quiet"]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 2
    line = _one_line(capsys)
    assert "this model has one output" in line
    assert "put it in a panel with another model: --model a=... --model b=..." in line
    assert "same feature" not in line


@pytest.mark.parametrize("when", ["before_any_chunk", "after_chunks"])
def test_a_bug_says_what_is_kept(tmp_path, capsys, monkeypatch, when):
    """An exception that is no input error: the last line says whether chunks were kept."""
    from deepmr_kipoi.run import aggregate, runner

    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    if when == "before_any_chunk":
        monkeypatch.setattr(runner, "_run_chunks", bug)
    else:
        monkeypatch.setattr(aggregate, "global_effects", bug)
    argv = ["run", "--model", FACTORY, "--fasta", str(_fasta(tmp_path)), "--quiet"]
    argv += ["--window", "10", "16", "--chunk-size", "2", "--no-figures"]
    assert cli.main([*argv, "--out", str(tmp_path / "out")]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "internal error" in last
    if when == "before_any_chunk":
        assert "no chunk was computed" in last and "kept" not in last
    else:
        assert "the 2 chunk(s) already computed are kept" in last
        assert len(list((tmp_path / "out" / "chunks").glob("local_*"))) == 2
