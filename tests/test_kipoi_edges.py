"""Kipoi rough edges: user weight files replace the model's own, messages that suggest only options
that exist, the (L, 4, 1) layout with an extension-less HDF5 weight file read quietly, a BED with a
name column for the model's dataloader, and model.yaml files with Python tags refused before Kipoi
reads them."""

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deepmr_kipoi import sequences
from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models import WeightsNotFoundError, describe_model, load_model
from tests import _kipoi_fixtures as fx

torch = pytest.importorskip("torch")


def _onehot(n, length, seed):
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


def _basset_without_weights(zoo_torch, tmp_path):
    shutil.copytree(os.path.join(zoo_torch, "Basset"), tmp_path / "Basset")
    shutil.rmtree(tmp_path / "Basset" / "downloaded")
    return str(tmp_path)


def test_user_weights_replace_the_zoo_file_which_need_not_exist(zoo_torch, tmp_path):
    source = _basset_without_weights(zoo_torch, tmp_path / "zoo")
    arch = fx._import_file(os.path.join(zoo_torch, "Basset", "basset_arch.py"), "ref_basset_edges")
    files, nets = [], []
    for k in range(2):
        net = arch.basset()
        state = fx._seeded_state(net, 40 + k)
        path = tmp_path / f"fold{k}"  # no extension, as Kipoi names its downloads
        torch.save(state, path)
        net.load_state_dict(state)
        files.append(str(path))
        nets.append(net.eval())
    with pytest.raises(WeightsNotFoundError):  # the model's own file is gone
        load_model("Basset", source=source, uncertainty="none")
    single = load_model("Basset", source=source, uncertainty="none", weight_files=files[:1])
    x = _onehot(3, 600, seed=1)
    with torch.no_grad():
        p = (
            nets[0](torch.from_numpy(x.transpose(0, 2, 1)[..., None].copy()))
            .numpy()
            .astype(np.float64)
        )
    np.testing.assert_allclose(
        single.predict_samples(x)[0], np.log(p) - np.log1p(-p), rtol=1e-4, atol=1e-4
    )
    assert single.identity == {
        "weights": [{"path": files[0], "md5": fx.md5sum(files[0]), "replaces": "weights"}]
    }

    ensemble = load_model("Basset", source=source, weight_files=files)
    assert ensemble.n_samples == 2
    assert [w["md5"] for w in ensemble.identity["weights"]] == [fx.md5sum(f) for f in files]
    with torch.no_grad():
        p1 = (
            nets[1](torch.from_numpy(x.transpose(0, 2, 1)[..., None].copy()))
            .numpy()
            .astype(np.float64)
        )
    np.testing.assert_allclose(
        ensemble.predict_samples(x)[1], np.log(p1) - np.log1p(-p1), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("option", ["download=True", "--download", None])
def test_missing_weights_message_names_only_the_callers_option(zoo_torch, tmp_path, option):
    source = _basset_without_weights(zoo_torch, tmp_path)
    with pytest.raises(WeightsNotFoundError) as err:
        load_model("Basset", source=source, download_option=option)
    message = str(err.value)
    assert "place it at exactly that path" in message and "\n" not in message
    for spelling in ("download=True", "--download"):
        assert (spelling in message) == (spelling == option)


def test_default_uncertainty_hint_of_a_model_without_dropout(zoo, tmp_path):
    """BPNet has no dropout: one weight file gives one sample, and the hint says ensemble only."""
    model = load_model("BPNet-OSKN", source=zoo)
    assert model.n_samples == 1
    assert "several weight files" in model.uncertainty_hint
    assert "mc_dropout" not in model.uncertainty_hint and "MC" not in model.uncertainty_hint
    with_dropout = load_model(os.path.join(zoo, "Basset"), uncertainty="none")
    assert "mc_dropout" in with_dropout.uncertainty_hint


def test_nlc1_layout_round_trip():
    x = _onehot(2, 7, seed=3)
    y = sequences.to_layout(x, "NLC1")
    assert y.shape == (2, 7, 4, 1)
    np.testing.assert_array_equal(y[..., 0], x)
    np.testing.assert_array_equal(sequences.from_layout(y, "NLC1"), x)


KERAS_LOAD = """
import sys, warnings
warnings.simplefilter("always")
import numpy as np
from deepmr_kipoi.kipoi_models import load_model
model = load_model(sys.argv[1], uncertainty="none")
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict_samples(x)[0])
"""


def test_deepstarr_layout_keras_model_with_extensionless_hdf5_loads_quietly(tmp_path):
    """A DeepSTARR-like KerasModel: input (L, 4, 1), weights in an HDF5 file without extension
    (as Kipoi stores downloads); loaded in a fresh process, which prints no TensorFlow or
    pkg_resources lines, and predicts as the Keras model itself."""
    tf_keras = pytest.importorskip("tf_keras")
    length = 24
    model_dir = tmp_path / "starr"
    model_dir.mkdir()
    tf_keras.utils.set_random_seed(5)
    inp = tf_keras.layers.Input((length, 4, 1), name="seq")
    h = tf_keras.layers.Reshape((length, 4))(inp)
    h = tf_keras.layers.Conv1D(4, 5, activation="relu")(h)
    h = tf_keras.layers.GlobalAveragePooling1D()(h)
    out = tf_keras.layers.Dense(2)(h)
    net = tf_keras.Model(inp, out)
    (model_dir / "model.json").write_text(net.to_json())
    net.save_weights(str(model_dir / "w.h5"))
    os.rename(model_dir / "w.h5", model_dir / "weights")
    (model_dir / "model.yaml").write_text(
        textwrap.dedent(f"""
        defined_as: kipoi.model.KerasModel
        args:
          arch: model.json
          weights: weights
        default_dataloader:
          defined_as: kipoiseq.dataloaders.SeqIntervalDl
          default_args:
            auto_resize_len: {length}
            dummy_axis: 2
        info:
          authors:
            - name: deepmr test
          doc: DeepSTARR-shaped input.
        dependencies:
          pip:
            - numpy>=1.0
        schema:
          inputs:
            name: seq
            shape: ({length}, 4, 1)
            doc: one-hot DNA
          targets:
            name: activity
            shape: (2, )
            doc: dev and hk enhancer activity
            column_labels:
              - Dev
              - Hk
        """).lstrip()
    )
    assert describe_model(str(model_dir)).layout == "NLC1"
    x = _onehot(3, length, seed=4)
    np.save(tmp_path / "x.npy", x)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KERAS_LOAD,
            str(model_dir),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    for noise in ("sstable", "cuInit", "pkg_resources", "tensorflow/core"):
        assert noise not in proc.stderr, proc.stderr
    expected = net(x[..., None], training=False).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


def test_dataloader_reads_a_bed_with_a_name_column(torch_dir, tmp_path):
    from deepmr_kipoi.kipoi_models import dataloader_sequences
    from tests import _helpers_pipeline as helpers

    genome = "".join(helpers.random_dna(1, 300, seed=4))
    helpers.write_fasta(tmp_path / "g.fa", [genome], ["chr1"])
    (tmp_path / "r.bed").write_text("chr1\t20\t60\tpeak0\nchr1\t100\t140\tpeak1\n")
    ids, onehot = dataloader_sequences(
        torch_dir,
        dataloader_args={
            "intervals_file": str(tmp_path / "r.bed"),
            "fasta_file": str(tmp_path / "g.fa"),
        },
    )
    assert ids == ["chr1:20-60", "chr1:100-140"]
    np.testing.assert_array_equal(onehot, sequences.one_hot([genome[20:60], genome[100:140]]))


def _tagged_model(torch_dir, tmp_path):
    marker = tmp_path / "tag-ran"
    model_dir = tmp_path / "tagged"
    shutil.copytree(torch_dir, model_dir)
    yaml = (model_dir / "model.yaml").read_text()
    yaml = yaml.replace(
        "  doc: Tiny CNN with dropout for tests.",
        f'  doc: !!python/object/apply:os.system ["touch {marker}"]',
    )
    (model_dir / "model.yaml").write_text(yaml)
    return str(model_dir), marker


def test_model_yaml_with_python_tags_is_refused_before_kipoi_reads_it(torch_dir, tmp_path):
    model_dir, marker = _tagged_model(torch_dir, tmp_path)
    for call in (
        lambda: describe_model(model_dir),
        lambda: load_model(model_dir, uncertainty="none"),
    ):
        with pytest.raises(DeepMRInputError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and "python/object/apply:os.system" in message
        assert "trust_model_code=True" in message and "model.yaml" in message
        assert not marker.exists()
    # the refusal is what keeps the command from running: Kipoi's own reader runs it
    describe_model(model_dir, trust_model_code=True)
    assert marker.exists()


def test_extensionless_hdf5_is_read_as_hdf5_without_a_checkpoint_probe(
    keras_dir, tmp_path, monkeypatch
):
    """tf_keras probes a file without .h5 extension as a TensorFlow checkpoint first (the noisy
    "not an sstable" lines); inside legacy_keras the HDF5 signature decides at once."""
    from tf_keras.src.saving.legacy import save as legacy_save

    from deepmr_kipoi.kipoi_models._compat import legacy_keras

    path = tmp_path / "weights"
    shutil.copy(os.path.join(keras_dir, "weights.h5"), path)
    probes = []
    original = legacy_save._is_readable_tf_checkpoint
    monkeypatch.setattr(
        legacy_save, "_is_readable_tf_checkpoint", lambda p: probes.append(p) or original(p)
    )
    with legacy_keras():
        assert legacy_save._detect_save_format(str(path)) == (str(path), "h5")
    assert probes == []
    assert legacy_save._detect_save_format(str(path)) == (str(path), "h5")  # tf_keras' own way
    assert probes == [str(path)]
