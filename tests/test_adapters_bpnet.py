"""BPNet-OSKN: the PyTorch port reads a Keras h5 with the zoo model's layer names and reproduces the
Keras network, checked against tf_keras itself and against a direct numpy computation."""

import numpy as np
import pytest

from tests import _kipoi_fixtures as fx

pytest.importorskip("torch")
pytest.importorskip("tf_keras")

LENGTH = 64
FILTERS = 5


def _conv_same_numpy(x, kernel, bias, dilation):
    """Keras Conv1D(padding='same'): x (N, L, Cin), kernel (K, Cin, Cout) -> (N, L, Cout)."""
    k = kernel.shape[0]
    total = dilation * (k - 1)
    left = total // 2
    padded = np.pad(x, ((0, 0), (left, total - left), (0, 0)))
    length = x.shape[1]
    out = np.zeros((x.shape[0], length, kernel.shape[2]))
    for m in range(k):
        out += padded[:, m * dilation : m * dilation + length, :] @ kernel[m]
    return out + bias


def _conv_transpose_same_numpy(x, kernel, bias):
    """Keras Conv2DTranspose(kernel (K, 1), 'same', stride 1) on (N, L, Cin) as the scatter that
    defines a transposed convolution: input position i spreads x[i] @ W[m].T to output i + m - p."""
    k = kernel.shape[0]
    p = (k - 1) // 2
    n, length, _ = x.shape
    out = np.zeros((n, length, kernel.shape[2]))
    w = kernel[:, 0]  # (K, Cout, Cin)
    for i in range(length):
        for m in range(k):
            j = i + m - p
            if 0 <= j < length:
                out[:, j, :] += x[:, i, :] @ w[m].T
    return out + bias


def _bpnet_numpy(weights, onehot):
    h = np.maximum(_conv_same_numpy(onehot, weights.conv1_kernel, weights.conv1_bias, 1), 0)
    for kernel, bias, rate in zip(
        weights.dilated_kernels, weights.dilated_biases, weights.dilation_rates
    ):
        h = h + np.maximum(_conv_same_numpy(h, kernel, bias, rate), 0)
    pooled = h.mean(axis=1)
    counts = np.stack(
        [pooled @ k + b for k, b in zip(weights.counts_kernels, weights.counts_biases)], axis=1
    )
    profiles = np.stack(
        [
            _conv_transpose_same_numpy(h, k, b)
            for k, b in zip(weights.profile_kernels, weights.profile_biases)
        ],
        axis=1,
    )
    return counts, profiles


@pytest.fixture(scope="module")
def bpnet_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("bpnet") / "bpnet.model.h5"
    keras_model = fx.build_bpnet_keras(length=LENGTH, filters=FILTERS, seed=3)
    fx.save_keras_h5(keras_model, path)
    return str(path), keras_model


@pytest.fixture(scope="module")
def onehot():
    rng = np.random.default_rng(5)
    return np.eye(4, dtype=np.float32)[rng.integers(0, 4, size=(3, LENGTH))]


def test_read_bpnet_h5_by_layer_name(bpnet_h5):
    from model_adapters.bpnet_oskn import read_bpnet_h5

    path, keras_model = bpnet_h5
    w = read_bpnet_h5(path)
    assert w.tasks == ("Oct4", "Sox2", "Nanog", "Klf4")
    assert w.dilation_rates == tuple(2**i for i in range(1, 10))
    assert w.conv1_kernel.shape == (25, 4, FILTERS)
    assert len(w.dilated_kernels) == 9 and w.dilated_kernels[0].shape == (3, FILTERS, FILTERS)
    assert w.profile_kernels[0].shape == (25, 1, 2, FILTERS)
    assert w.counts_kernels[0].shape == (FILTERS, 2)
    # the counts head of Sox2 is dense_3; dense_4 is its (bias-free) control-track layer
    np.testing.assert_array_equal(
        w.counts_kernels[1], keras_model.get_layer("dense_3").get_weights()[0]
    )
    np.testing.assert_array_equal(
        w.profile_biases[3], keras_model.get_layer("conv2d_transpose_4").get_weights()[1]
    )


def test_torch_port_matches_keras_and_numpy(bpnet_h5, onehot):
    import torch

    from model_adapters.bpnet_oskn import read_bpnet_h5
    from model_adapters.bpnet_torch import BPNet

    path, keras_model = bpnet_h5
    weights = read_bpnet_h5(path)
    net = BPNet(weights, output="log_counts")
    x = torch.from_numpy(onehot)
    with torch.no_grad():
        log_counts = net.log_counts(x).numpy()
        profiles = net.profile_logits(x).numpy()
        features = BPNet(weights)(x).numpy()

    ref_counts, ref_profiles = _bpnet_numpy(weights, onehot.astype(np.float64))
    np.testing.assert_allclose(log_counts, ref_counts, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(profiles, ref_profiles, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features, ref_counts.mean(axis=2), rtol=1e-4, atol=1e-4)

    keras_out = fx.keras_bpnet_predict(keras_model, onehot)
    for t, task in enumerate(fx.BPNET_TASKS):
        np.testing.assert_allclose(
            log_counts[:, t], keras_out[f"{task}/counts"], rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(
            profiles[:, t], keras_out[f"{task}/profile"], rtol=1e-4, atol=1e-4
        )


def test_even_transposed_kernel_matches_keras(tmp_path, onehot):
    import torch

    from model_adapters.bpnet_oskn import read_bpnet_h5
    from model_adapters.bpnet_torch import BPNet

    keras_model = fx.build_bpnet_keras(
        length=LENGTH, filters=3, tconv_kernel=8, conv1_kernel=6, seed=4
    )
    path = tmp_path / "even.h5"
    fx.save_keras_h5(keras_model, path)
    with torch.no_grad():
        profiles = BPNet(read_bpnet_h5(str(path))).profile_logits(torch.from_numpy(onehot)).numpy()
    keras_out = fx.keras_bpnet_predict(keras_model, onehot)
    np.testing.assert_allclose(profiles[:, 0], keras_out["Oct4/profile"], rtol=1e-4, atol=1e-4)


def test_wrong_file_is_a_clear_error(tmp_path):
    import h5py

    from model_adapters.bpnet_oskn import read_bpnet_h5

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("model_weights").create_group("dense_1")
    with pytest.raises(ValueError, match="no layer 'conv1d_1'.*not a BPNet-OSKN weight file"):
        read_bpnet_h5(str(path))
