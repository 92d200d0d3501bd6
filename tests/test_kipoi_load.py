"""The generic adapter on Kipoi model directories built by the tests: a PyTorchModel with dropout, a
KerasModel (JSON + h5), a model with a dict of outputs; values against the networks run directly,
uncertainty (MC dropout, ensembles over weight files) and a Deep MR run labelled with feature names."""

import os

import numpy as np
import pytest

from deepmr_kipoi.kipoi_models import load_model
from tests import _kipoi_fixtures as fx

torch = pytest.importorskip("torch")


def _onehot(n, length, seed):
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


def _torch_net(model_dir, cls, weights=None):
    mod = fx._import_file(os.path.join(model_dir, "tiny_cnn.py"), f"ref_{cls}")
    net = getattr(mod, cls)()
    net.load_state_dict(torch.load(weights or os.path.join(model_dir, "weights.pth")))
    return net.eval()


def test_generic_torch_model(torch_dir):
    model = load_model(torch_dir, uncertainty="none")
    assert model.feature_names == fx.TORCH_FEATURES and model.sequence_length == 40
    x = _onehot(4, 40, seed=0)
    with torch.no_grad():
        ref = _torch_net(torch_dir, "TinyCNN")(
            torch.from_numpy(x.transpose(0, 2, 1).copy())
        ).numpy()
    np.testing.assert_allclose(model.predict_samples(x)[0], ref, rtol=1e-5, atol=1e-6)

    mc = load_model(torch_dir, n_samples=6, seed=1)  # default: MC dropout (the net has dropout)
    assert type(mc).__name__ == "MCDropout" and mc.n_samples == 6
    samples = mc.predict_samples(x)
    assert samples.shape == (6, 4, 3) and np.ptp(samples, axis=0).max() > 0


def test_generic_ensemble_over_weight_files(torch_dir, tmp_path):
    files = []
    for k in range(2):
        net = _torch_net(torch_dir, "TinyCNN")
        torch.save(fx._seeded_state(net, 100 + k), tmp_path / f"member{k}.pth")
        files.append(str(tmp_path / f"member{k}.pth"))
    model = load_model(torch_dir, weight_files=files)
    assert type(model).__name__ == "DeepEnsemble" and model.n_samples == 2
    x = _onehot(3, 40, seed=2)
    samples = model.predict_samples(x)
    for k, path in enumerate(files):
        with torch.no_grad():
            ref = _torch_net(torch_dir, "TinyCNN", path)(
                torch.from_numpy(x.transpose(0, 2, 1).copy())
            ).numpy()
        np.testing.assert_allclose(samples[k], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="takes one model but 2 weight files"):
        load_model(torch_dir, weight_files=files, uncertainty="mc_dropout")
    with pytest.raises(ValueError, match="needs at least two members"):
        load_model(torch_dir, uncertainty="ensemble")
    bad = tmp_path / "bad.pth"
    torch.save({"other": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=r"weight file .*bad\.pth does not fit .*Missing key"):
        load_model(torch_dir, weight_files=[str(bad), files[0]])
    with pytest.raises(ValueError, match="is not a state dict for"):
        load_model(torch_dir, weight_files=[files[0], str(bad)])


def test_generic_keras_model(keras_dir):
    import tf_keras

    model = load_model(keras_dir, uncertainty="none")
    assert model.feature_names == fx.KERAS_FEATURES and model.alphabet == "ACGT"
    x = _onehot(3, 32, seed=3)
    with open(os.path.join(keras_dir, "model.json")) as f:
        ref_model = tf_keras.models.model_from_json(f.read())
    ref_model.load_weights(os.path.join(keras_dir, "weights.h5"))
    np.testing.assert_allclose(
        model.predict_samples(x)[0], ref_model.predict_on_batch(x), rtol=1e-5, atol=1e-6
    )
    mc = load_model(keras_dir, n_samples=4)
    assert type(mc).__name__ == "MCDropout" and mc.predict_samples(x).shape == (4, 3, 2)


def test_generic_dict_outputs_follow_schema_order(dict_dir):
    model = load_model(dict_dir)  # no dropout, one weight file: deterministic, with a warning
    assert model.feature_names == ("chip/CTCF", "chip/REST", "dnase/0") and model.n_samples == 1
    x = _onehot(2, 30, seed=4)
    with torch.no_grad():
        out = _torch_net(dict_dir, "DictCNN")(torch.from_numpy(x.transpose(0, 2, 1).copy()))
    ref = np.concatenate([out["chip"].numpy(), out["dnase"].numpy()], axis=1)
    np.testing.assert_allclose(model.predict_samples(x)[0], ref, rtol=1e-5, atol=1e-6)


def test_non_vector_outputs_need_an_adapter(torch_dir, tmp_path):
    import shutil

    model_dir = tmp_path / "profile_model"
    shutil.copytree(torch_dir, model_dir)
    yaml = (model_dir / "model.yaml").read_text()
    yaml = yaml.split("            column_labels:")[0].replace("shape: (3, )", "shape: (40, 3)")
    (model_dir / "model.yaml").write_text(yaml)
    with pytest.raises(
        ValueError, match=r"not all vectors \({'scores': \(40, 3\)}\); register an adapter"
    ):
        load_model(str(model_dir))


@pytest.mark.parametrize("which", ["torch", "keras", "dict"])
def test_deep_mr_run_on_each_test_model(which, torch_dir, keras_dir, dict_dir, tmp_path):
    from deepmr_kipoi import pipeline

    model_dir = {"torch": torch_dir, "keras": keras_dir, "dict": dict_dir}[which]
    if which == "dict":
        files = []
        for k in range(3):
            torch.save(
                fx._seeded_state(_torch_net(dict_dir, "DictCNN"), 200 + k), tmp_path / f"m{k}.pth"
            )
            files.append(str(tmp_path / f"m{k}.pth"))
        model = load_model(model_dir, weight_files=files)
    else:
        model = load_model(model_dir, n_samples=8, seed=0)
    config = pipeline.RunConfig(
        model=model_dir,
        n_sequences=4,
        window=(5, 20),
        methods=("ivw",),
        min_instruments=3,
        z=1.0,
        progress=False,
        figures=False,
        report=False,
        seed=0,
    )
    result = pipeline.run(config, model=model, identity={"name": model_dir})
    names = set(model.feature_names)
    assert (
        set(result.local_effects["exposure"]) <= names
        and set(result.local_effects["outcome"]) <= names
    )
    pairs = {(e, o) for e in names for o in names if e != o}
    assert {tuple(p) for p in result.global_effects[["exposure", "outcome"]].to_numpy()} == pairs
    assert np.isfinite(result.global_effects["estimate"]).any()
