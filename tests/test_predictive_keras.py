"""Keras members (Keras 3 ``keras`` and Keras 2 ``tf_keras``): prediction, alphabets, MC dropout, ISM."""

import importlib

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from deepmr_kipoi import ism, sequences  # noqa: E402
from deepmr_kipoi.predictive import DeepEnsemble, MCDropout, from_keras  # noqa: E402

pytestmark = pytest.mark.tensorflow
L = 12


def _flavours():
    out = []
    for name in ("keras", "tf_keras"):
        try:
            importlib.import_module(name)
            out.append(name)
        except ImportError:
            pass
    return out


@pytest.fixture(scope="module", params=_flavours())
def keras_pkg(request):
    keras = importlib.import_module(request.param)
    keras.utils.set_random_seed(0)
    return keras


def _model(keras, dropout: bool, seed: int = 0):
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inp = keras.Input((L, 4))
    h = layers.Conv1D(5, 3, padding="same", activation="relu")(inp)
    if dropout:
        h = layers.SpatialDropout1D(0.3)(h)
    h = layers.Flatten()(h)
    if dropout:
        h = layers.Dropout(0.4)(h)
    out = layers.Dense(2)(h)
    return keras.Model(inp, out)


def _numpy_forward(model, x, channel_mask=None, element_mask=None):
    """Independent numpy forward of :func:`_model` on (N, L, 4) input."""
    conv = [layer for layer in model.layers if type(layer).__name__ == "Conv1D"][0]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"][0]
    w, b = (np.asarray(v, dtype=np.float64) for v in conv.get_weights())
    dw, db = (np.asarray(v, dtype=np.float64) for v in dense.get_weights())
    pad = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (0, 0)))
    h = sum(np.einsum("nlc,co->nlo", pad[:, k : k + L], w[k]) for k in range(3)) + b
    h = np.maximum(h, 0)
    if channel_mask is not None:
        h = h * channel_mask
    h = h.reshape(len(x), -1)
    if element_mask is not None:
        h = h * element_mask
    return h @ dw + db


@pytest.fixture
def x():
    seqs = sequences.random_sequences(3, L, seed=2)
    seqs[1, 5] = 0
    return seqs


def test_keras_member_predicts_like_numpy(keras_pkg, x):
    model = _model(keras_pkg, dropout=False)
    member = from_keras(model, feature_names=["u", "v"])
    assert member.sequence_length == L  # read from model.input_shape
    np.testing.assert_allclose(member.predict(x), _numpy_forward(model, x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no dropout layer"):
        MCDropout(member)


def test_nlc1_keras_member_reads_its_length_and_predicts_like_numpy(keras_pkg, x):
    """A DeepSTARR-like ``(L, 4, 1)`` input: the length comes from ``model.input_shape`` and the
    member feeds ``(N, L, 4, 1)``, so the forward equals the numpy one on ``(N, L, 4)``."""
    keras_pkg.utils.set_random_seed(0)
    layers = keras_pkg.layers
    inp = keras_pkg.Input((L, 4, 1))
    h = layers.Conv1D(5, 3, padding="same", activation="relu")(layers.Reshape((L, 4))(inp))
    model = keras_pkg.Model(inp, layers.Dense(2)(layers.Flatten()(h)))
    member = from_keras(model, feature_names=["u", "v"], layout="NLC1")
    assert member.sequence_length == L
    np.testing.assert_allclose(member.predict(x), _numpy_forward(model, x), rtol=1e-5, atol=1e-6)


def test_keras_alphabet_twin(keras_pkg, x):
    model = _model(keras_pkg, dropout=False)
    twin = _model(keras_pkg, dropout=False, seed=1)
    w = model.get_weights()
    perm = ["ACGT".index(b) for b in "AGCT"]
    twin.set_weights([w[0][:, perm, :]] + w[1:])
    a = from_keras(model, feature_names=["u", "v"]).predict(x)
    b = from_keras(twin, feature_names=["u", "v"], alphabet="AGCT").predict(x)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras_mc_dropout_masks(keras_pkg, x):
    model = _model(keras_pkg, dropout=True)
    member = from_keras(model, feature_names=["u", "v"])
    assert [d.channelwise for d in member.dropout_layers] == [True, False]
    mc = MCDropout(member, n_samples=4, seed=3)
    samples = mc.predict_samples(x)
    for s in range(4):
        cm = mc.mask(s, 0, (1, 5), 0.3)
        em = mc.mask(s, 1, (L * 5,), 0.4)
        np.testing.assert_allclose(
            samples[s], _numpy_forward(model, x, cm, em), rtol=1e-5, atol=1e-5
        )
    np.testing.assert_array_equal(
        MCDropout(member, n_samples=4, seed=3).predict_samples(x), samples
    )
    assert not np.allclose(MCDropout(member, n_samples=4, seed=4).predict_samples(x), samples)
    # dropout layers are restored afterwards: plain prediction is inference mode
    np.testing.assert_allclose(member.predict(x), _numpy_forward(model, x), rtol=1e-5, atol=1e-6)


def test_keras_ism_exact_against_single_mutants(keras_pkg, x):
    model = MCDropout(
        from_keras(_model(keras_pkg, dropout=True), feature_names=["u", "v"]), n_samples=3, seed=1
    )
    eff = ism.saturation_effects(model, x, batch_size=25, progress=False)
    ref = model.predict_samples(x)
    np.testing.assert_allclose(eff.reference, ref, rtol=1e-6)
    mutants, where = [], []
    for i in range(len(x)):
        for w in range(L):
            if eff.is_n[i, w]:
                continue
            for k, alt in enumerate(eff.alt_bases[i, w]):
                m = x[i].copy()
                m[w] = 0
                m[w, alt] = 1
                mutants.append(m)
                where.append((i, w, k))
    # each mutant on its own, with the same masks
    single = np.stack([model.predict_samples(m[None])[:, 0] for m in mutants], axis=1)
    i, w, k = np.array(where).T
    d = single.astype(np.float64) - ref[:, i].astype(np.float64)
    np.testing.assert_allclose(eff.mean[i, w, k], d.mean(0), atol=2e-6)
    np.testing.assert_allclose(eff.se[i, w, k], d.std(0, ddof=1), atol=2e-6)
    assert np.isnan(eff.mean[1, 5]).all() and eff.n_masked == 1


def test_keras_ensemble_of_two(keras_pkg, x):
    members = [
        from_keras(_model(keras_pkg, dropout=False, seed=s), feature_names=["u", "v"])
        for s in (0, 1)
    ]
    samples = DeepEnsemble(members).predict_samples(x)
    for s, m in enumerate(members):
        np.testing.assert_allclose(samples[s], _numpy_forward(m.model, x), rtol=1e-5, atol=1e-6)
