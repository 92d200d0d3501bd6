"""Shipped adapters on a zoo-like local source (models named like the zoo's, weights pre-placed under
downloaded/model_files with matching md5), loaded by name: values against the networks run directly,
alphabets and layouts, uncertainty, and saturation effects labelled with the models' feature names."""

import os

import numpy as np
import pytest

from deepmr_kipoi.kipoi_models import describe_model, load_model
from tests import _kipoi_fixtures as fx
from tests.conftest import ZOO_SOURCE as SOURCE

torch = pytest.importorskip("torch")


def _onehot(n, length, seed):
    rng = np.random.default_rng(seed)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(n, length))]


def _zoo_module(zoo, name):
    """The network of a zoo model built from its own module file and downloaded weights, in eval mode."""
    desc = describe_model(name, source=zoo)
    if name.startswith("DeepSEA/") and name != "DeepSEA/beluga":
        mod = fx._import_file(os.path.join(zoo, "DeepSEA", "model_architecture.py"), "ref_arch")
        net = mod.predict_model if name.endswith("predict") else mod.veff_model
    elif name == "DeepSEA/beluga":
        net = fx._import_file(
            os.path.join(zoo, "DeepSEA", "beluga", "model.py"), "ref_beluga"
        ).Beluga()
    else:
        net = fx._import_file(os.path.join(zoo, "Basset", "basset_arch.py"), "ref_basset").model
    net.load_state_dict(torch.load(desc.weight_files[0].path))
    return net.eval()


def _logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


@pytest.mark.parametrize(
    "name, to_input",
    [
        # predict/variantEffects take ACGT (they reorder to AGCT inside the network), (4, 1, L)
        ("DeepSEA/predict", lambda x: x.transpose(0, 2, 1)[:, :, None, :]),
        ("DeepSEA/variantEffects", lambda x: x.transpose(0, 2, 1)[:, :, None, :]),
        # beluga takes AGCT, (4, 1, L)
        ("DeepSEA/beluga", lambda x: x[:, :, [0, 2, 1, 3]].transpose(0, 2, 1)[:, :, None, :]),
        # Basset takes ACGT, (4, L, 1)
        ("Basset", lambda x: x.transpose(0, 2, 1)[:, :, :, None]),
    ],
)
def test_family_adapters_match_the_network_on_logit_scale(zoo_torch, name, to_input):
    desc = describe_model(name, source=SOURCE)
    model = load_model(name, source=SOURCE, uncertainty="none")
    assert model.feature_names == desc.feature_names
    assert model.sequence_length == desc.sequence_length
    x = _onehot(3, desc.sequence_length, seed=1)
    got = model.predict_samples(x)
    assert got.shape == (1, 3, len(desc.feature_names))
    with torch.no_grad():
        ref = _zoo_module(zoo_torch, name)(
            torch.from_numpy(np.ascontiguousarray(to_input(x)))
        ).numpy()
    np.testing.assert_allclose(got[0], _logit(ref), rtol=1e-4, atol=1e-4)


def test_beluga_alphabet_is_agct_and_can_be_overridden(zoo_torch):
    assert load_model("DeepSEA/beluga", source=SOURCE, uncertainty="none").alphabet == "AGCT"
    x = _onehot(2, 500, seed=2)
    wrong = load_model(
        "DeepSEA/beluga", source=SOURCE, uncertainty="none", alphabet="ACGT"
    ).predict_samples(x)
    right = load_model("DeepSEA/beluga", source=SOURCE, uncertainty="none").predict_samples(x)
    assert not np.allclose(wrong, right)


def test_deepsea_mc_dropout_defaults_and_seeds(zoo_torch):
    model = load_model("DeepSEA/predict", source=SOURCE, n_samples=5, seed=3)
    assert type(model).__name__ == "MCDropout" and model.n_samples == 5
    x = _onehot(2, 200, seed=4)
    a = model.predict_samples(x)
    assert a.shape == (5, 2, 5)
    assert np.ptp(a, axis=0).max() > 0  # samples differ
    np.testing.assert_array_equal(
        a, load_model("DeepSEA/predict", source=SOURCE, n_samples=5, seed=3).predict_samples(x)
    )
    assert not np.allclose(
        a, load_model("DeepSEA/predict", source=SOURCE, n_samples=5, seed=4).predict_samples(x)
    )


def test_model_directory_finds_its_family_adapter(zoo_torch):
    # a zoo model's folder given as a path matches the adapter by its trailing path components
    model = load_model(os.path.join(zoo_torch, "Basset"), n_samples=3)
    assert type(model).__name__ == "MCDropout"
    assert model.feature_names == fx.BASSET_LABELS


def test_bpnet_oskn_from_the_zoo_and_as_an_ensemble(zoo, tmp_path):
    single = load_model("BPNet-OSKN", source=SOURCE)
    assert single.feature_names == fx.BPNET_TASKS and single.n_samples == 1
    x = _onehot(2, 100, seed=5)
    keras_model = fx.build_bpnet_keras(length=100, filters=6, seed=14)  # the zoo file's network
    keras_out = fx.keras_bpnet_predict(keras_model, x)
    expected = np.stack([keras_out[f"{t}/counts"].mean(axis=1) for t in fx.BPNET_TASKS], axis=1)
    np.testing.assert_allclose(single.predict_samples(x)[0], expected, rtol=1e-4, atol=1e-4)

    with pytest.raises(ValueError, match="no dropout layers"):
        load_model("BPNet-OSKN", source=SOURCE, uncertainty="mc_dropout")

    files = [str(tmp_path / f"fold{k}.h5") for k in range(2)]
    references = [
        fx.write_bpnet_h5(f, length=100, filters=4, seed=20 + k) for k, f in enumerate(files)
    ]
    ensemble = load_model("BPNet-OSKN", weight_files=files)  # no source needed with explicit files
    assert type(ensemble).__name__ == "DeepEnsemble" and ensemble.n_samples == 2
    samples = ensemble.predict_samples(x)
    for k in range(2):
        out = fx.keras_bpnet_predict(references[k], x)
        ref = np.stack([out[f"{t}/counts"].mean(axis=1) for t in fx.BPNET_TASKS], axis=1)
        np.testing.assert_allclose(samples[k], ref, rtol=1e-4, atol=1e-4)


def test_adapter_refuses_a_model_of_another_shape(zoo_torch):
    with pytest.raises(
        ValueError, match="the DeepSEA adapter expects a NC1L input.*adapter='kipoi-generic'"
    ):
        load_model("Basset", source=SOURCE, adapter="DeepSEA")


@pytest.mark.parametrize("name", ["DeepSEA/predict", "DeepSEA/beluga", "Basset", "BPNet-OSKN"])
def test_saturation_effects_are_labelled_and_paired(zoo_torch, tmp_path, name):
    from deepmr_kipoi import ism

    if name == "BPNet-OSKN":
        pytest.importorskip("tf_keras")
        files = [str(tmp_path / f"m{k}.h5") for k in range(2)]
        for k, path in enumerate(files):
            fx.write_bpnet_h5(path, length=100, filters=4, seed=30 + k)
        model = load_model(name, weight_files=files)
    else:
        model = load_model(name, source=SOURCE, n_samples=4, seed=0)
    length = model.sequence_length
    x = _onehot(2, length, seed=6)
    window = (length // 2 - 3, length // 2 + 3)
    eff = ism.saturation_effects(model, x, window=window, progress=False)
    assert tuple(eff.feature_names) == tuple(model.feature_names)
    assert eff.mean.shape == (2, 6, 3, len(model.feature_names)) == eff.se.shape
    assert np.isfinite(eff.mean).all() and np.isfinite(eff.se).all()
    # brute force for one mutant: paired differences over the same samples
    pos, alt = 2, 1
    base = int(eff.alt_bases[0, pos, alt])
    mutant = x[:1].copy()
    mutant[0, window[0] + pos] = np.eye(4, dtype=np.float32)[base]
    d = model.predict_samples(mutant)[:, 0] - model.predict_samples(x[:1])[:, 0]
    np.testing.assert_allclose(eff.mean[0, pos, alt], d.mean(axis=0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(eff.se[0, pos, alt], d.std(axis=0, ddof=1), rtol=1e-3, atol=1e-4)
