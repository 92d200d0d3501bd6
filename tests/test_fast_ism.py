"""Receptive-field caching (fast ISM) equals full forward passes on every supported construct."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from deepmr_kipoi import ism, sequences  # noqa: E402
from deepmr_kipoi.predictive import DeepEnsemble, MCDropout, from_torch  # noqa: E402

pytestmark = pytest.mark.torch


def basset_like(seed, length=60, n_out=5):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv1d(4, 8, 5),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.MaxPool1d(3),
        nn.Conv1d(8, 6, 3, padding=1),
        nn.BatchNorm1d(6),
        nn.ELU(),
        nn.AvgPool1d(2),
        nn.Conv1d(6, 6, 3, padding="same", dilation=2, groups=2),
        nn.Sigmoid(),
        nn.Flatten(),
        nn.Linear(6 * ((length - 4) // 3 // 2), 16),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(16, n_out),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


class ResidualDilated(nn.Module):
    """BPNet's shape: dilated residual convolutions, a cropped profile head and a mean-pooled count head,
    with shape queries in ``forward`` (as bpnet-lite writes it)."""

    def __init__(self, seed, n_layers=4, trimming=6, channels=6):
        super().__init__()
        torch.manual_seed(seed)
        self.trimming = trimming
        self.iconv = nn.Conv1d(4, channels, 7, padding=3)
        self.rconvs = nn.ModuleList(
            nn.Conv1d(channels, channels, 3, padding=2**i, dilation=2**i)
            for i in range(1, n_layers + 1)
        )
        self.fconv = nn.Conv1d(channels, 2, 9, padding=4)
        self.linear = nn.Linear(channels, 1)

    def forward(self, X, X_ctl=None):
        start, end = self.trimming, X.shape[2] - self.trimming
        X = torch.relu(self.iconv(X))
        for conv in self.rconvs:
            X = torch.add(X, F.relu(conv(X)))
        profile = self.fconv(X)[:, :, start:end]
        counts = self.linear(torch.mean(X[:, :, max(start - 3, 0) : end + 3], dim=2))
        return profile, counts.reshape(X.shape[0], 1)


class Functional(nn.Module):
    """Functional calls, method calls, a channel-wise constant and an op the cache does not follow."""

    def __init__(self, seed, length=40):
        super().__init__()
        torch.manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(5, 4, 3) * 0.5)
        self.b1 = nn.Parameter(torch.randn(5) * 0.1)
        self.scale = nn.Parameter(torch.rand(1, 5, 1) + 0.5)
        self.position = nn.Parameter(torch.randn(1, 5, length) * 0.1)
        self.drop = nn.Dropout1d(0.4)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = F.conv1d(x, self.w1, self.b1, padding=1).tanh()
        h = self.drop(h * self.scale + self.position)
        h = F.max_pool1d(h, 2)
        h = h - 0.5 * h.cumsum(-1) / h.shape[-1]  # not windowable: runs on full activations
        return self.out(h.sum(dim=-1))


def _mutants(x, positions, rng):
    """Single mutants of reference x (L, 4) at ``positions``, one random alternative base each."""
    out = np.repeat(x[None], len(positions), axis=0)
    for i, p in enumerate(positions):
        alt = (int(x[p].argmax()) + rng.integers(1, 4)) % 4
        out[i, p] = 0.0
        out[i, p, alt] = 1.0
    return out


def _full_and_fast(net, names, length, masks=None, seed=0):
    fast = from_torch(net, feature_names=names, layout="NCL")
    full = from_torch(net, feature_names=names, layout="NCL", fast_ism=False)
    rng = np.random.default_rng(seed)
    x = sequences.random_sequences(1, length, seed=seed)[0]
    positions = np.r_[0:4, length // 2 - 3 : length // 2 + 3, length - 4 : length]
    mut = _mutants(x, positions, rng)
    return fast, full, x, mut


@pytest.mark.parametrize("seed", [0, 1])
def test_conv_pool_batchnorm_stack_equals_full_passes(seed):
    net = basset_like(seed)
    fast, full, x, mut = _full_and_fast(net, list("abcde"), 60, seed=seed)
    assert fast.fast_ism and not full.fast_ism
    got = fast.predict_mutants(x, mut)
    want = full.predict(mut)
    assert got.shape == (len(mut), 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert fast._plan_checked  # the cached path was used, not the fallback


def test_residual_dilated_crop_and_mean_pool_equal_full_passes():
    net = ResidualDilated(3).eval()
    names = ["counts"]
    fast = from_torch(net, feature_names=names, layout="NCL", output=lambda o: o[1])
    full = from_torch(net, feature_names=names, layout="NCL", output=lambda o: o[1], fast_ism=False)
    x = sequences.random_sequences(1, 80, seed=3)[0]
    rng = np.random.default_rng(3)
    mut = _mutants(x, np.arange(80), rng)
    got, want = fast.predict_mutants(x, mut), full.predict(mut)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert fast._plan_checked
    # the profile head too: a cropped windowed output, written back into full profiles
    profile = from_torch(
        net,
        feature_names=[f"p{i}" for i in range(2 * 68)],
        layout="NCL",
        output=lambda o: o[0].flatten(1),
    )
    prof_full = from_torch(
        net,
        feature_names=[f"p{i}" for i in range(2 * 68)],
        layout="NCL",
        output=lambda o: o[0].flatten(1),
        fast_ism=False,
    )
    np.testing.assert_allclose(
        profile.predict_mutants(x, mut), prof_full.predict(mut), rtol=1e-5, atol=1e-6
    )


def test_functional_calls_constants_and_unfollowed_ops():
    net = Functional(4).eval()
    fast, full, x, mut = _full_and_fast(net, ["u", "v"], 40, seed=4)
    assert fast.fast_ism
    np.testing.assert_allclose(
        fast.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-6
    )
    assert fast._plan_checked


def test_multi_base_and_identity_mutants():
    """Windows wider than one base, and a mutant equal to its reference."""
    net = ResidualDilated(5).eval()
    fast = from_torch(net, feature_names=["c"], layout="NCL", output=lambda o: o[1])
    full = from_torch(net, feature_names=["c"], layout="NCL", output=lambda o: o[1], fast_ism=False)
    x = sequences.random_sequences(1, 50, seed=5)[0]
    mut = np.repeat(x[None], 4, axis=0)
    mut[0, [10, 14]] = np.roll(mut[0, [10, 14]], 1, axis=-1)  # double mutant, 5 bases apart
    mut[1, [0, 49]] = np.roll(mut[1, [0, 49]], 2, axis=-1)  # both ends
    mut[3, 48:50] = np.roll(mut[3, 48:50], 1, axis=-1)
    np.testing.assert_allclose(
        fast.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("dropout", [nn.Dropout(0.3), nn.Dropout1d(0.3)])
def test_mc_dropout_masks_inside_the_conv_stack(dropout):
    """Fixed MC-dropout masks on windowed activations equal the hooked full passes, per sample."""
    torch.manual_seed(7)
    net = nn.Sequential(
        nn.Conv1d(4, 6, 5, padding=2),
        nn.ReLU(),
        dropout,
        nn.MaxPool1d(2),
        nn.Conv1d(6, 4, 3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 13, 3),
    ).eval()
    x = sequences.random_sequences(3, 30, seed=7)
    fast = MCDropout(from_torch(net, feature_names=list("abc"), layout="NCL"), n_samples=4, seed=2)
    full = MCDropout(
        from_torch(net, feature_names=list("abc"), layout="NCL", fast_ism=False),
        n_samples=4,
        seed=2,
    )
    assert fast.fast_ism and not full.fast_ism
    got = ism.saturation_effects(fast, x, progress=False)
    want = ism.saturation_effects(full, x, progress=False)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.se, want.se, rtol=1e-4, atol=1e-6)
    assert np.abs(got.mean).max() > 1e-3
    assert fast.members[0]._plan_checked


def test_ensemble_saturation_effects_equal_the_uncached_engine():
    nets = [ResidualDilated(s).eval() for s in range(3)]

    def ensemble(fast):
        return DeepEnsemble(
            [
                from_torch(
                    n, feature_names=["c"], layout="NCL", output=lambda o: o[1], fast_ism=fast
                )
                for n in nets
            ]
        )

    x = sequences.random_sequences(4, 40, seed=1)
    x[2, 5] = 0.0  # an N: never mutated
    cached = ensemble(True)
    got = ism.saturation_effects(cached, x, batch_size=50, progress=False)
    want = ism.saturation_effects(ensemble(False), x, batch_size=50, progress=False)
    assert all(m._plan_checked for m in cached.members)
    np.testing.assert_array_equal(np.isnan(got.mean), np.isnan(want.mean))
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-5, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(got.se, want.se, rtol=1e-4, atol=1e-6, equal_nan=True)


def test_reference_activations_are_reused_across_batches_until_the_weights_change():
    """An ISM hands one reference's mutants over in several batches: the reference is run once, a
    new reference or an in-place weight update runs it again, and every batch equals full passes."""
    net = basset_like(2)
    fast, full, x, mut = _full_and_fast(net, list("abcde"), 60, seed=2)
    other = sequences.random_sequences(1, 60, seed=9)[0]
    plan_runs = []

    def check(ref, batch):
        np.testing.assert_allclose(
            fast.predict_mutants(ref, batch), full.predict(batch), rtol=1e-5, atol=1e-6
        )

    check(x, mut[:5])
    plan = fast._plan
    run_reference = plan.reference
    plan.reference = lambda *a, **k: plan_runs.append(1) or run_reference(*a, **k)
    check(x, mut[5:10])
    check(x, mut[10:])
    assert plan_runs == []  # the reference of the first batch served the next two
    other_mut = _mutants(other, range(0, 60, 7), np.random.default_rng(1))
    check(other, other_mut)
    assert len(plan_runs) == 1
    with torch.no_grad():
        net[0].weight.mul_(1.5)  # in place: the cached activations are stale
    check(other, other_mut)
    assert len(plan_runs) == 2
    check(other, other_mut)
    assert len(plan_runs) == 2


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv1d(4, 3, 3, padding=1)
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        h = self.conv(x)
        if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            h = -h
        return self.lin(h.mean(-1))


def test_models_without_a_fast_path_run_in_full():
    x = sequences.random_sequences(1, 20, seed=0)[0]
    mut = _mutants(x, range(20), np.random.default_rng(0))
    untraceable = from_torch(Untraceable().eval(), feature_names=["y"], layout="NCL")
    assert not untraceable.fast_ism
    np.testing.assert_array_equal(untraceable.predict_mutants(x, mut), untraceable.predict(mut))
    dense_first = nn.Sequential(nn.Flatten(), nn.Linear(80, 2)).eval()
    member = from_torch(dense_first, feature_names=["a", "b"], layout="NCL")
    assert not member.fast_ism
    channels_first_1lc = from_torch(
        basset_like(0).eval(), feature_names=list("abcde"), layout="N1LC"
    )
    assert not channels_first_1lc.fast_ism
    assert not DeepEnsemble([untraceable, untraceable]).fast_ism


class ToAGCT(nn.Module):
    def forward(self, x):
        return x[:, [0, 2, 1, 3]]


class Flatten(nn.Module):
    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class ReverseComplementAverage(nn.Module):
    """Averages forward and reverse-complement predictions (Kipoi's DeepSEA/predict does this)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        both = self.net(torch.cat([x, torch.flip(x, dims=(1, 3))], dim=0))
        return (both[: x.shape[0]] + both[x.shape[0] :]) / 2


def deepsea_like(seed, length=200):
    """DeepSEA's Kipoi layout (N, 4, 1, L), AGCT channels: Conv2d (1, 8), Threshold, MaxPool2d (1, 4)."""
    torch.manual_seed(seed)
    final = ((length - 7) // 4 - 7) // 4 - 7
    return nn.Sequential(
        ToAGCT(),
        nn.Conv2d(4, 6, (1, 8)),
        nn.Threshold(0, 1e-06),
        nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(6, 6, (1, 8)),
        nn.Threshold(0, 1e-06),
        nn.MaxPool2d((1, 4), (1, 4)),
        nn.Dropout(0.2),
        nn.Conv2d(6, 5, (1, 8)),
        nn.Threshold(0, 1e-06),
        nn.Dropout(0.5),
        Flatten(),
        nn.Linear(5 * final, 12),
        nn.Threshold(0, 1e-06),
        nn.Linear(12, 3),
        nn.Sigmoid(),
    ).eval()


def basset_zoo_like(seed, length=200):
    """Basset's Kipoi layout (N, 4, L, 1): Conv2d (k, 1), BatchNorm2d, MaxPool2d (k, 1)."""
    torch.manual_seed(seed)
    final = (((length - 18) // 3 - 10) // 4 - 6) // 4
    net = nn.Sequential(
        nn.Conv2d(4, 6, (19, 1)),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.MaxPool2d((3, 1), (3, 1)),
        nn.Conv2d(6, 5, (11, 1)),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1)),
        nn.Conv2d(5, 5, (7, 1)),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.MaxPool2d((4, 1), (4, 1)),
        Flatten(),
        nn.Linear(5 * final, 10),
        nn.BatchNorm1d(10),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(10, 4),
        nn.Sigmoid(),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.mark.parametrize(
    "make, layout, length, names",
    [(deepsea_like, "NC1L", 200, list("abc")), (basset_zoo_like, "NCL1", 200, list("abcd"))],
)
def test_zoo_layouts_with_conv2d_equal_full_passes(make, layout, length, names):
    net = make(0)
    fast = from_torch(net, feature_names=names, layout=layout, alphabet="ACGT")
    full = from_torch(net, feature_names=names, layout=layout, fast_ism=False)
    x = sequences.random_sequences(1, length, seed=2)[0]
    mut = _mutants(x, np.arange(length), np.random.default_rng(2))
    np.testing.assert_allclose(
        fast.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-6
    )
    # the last convolution of these short inputs is narrower than its window: it runs in full
    assert fast._plan_checked and fast._plan.windowed_convolutions == 2


def test_mc_dropout_in_a_4d_zoo_layout():
    net = deepsea_like(1)
    x = sequences.random_sequences(2, 200, seed=4)
    fast = MCDropout(from_torch(net, feature_names=list("abc"), layout="NC1L"), n_samples=3, seed=0)
    full = MCDropout(
        from_torch(net, feature_names=list("abc"), layout="NC1L", fast_ism=False),
        n_samples=3,
        seed=0,
    )
    got = ism.saturation_effects(fast, x, window=(70, 130), progress=False)
    want = ism.saturation_effects(full, x, window=(70, 130), progress=False)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.se, want.se, rtol=1e-4, atol=1e-6)
    assert fast.members[0]._plan_checked


def test_reverse_complement_averaging_runs_on_windows():
    """Flipping the batch and concatenating it with its reverse complement: each strand's windows
    follow their own reference (the flipped windows mirrored), so the cache engages."""
    net = ReverseComplementAverage(deepsea_like(2)[1:]).eval()
    member = from_torch(net, feature_names=list("abc"), layout="NC1L", sequence_length=200)
    full = from_torch(net, feature_names=list("abc"), layout="NC1L", fast_ism=False)
    x = sequences.random_sequences(1, 200, seed=5)[0]
    mut = _mutants(x, np.arange(0, 200, 7), np.random.default_rng(5))
    np.testing.assert_allclose(
        member.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-7
    )
    assert member.ism_path == "cached" and member._plan.windowed_convolutions == 2


def test_bpnet_oskn_port_channels_last_input():
    """The BPNet-OSKN port (NLC input, transpose, explicit F.pad + conv1d, residual sums, mean-pooled
    counts) runs on windows and equals its full passes."""
    from model_adapters.bpnet_oskn import BPNetWeights
    from model_adapters.bpnet_torch import BPNet

    rng = np.random.default_rng(8)
    f, s, rates = 6, 2, (2, 4, 8, 16)
    weights = BPNetWeights(
        tasks=("Oct4", "Sox2"),
        conv1_kernel=rng.normal(0, 0.3, (25, 4, f)),
        conv1_bias=rng.normal(0, 0.1, f),
        dilated_kernels=tuple(rng.normal(0, 0.3, (3, f, f)) for _ in rates),
        dilated_biases=tuple(rng.normal(0, 0.1, f) for _ in rates),
        dilation_rates=rates,
        profile_kernels=tuple(rng.normal(0, 0.3, (25, 1, s, f)) for _ in range(2)),
        profile_biases=tuple(rng.normal(0, 0.1, s) for _ in range(2)),
        counts_kernels=tuple(rng.normal(0, 0.3, (f, s)) for _ in range(2)),
        counts_biases=tuple(rng.normal(0, 0.1, s) for _ in range(2)),
        sequence_length=160,
        source="random weights",
    )
    net = BPNet(weights, output="counts").eval()
    fast = from_torch(net, feature_names=["Oct4", "Sox2"], layout="NLC")
    full = from_torch(net, feature_names=["Oct4", "Sox2"], layout="NLC", fast_ism=False)
    x = sequences.random_sequences(1, 160, seed=8)[0]
    mut = _mutants(x, np.arange(160), rng)
    np.testing.assert_allclose(
        fast.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-6
    )
    assert fast._plan_checked and fast._plan.windowed_convolutions >= 4


@pytest.mark.parametrize("layout", ["NCL", "NC1L"])
def test_padding_modules_and_strided_convolutions(layout):
    torch.manual_seed(9)
    if layout == "NCL":
        net = nn.Sequential(
            nn.ConstantPad1d((3, 4), 0.0),
            nn.Conv1d(4, 5, 8),
            nn.ReLU(),
            nn.Conv1d(5, 5, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(5, 4, 3, stride=3),
            nn.Flatten(),
            nn.LazyLinear(3),
        )
    else:
        net = nn.Sequential(
            nn.ZeroPad2d((2, 1, 0, 0)),
            nn.Conv2d(4, 5, (1, 4), stride=(1, 3)),
            nn.ELU(),
            nn.Conv2d(5, 4, (1, 3), stride=(1, 2), padding=(0, 1)),
            Flatten(),
            nn.LazyLinear(3),
        )
    x = sequences.random_sequences(1, 90, seed=9)[0]
    full = from_torch(net, feature_names=list("abc"), layout=layout, fast_ism=False)
    full.predict(x[None])  # materialises the lazy layer
    fast = from_torch(net.eval(), feature_names=list("abc"), layout=layout)
    mut = _mutants(x, np.arange(90), np.random.default_rng(9))
    np.testing.assert_allclose(
        fast.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-6
    )
    assert fast._plan_checked and fast._plan.windowed_convolutions >= 2


class InPlaceResidual(nn.Module):
    """In-place activations and sums, a pre-activation reused after an in-place op, and a
    concatenation of two windowed branches."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(10)
        self.conv = nn.Conv1d(4, 6, 5, padding=2)
        self.bn = nn.BatchNorm1d(6).eval()
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv1d(6, 6, 3, padding=2, dilation=2)
        self.conv3 = nn.Conv1d(12, 3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        pre = self.bn(self.conv(x))
        h = self.act(pre.clone())
        h += self.conv2(h)
        h = F.relu(h, inplace=True)
        both = torch.cat([h, pre], dim=1)
        return self.out(self.conv3(both).mean(-1))


def test_in_place_operations_and_concatenated_windows():
    net = InPlaceResidual().eval()
    fast, full, x, mut = _full_and_fast(net, ["u", "v"], 50, seed=10)
    np.testing.assert_allclose(
        fast.predict_mutants(x, mut), full.predict(mut), rtol=1e-5, atol=1e-6
    )
    assert fast._plan_checked and fast._plan.windowed_convolutions == 3  # conv3 after the cat too
