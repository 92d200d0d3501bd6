"""Change-only fast ISM: a dense layer after a flatten computed from the window's change, and stride-1
convolutions as the reference's output plus the scattered change -- equal to full forward passes
(float32 rounding) on the zoo's Basset and DeepSEA families, with MC-dropout masks, with mutants in
any order, and on convolutions with padding and dilation."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from benchmarks import zoo_architectures as zoo  # noqa: E402
from deepmr_kipoi import ism, sequences  # noqa: E402
from deepmr_kipoi.predictive import MCDropout, from_torch  # noqa: E402
from deepmr_kipoi.predictive._fastism_delta import scatter_add_conv  # noqa: E402

pytestmark = pytest.mark.torch


def _saturation(x, positions):
    out = np.repeat(x[None], 3 * len(positions), axis=0)
    for i, p in enumerate(positions):
        for k in range(3):
            out[3 * i + k, p] = 0.0
            out[3 * i + k, p, (int(x[p].argmax()) + k + 1) % 4] = 1.0
    return out


def _close(got, want):
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= 2e-6 * max(scale, 1.0), float(
        np.abs(got - want).max()
    )


@pytest.mark.parametrize(
    "name,length,scale",
    [("Basset", 600, 10), ("DeepSEA/predict", 500, 10), ("DeepSEA/beluga", 1000, 20)],
)
def test_dense_after_flatten_from_the_change_equals_full_passes(name, length, scale):
    make, layout, _ = zoo.ZOO[name]
    net = make(0, scale=scale, length=length)
    fast = from_torch(net, layout=layout, sequence_length=length)
    full = from_torch(net, layout=layout, sequence_length=length, fast_ism=False)
    x = sequences.random_sequences(1, length, seed=5)[0]
    # consecutive positions (an ISM batch) and scattered ones, the sequence's ends included
    rng = np.random.default_rng(0)
    for k, positions in enumerate(
        (
            range(length // 2 - 100, length // 2 + 100),
            sorted(rng.choice(length, 40, replace=False)),
            [0, length - 1],
        )
    ):
        mut = _saturation(x, list(positions))
        _close(fast.predict_mutants(x, mut), full.predict(mut))
        if k == 0:
            assert fast._plan.dense_from_change == 1 and not fast._plan.unfollowed
    assert fast.ism_path == "cached", fast.ism_reason
    assert "1 dense layer(s) after a flatten from the change only" in fast.ism_reason


def test_mc_dropout_before_the_flatten_equals_masked_full_passes():
    """DeepSEA/variantEffects: dropout (0.5) right before the flatten, masks per sample."""
    length = 500
    net = zoo.deepsea_variant_effects(1, scale=10, length=length)
    fast = MCDropout(from_torch(net, layout="NC1L", sequence_length=length), n_samples=3, seed=4)
    full = MCDropout(
        from_torch(net, layout="NC1L", sequence_length=length, fast_ism=False), n_samples=3, seed=4
    )
    x = sequences.random_sequences(2, length, seed=6)
    got = ism.saturation_effects(fast, x, window=(200, 260), progress=False, per_sample=True)
    want = ism.saturation_effects(full, x, window=(200, 260), progress=False, per_sample=True)
    assert fast.members[0]._plan.dense_from_change == 3  # once per mask set
    assert float(np.abs(want.samples).max()) > 1e-4
    # float32 rounding of the outputs (sigmoids near 0.5), of which the effects are differences
    outputs = float(np.abs(want.reference).max())
    assert float(np.abs(got.samples - want.samples).max()) <= 2e-6 * outputs


@pytest.mark.parametrize(
    "layout,conv,pool",
    [
        ("NCL", lambda c: nn.Conv1d(c, 24, 7, padding=3, dilation=2), nn.MaxPool1d(3)),
        ("NCL", lambda c: nn.Conv1d(c, 24, 5, padding="same"), nn.AvgPool1d(2)),
        ("NC1L", lambda c: nn.Conv2d(c, 24, (1, 9), padding=(0, 4)), nn.MaxPool2d((1, 2))),
        ("NCL1", lambda c: nn.Conv2d(c, 24, (6, 1), dilation=(3, 1)), nn.MaxPool2d((2, 1))),
    ],
)
def test_scattered_convolutions_equal_full_passes(layout, conv, pool):
    first = {
        "NCL": nn.Conv1d(4, 18, 5, padding=2),
        "NC1L": nn.Conv2d(4, 18, (1, 5), padding=(0, 2)),
        "NCL1": nn.Conv2d(4, 18, (5, 1), padding=(2, 0)),
    }[layout]
    torch.manual_seed(3)
    net = nn.Sequential(
        first, nn.ReLU(), conv(18), nn.ReLU(), pool, nn.Flatten(), nn.LazyLinear(5)
    ).eval()
    length = 90
    x = sequences.random_sequences(1, length, seed=8)[0]
    net(torch.from_numpy(sequences.to_layout(x[None], layout)))  # materialise the lazy layer
    fast = from_torch(net, layout=layout, sequence_length=length)
    full = from_torch(net, layout=layout, sequence_length=length, fast_ism=False)
    mut = _saturation(x, range(length))
    _close(fast.predict_mutants(x, mut), full.predict(mut))
    assert fast._plan.windowed_convolutions == 2 and fast._plan.dense_from_change == 1


@pytest.mark.parametrize("kernel_shape,dilation", [((4,), 3), ((1, 5), 1), ((3, 1), 2)])
def test_scatter_add_conv_equals_the_brute_force_sum(kernel_shape, dilation):
    """Output j gains sum over input t, tap k with t + dilation * (K - 1 - k) = j of W[o, c, k] d[c, t]."""
    rng = np.random.default_rng(4)
    m, c_in, c_out, width = 3, 5, 7, 6
    weight = rng.normal(size=(c_out, c_in, *kernel_shape)).astype(np.float32)
    delta = rng.normal(size=(m, c_in, width)).astype(np.float32)
    start = rng.normal(size=(m, c_out, width + dilation * (max(kernel_shape) - 1)))
    taps = weight.reshape(c_out, c_in, -1)
    want = start.copy()
    for k in range(taps.shape[2]):
        for t in range(width):
            want[:, :, t + dilation * (taps.shape[2] - 1 - k)] += delta[:, :, t] @ taps[:, :, k].T
    out = torch.from_numpy(start.astype(np.float32))
    got = scatter_add_conv(out, torch.from_numpy(delta), torch.from_numpy(weight), dilation)
    assert got is out
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
