"""The Kipoi layer: compatibility steps, descriptions read from model.yaml, loading through Kipoi,
the missing-weights error, and sources (model directories, a local zoo copy, the default git source)."""

import importlib
import os
import shutil

import numpy as np
import pytest

from deepmr_kipoi import kipoi_models
from deepmr_kipoi.kipoi_models import WeightsNotFoundError, derive_layout, describe_model
from tests import _kipoi_fixtures as fx


def test_numpy_shims_and_import():
    from deepmr_kipoi.kipoi_models._compat import import_kipoi

    kipoi = import_kipoi()
    # numpy 2 removed these; kipoi's HDF5 writer compares dtypes against them
    aliases = {name: getattr(np, name) for name in ("string_", "unicode_")}
    assert aliases == {"string_": np.bytes_, "unicode_": np.str_}
    importlib.import_module("kipoi.writers")

    assert os.path.exists(os.path.join(os.path.expanduser("~"), ".kipoi", "config.yaml"))
    assert kipoi.__version__ == "0.8.6"


@pytest.mark.parametrize(
    "shape, axes, layout",
    [
        ((1000, 4), (None, None), "NLC"),
        ((4, 1, 1000), (0, 1), "NC1L"),
        ((4, 1, 2000), (0, 1), "NC1L"),
        ((4, 600, 1), (0, 2), "NCL1"),
        ((4, 250), (0, None), "NCL"),
        ((4, 4), (0, None), "NCL"),
        ((4, 4), (1, None), "NLC"),
        ((4, None, 1), (0, 2), "NCL1"),
        ((249, 4, 1), (1, 2), "NLC1"),  # DeepSTARR
        ((1000, 5), (None, None), None),
        ((2, 1000, 4), (None, None), None),
    ],
)
def test_derive_layout(shape, axes, layout):
    assert derive_layout(shape, *axes) == layout


def test_describe_zoo_models(zoo_torch):
    zoo = zoo_torch
    predict = describe_model("DeepSEA/predict", source=zoo)
    assert predict.model_type == "PyTorchModel"
    assert predict.input_shape == (4, 1, 200) and predict.layout == "NC1L"
    assert predict.alphabet == "ACGT" and predict.alphabet_axis == 0 and predict.dummy_axis == 1
    assert predict.sequence_length == 200 and predict.auto_resize_len == 200
    # labels from ../predictor_names.txt; the duplicated label is numbered in column order
    assert predict.feature_names == (
        "GM12878_CTCF_None",
        "A549_CTCF_None#1",
        "K562_DNase_None",
        "A549_CTCF_None#2",
        "HeLa_Pol2_None",
    )
    (weights,) = predict.weight_files
    assert weights.arg == "weights"
    assert weights.path == os.path.join(
        zoo, "DeepSEA", "predict", "downloaded", "model_files", "weights", weights.md5
    )
    assert weights.present and fx.md5sum(weights.path) == weights.md5

    beluga = describe_model("DeepSEA/beluga", source=zoo)
    assert beluga.alphabet == "AGCT" and beluga.layout == "NC1L" and beluga.sequence_length == 500
    assert beluga.feature_names == fx.BELUGA_LABELS

    basset = describe_model("Basset", source=zoo)
    assert basset.layout == "NCL1" and basset.input_shape == (4, 600, 1)
    assert basset.alphabet == "ACGT"  # SeqIntervalDl's own default, not in model.yaml
    assert basset.feature_names == fx.BASSET_LABELS


def test_describe_bpnet_in_the_zoo(zoo):
    bpnet = describe_model("BPNet-OSKN", source=zoo)
    assert bpnet.model_type == "custom" and bpnet.defined_as == "model.BPNetOldSeqModel"
    assert bpnet.layout == "NLC" and bpnet.sequence_length == 100
    assert bpnet.output_names == fx.BPNET_TASKS
    assert bpnet.output_shapes == ((100, 2),) * 4 and not bpnet.vector_outputs
    assert bpnet.feature_names == ()
    assert [w.arg for w in bpnet.weight_files] == ["model_file"]


def test_describe_model_dirs(torch_dir, keras_dir, dict_dir):
    t = describe_model(torch_dir)
    assert (t.source, t.name, t.layout, t.sequence_length) == ("dir", torch_dir, "NCL", 40)
    assert t.feature_names == fx.TORCH_FEATURES
    k = describe_model(keras_dir, source="dir")
    assert (k.model_type, k.layout, k.alphabet_axis) == ("KerasModel", "NLC", 1)
    assert k.feature_names == fx.KERAS_FEATURES  # from labels.txt
    d = describe_model(dict_dir)
    assert d.output_names == ("chip", "dnase")
    assert d.feature_names == ("chip/CTCF", "chip/REST", "dnase/0")


def test_registered_local_source_by_name(zoo_torch):
    import kipoi

    kipoi_models.add_local_source("deepmr-test-zoo-2", zoo_torch)
    assert "deepmr-test-zoo-2" in kipoi.config.model_sources()
    d = describe_model("DeepSEA/variantEffects", source="deepmr-test-zoo-2")
    assert d.source == "deepmr-test-zoo-2" and d.layout == "NC1L"
    with pytest.raises(ValueError, match="'dir' is reserved"):
        kipoi_models.add_local_source("dir", zoo_torch)


def test_bad_names_and_sources(zoo_torch, tmp_path):
    with pytest.raises(ValueError, match="Kipoi model 'DeepSEA/nothing' not found in source"):
        describe_model("DeepSEA/nothing", source=zoo_torch)
    with pytest.raises(ValueError, match="unknown Kipoi source 'nosuchsource'"):
        describe_model("DeepSEA/predict", source="nosuchsource")
    with pytest.raises(ValueError, match="directory without model.yaml"):
        describe_model(str(tmp_path))


def test_default_git_source_never_touches_the_network():
    # HOME is a fresh folder (conftest): no clone of github.com/kipoi/models exists
    with pytest.raises(
        ValueError,
        match=r"Kipoi source 'kipoi' has no local copy .* downloads are off: run `git clone",
    ):
        describe_model("DeepSEA/predict")


def test_github_permalink_source_needs_download():
    with pytest.raises(
        ValueError, match="clones models from GitHub on access and downloads are off"
    ):
        describe_model(
            "https://github.com/kipoi/models/tree/abc123/Basset", source="github-permalink"
        )


def test_label_count_mismatch_is_a_clear_error(tmp_path, torch_dir):
    model_dir = tmp_path / "m"
    shutil.copytree(torch_dir, model_dir)
    yaml = (model_dir / "model.yaml").read_text().replace("        - DNase\n", "")
    (model_dir / "model.yaml").write_text(yaml)
    with pytest.raises(ValueError, match=r"output 'scores' has shape \(3,\) but 2 column labels"):
        describe_model(str(model_dir))


def _copy_model(zoo, name, dst):
    shutil.copytree(os.path.join(zoo, name), os.path.join(dst, name))
    return os.path.join(dst, name)


def test_missing_weights_error_names_model_path_and_fix(zoo_torch, tmp_path):
    copy = _copy_model(zoo_torch, "Basset", tmp_path)
    shutil.rmtree(os.path.join(copy, "downloaded"))
    desc = describe_model("Basset", source=str(tmp_path))
    expected = os.path.join(
        str(tmp_path), "Basset", "downloaded", "model_files", "weights", desc.weight_files[0].md5
    )
    assert not desc.weight_files[0].present
    with pytest.raises(WeightsNotFoundError) as err:
        kipoi_models.load_model("Basset", source=str(tmp_path))
    message = str(err.value)
    assert "'Basset'" in message and expected in message
    assert "download https://example.invalid/deepmr-test/basset.pth" in message
    assert "place it at exactly that path" in message and "download=True" in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, FileNotFoundError)
    assert "\n" not in message


def test_wrong_md5_is_reported(zoo_torch, tmp_path):
    copy = _copy_model(zoo_torch, "Basset", tmp_path)
    (weights,) = os.listdir(os.path.join(copy, "downloaded", "model_files", "weights"))
    with open(os.path.join(copy, "downloaded", "model_files", "weights", weights), "ab") as f:
        f.write(b"corrupt")
    with pytest.raises(WeightsNotFoundError, match="does not match md5"):
        kipoi_models.load_model("Basset", source=str(tmp_path))


def test_kipoi_guard_blocks_downloads_it_would_start(zoo_torch, tmp_path):
    # the guard inside Kipoi's own download function, for files not checked beforehand
    import kipoi.specs

    from deepmr_kipoi.kipoi_models._compat import network_guard

    target = tmp_path / "files"
    with network_guard("SomeModel", download=False):
        remote = kipoi.specs.RemoteFile(url="https://example.invalid/x.bin", md5="0" * 32)
        with pytest.raises(
            WeightsNotFoundError, match=r"SomeModel.*Kipoi looked for .*files/x\.bin"
        ):
            remote.get_file(str(target / "x.bin"))
    assert kipoi.specs.download_url.__name__ == "download_url"


def test_kipoi_loads_the_test_models(torch_dir, keras_dir):
    import torch

    from deepmr_kipoi.kipoi_models import kipoi_request

    km = kipoi_request(torch_dir).kipoi_model()
    assert type(km).__name__ == "PyTorchModel" and isinstance(km.model, torch.nn.Module)
    x = np.zeros((2, 4, 40), np.float32)
    assert km.predict_on_batch(x).shape == (2, 3)

    kk = kipoi_request(keras_dir).kipoi_model()  # Keras-2 JSON + h5, read through tf_keras
    assert type(kk).__name__ == "KerasModel"
    assert kk.predict_on_batch(np.zeros((2, 32, 4), np.float32)).shape == (2, 2)
    import sys

    assert sys.modules.get("keras") is None or sys.modules["keras"].__name__ == "keras"


def test_load_model_argument_checks(torch_dir):
    with pytest.raises(ValueError, match="unknown uncertainty 'bayes'; choose from mc_dropout"):
        kipoi_models.load_model(torch_dir, uncertainty="bayes")
    with pytest.raises(ValueError, match="alphabet must be an order of the letters ACGT"):
        kipoi_models.load_model(torch_dir, alphabet="ACGU")
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        kipoi_models.load_model(torch_dir, n_samples=1)
    with pytest.raises(ValueError, match="weight file .* does not exist"):
        kipoi_models.load_model(torch_dir, weight_files=["/nonexistent/w.pth"])
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        kipoi_models.load_model(torch_dir, adapter="nope")
