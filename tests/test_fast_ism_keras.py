"""Receptive-field caching for Keras models: the network is rebuilt in PyTorch and its mutants run
through the cache -- equal to the Keras model's own full passes (deterministic and with MC-dropout
masks) on DeepSTARR-, DeepBind- and CpGenie-shaped networks; a layer it cannot follow is named and
the Keras model runs full passes."""

import numpy as np
import pytest

tf_keras = pytest.importorskip("tf_keras")
torch = pytest.importorskip("torch")

from deepmr_kipoi import ism, sequences  # noqa: E402
from deepmr_kipoi.predictive import MCDropout, from_keras  # noqa: E402
from tests import _keras_models as km  # noqa: E402
from tests import _kipoi_groups as kg  # noqa: E402


def _concat(raw):
    return np.concatenate([np.asarray(r) for r in raw], axis=1)


def _keras_full(net, x, layout="NLC"):
    out = net(sequences.to_layout(x, layout), training=False)
    return _concat(out) if isinstance(out, list) else np.asarray(out)


def _saturation(x, positions):
    out = np.repeat(x[None], 3 * len(positions), axis=0)
    for i, p in enumerate(positions):
        for k in range(3):
            out[3 * i + k, p] = 0.0
            out[3 * i + k, p, (int(x[p].argmax()) + k + 1) % 4] = 1.0
    return out


@pytest.mark.parametrize("name", ["DeepSTARR", "DeepBind", "CpGenie"])
def test_keras_mutants_through_the_rebuilt_cache_equal_keras_passes(name):
    if name == "DeepSTARR":
        net, length, layout = km.deepstarr(seed=1, length=120, scale=8), 120, "NLC"
    elif name == "DeepBind":
        net, length, layout = kg.build_deepbind(seed=2), 101, "NLC"
    else:
        net, length, layout = kg.build_cpgenie(seed=3), 251, "NC1L"
    member = from_keras(
        net,
        feature_names=[f"f{i}" for i in range(2 if name != "DeepBind" else 1)],
        layout=layout,
        output=_concat if name == "DeepSTARR" else None,
    )
    x = sequences.random_sequences(1, length, seed=4)[0]
    mut = _saturation(x, range(length // 2 - 30, length // 2 + 30))
    got = member.predict_mutants(x, mut)
    want = _keras_full(net, mut, layout)
    assert float(np.abs(got - want).max()) <= 2e-6 * max(float(np.abs(want).max()), 1.0)
    assert member.ism_path == "cached", member.ism_reason
    assert member.ism_reason.startswith("rebuilt in PyTorch: ")
    plan = member._torch._plan
    assert plan.windowed_convolutions == {"DeepSTARR": 4, "DeepBind": 1, "CpGenie": 3}[name]
    if name == "DeepSTARR":
        # its batch normalisations follow linear convolutions and dense layers: folded into them
        rebuilt = member._torch.module
        assert not any(type(m).__name__ == "_Affine" for m in rebuilt.modules())
    # DeepBind pools globally; CpGenie's last window spans its whole (2-position) pooled output
    assert plan.dense_from_change == (1 if name == "DeepSTARR" else 0)
    # sequences (the references) come from the same rebuilt network
    np.testing.assert_allclose(
        member.predict(x[None]), _keras_full(net, x[None], layout), rtol=1e-5, atol=1e-6
    )


def test_mc_dropout_masks_of_the_rebuild_equal_keras_masked_passes():
    net = km.deepstarr(seed=5, length=100, scale=8)
    fast = MCDropout(
        from_keras(net, feature_names=["Dev", "Hk"], output=_concat), n_samples=3, seed=1
    )
    full = MCDropout(
        from_keras(net, feature_names=["Dev", "Hk"], output=_concat, fast_ism=False),
        n_samples=3,
        seed=1,
    )
    x = sequences.random_sequences(2, 100, seed=6)
    got = ism.saturation_effects(fast, x, window=(40, 60), progress=False, per_sample=True)
    want = ism.saturation_effects(full, x, window=(40, 60), progress=False, per_sample=True)
    assert fast.members[0].ism_path == "cached" and full.members[0].ism_path == "full"
    assert full.members[0].ism_reason == "fast_ism=False"
    assert float(np.abs(want.samples).max()) > 1e-3
    scale = float(np.abs(want.reference).max())
    assert float(np.abs(got.samples - want.samples).max()) <= 2e-6 * max(scale, 1.0)
    np.testing.assert_allclose(got.reference, want.reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["Lambda", "SpatialDropout1D"])
def test_a_layer_the_cache_cannot_follow_is_named_and_keras_runs(kind):
    kl = tf_keras.layers
    tf_keras.utils.set_random_seed(7)
    inp = kl.Input((40, 4))
    h = kl.Conv1D(6, 5, activation="relu", name="conv")(inp)
    h = (
        kl.Lambda(lambda t: t * 2.0, name="odd")(h)
        if kind == "Lambda"
        else kl.SpatialDropout1D(0.2, name="odd")(h)
    )
    net = tf_keras.Model(inp, kl.Dense(2)(kl.GlobalAveragePooling1D()(h)))
    member = from_keras(net, feature_names=["a", "b"])
    x = sequences.random_sequences(1, 40, seed=8)[0]
    mut = _saturation(x, range(10, 20))
    np.testing.assert_allclose(
        member.predict_mutants(x, mut), _keras_full(net, mut), rtol=1e-5, atol=1e-6
    )
    assert member.ism_path == "full" and not member.fast_ism
    assert (
        member.ism_reason
        == f"layer 'odd' ({kind}) has no PyTorch counterpart here: the Keras model runs full passes"
    )


def test_first_use_inside_inference_mode():
    """A member first used inside ``torch.inference_mode()`` (as the benchmarks do) still caches."""
    net = kg.build_deepbind(seed=9)
    member = from_keras(net, feature_names=["bind"])
    x = sequences.random_sequences(1, 101, seed=9)[0]
    mut = _saturation(x, range(40, 50))
    with torch.inference_mode():
        got = member.predict_mutants(x, mut)
    np.testing.assert_allclose(got, _keras_full(net, mut), rtol=1e-5, atol=1e-6)
    assert member.ism_path == "cached", member.ism_reason


def test_batch_normalisation_is_folded_only_into_a_linear_layer_it_alone_reads():
    """A normalisation after an activation, or of an output another layer also reads, stays a
    separate scale and shift; one after a linear convolution read by it alone is folded. Either
    way the rebuilt network's mutants equal Keras' own passes."""
    kl = tf_keras.layers
    tf_keras.utils.set_random_seed(5)
    inp = kl.Input((40, 4))
    relu_conv = kl.Conv1D(6, 5, padding="same", activation="relu")(inp)
    after_activation = kl.BatchNormalization()(relu_conv)
    linear = kl.Conv1D(6, 3, padding="same", use_bias=False)(after_activation)
    shared = kl.BatchNormalization()(linear)  # its input is also read by the Add
    summed = kl.Add()([shared, linear])
    folded = kl.BatchNormalization()(kl.Conv1D(5, 3)(summed))
    out = kl.Dense(2)(kl.Flatten()(kl.MaxPooling1D(2)(kl.Activation("relu")(folded))))
    net = tf_keras.Model(inp, out)
    rng = np.random.default_rng(6)
    for layer in net.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape)]
                + [rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape)]
            )
    member = from_keras(net, feature_names=["a", "b"])
    x = sequences.random_sequences(1, 40, seed=7)[0]
    mut = _saturation(x, range(40))
    got = member.predict_mutants(x, mut)
    want = _keras_full(net, mut)
    assert float(np.abs(got - want).max()) <= 2e-6 * max(float(np.abs(want).max()), 1.0)
    assert member.ism_path == "cached", member.ism_reason
    rebuilt = member._torch.module
    assert sum(type(m).__name__ == "_Affine" for m in rebuilt.modules()) == 2
