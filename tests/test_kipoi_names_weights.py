"""Output names for models whose outputs have none (``feature_names=``, a list or a file), and user
Keras files in place of a model's own: weights, an architecture JSON with its weights, or a
whole-model h5 -- each checked against the Keras network run directly."""

import os
import shutil

import numpy as np
import pytest

from deepmr_kipoi.errors import DeepMRInputError
from deepmr_kipoi.kipoi_models import load_model
from tests import _keras_models as km
from tests import _kipoi_groups as kg

tf_keras = pytest.importorskip("tf_keras")


@pytest.fixture(scope="module")
def starr(tmp_path_factory):
    pytest.importorskip("torch")  # the DeepSTARR builder lives beside the PyTorch zoo architectures
    return km.write_deepstarr_dir(
        tmp_path_factory.mktemp("starr") / "DeepSTARR", length=60, scale=8
    )


def test_unnamed_outputs_get_names_from_a_list_or_a_file(starr, tmp_path):
    model_dir, net = starr
    plain = load_model(model_dir, uncertainty="none")
    # the zoo's DeepSTARR: one target (2,) without labels, two Dense(1) heads side by side
    assert plain.feature_names == ("output0/0", "output0/1")
    x = kg.onehot(3, 60, seed=0)
    want = np.concatenate([o.numpy() for o in net(x, training=False)], axis=1)
    np.testing.assert_allclose(plain.predict_samples(x)[0], want, rtol=1e-5, atol=1e-6)

    named = load_model(model_dir, uncertainty="none", feature_names=["Dev", "Hk"])
    assert named.feature_names == ("Dev", "Hk") and named.members[0].feature_names == ("Dev", "Hk")
    np.testing.assert_array_equal(named.predict_samples(x), plain.predict_samples(x))

    listed = tmp_path / "names.txt"
    listed.write_text("# one name per output\nDev\nHk\n")
    assert load_model(model_dir, uncertainty="none", feature_names=listed).feature_names == (
        "Dev",
        "Hk",
    )
    mapping = tmp_path / "map.tsv"
    mapping.write_text("output0/1\thousekeeping\n")
    mc = load_model(model_dir, n_samples=3, feature_names=str(mapping))
    assert mc.feature_names == ("output0/0", "housekeeping") and mc.n_samples == 3

    with pytest.raises(DeepMRInputError, match="3 feature names given for a model with 2 outputs"):
        load_model(model_dir, feature_names=["a", "b", "c"])
    with pytest.raises(DeepMRInputError, match="unique and non-empty .repeated: a"):
        load_model(model_dir, feature_names=["a", "a"])
    mapping.write_text("Dev,Developmental\n")
    with pytest.raises(
        DeepMRInputError, match="renames 'Dev', which is not an output of the model"
    ):
        load_model(model_dir, feature_names=mapping)


def _member_files(group_dir, model, tmp_path, k):
    """The group member's architecture and weights, copied out under user names."""
    base = os.path.join(group_dir, "downloaded", "model_files", model)
    arch = shutil.copy(
        os.path.join(base, "arch", os.listdir(os.path.join(base, "arch"))[0]),
        tmp_path / f"arch{k}.json",
    )
    weights = shutil.copy(
        os.path.join(base, "weights", os.listdir(os.path.join(base, "weights"))[0]),
        tmp_path / f"weights{k}.h5",
    )
    return str(arch), str(weights)


def test_keras_architecture_and_weights_pairs_replace_the_models_own(kipoi_groups, tmp_path):
    source = tmp_path / "zoo"
    shutil.copytree(os.path.join(kipoi_groups, "CpGenie"), source / "CpGenie")
    group = str(source / "CpGenie")
    files, nets = [], []
    for k, model in enumerate(kg.CPGENIE_MODELS):
        files += _member_files(group, model, tmp_path, k)
        nets.append(kg.keras_reference(group, model))
    # the model's own architecture and weights are gone: the user's pairs stand in for both
    shutil.rmtree(os.path.join(group, "downloaded", "model_files", kg.CPGENIE_MODELS[0]))
    name = "CpGenie/" + kg.CPGENIE_MODELS[0]
    ensemble = load_model(name, source=str(source), weight_files=files)
    assert type(ensemble).__name__ == "DeepEnsemble" and ensemble.n_samples == 2
    x = kg.onehot(3, 251, seed=1)
    feed = x.transpose(0, 2, 1)[:, :, None, :]
    samples = ensemble.predict_samples(x)
    for k, net in enumerate(nets):
        np.testing.assert_allclose(
            samples[k], net(feed, training=False).numpy(), rtol=1e-5, atol=1e-6
        )
    assert [w["replaces"] for w in ensemble.identity["weights"]] == [
        "arch",
        "weights",
        "arch",
        "weights",
    ]

    # a whole-model h5 carries its own architecture
    whole = tmp_path / "whole.h5"
    kg.save_keras_h5(nets[1], whole)
    single = load_model(name, source=str(source), weight_files=[str(whole)], uncertainty="none")
    np.testing.assert_allclose(single.predict_samples(x)[0], samples[1], rtol=1e-5, atol=1e-6)

    with pytest.raises(DeepMRInputError, match=r"arch0\.json is not followed by its weights file"):
        load_model(name, source=str(source), weight_files=[files[0]])
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an HDF5 file")
    with pytest.raises(DeepMRInputError, match=r"bad\.h5 does not fit CpGenie/A549_ENCSR000DDI"):
        load_model(name, source=str(source), weight_files=[files[0], str(bad)], uncertainty="none")


def test_deepmr_run_with_feature_names(starr, tmp_path, capsys):
    import pandas as pd

    from deepmr_kipoi import cli

    model_dir, _ = starr
    (tmp_path / "names.txt").write_text("Dev\nHk\n")
    (tmp_path / "run.yaml").write_text(f"model: {model_dir}\nfeature_names: [names.txt]\n")
    out = tmp_path / "run"
    code = cli.main(
        [
            "run",
            "--config",
            str(tmp_path / "run.yaml"),
            "--n-samples",
            "3",
            "--n-sequences",
            "2",
            "--window",
            "20",
            "40",
            "--z",
            "0",
            "--methods",
            "ivw",
            "--exposures",
            "Dev",
            "--out",
            str(out),
            "--no-figures",
            "--no-report",
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    glob = pd.read_csv(out / "global_effects.csv")
    assert list(zip(glob.exposure, glob.outcome)) == [("Dev", "Hk")]
    code = cli.main(
        ["run", "--model", model_dir, "--feature-names", "a", "--out", str(tmp_path / "x"), "-q"]
    )
    assert (
        code == 2 and "1 feature names given for a model with 2 outputs" in capsys.readouterr().err
    )
