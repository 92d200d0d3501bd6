"""Fast ISM on reproductions of the Kipoi zoo PyTorch architectures (Lambda wrappers with ``len()``,
the reverse-complement concatenation, (N, 4, 1, L) and (N, 4, L, 1) layouts): the cache engages and
equals full forward passes."""

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import zoo_architectures as zoo  # noqa: E402
from deepmr_kipoi import ism, sequences  # noqa: E402
from deepmr_kipoi.errors import DeepMRInputError  # noqa: E402
from deepmr_kipoi.predictive import MCDropout, from_torch  # noqa: E402

pytestmark = pytest.mark.torch

#: name -> (input length, convolutions): long enough for every convolution to run on windows
CASES = {
    "Basset": (300, 3),
    "DeepSEA/variantEffects": (600, 3),
    "DeepSEA/predict": (600, 3),
    "DeepSEA/beluga": (700, 6),
}


def _members(name, length, scale=20, **kw):
    make, layout, _ = zoo.ZOO[name]
    net = make(0, scale=scale, length=length)
    fast = from_torch(net, layout=layout, sequence_length=length, **kw)
    full = from_torch(net, layout=layout, sequence_length=length, fast_ism=False)
    return net, fast, full


def _saturation(x):
    """All 3 L single mutants of x (L, 4)."""
    length = x.shape[0]
    out = np.repeat(x[None], 3 * length, axis=0)
    for p in range(length):
        for k in range(3):
            out[3 * p + k, p] = 0.0
            out[3 * p + k, p, (int(x[p].argmax()) + k + 1) % 4] = 1.0
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_zoo_architectures_run_on_windows_and_equal_full_passes(name):
    length, n_conv = CASES[name]
    net, fast, full = _members(name, length)
    make, layout, _ = zoo.ZOO[name]
    # the constructs are the zoo's: plain torch.fx cannot trace them
    with pytest.raises(Exception, match="len|Proxy|interpreted as an integer"):
        torch.fx.symbolic_trace(net)
    x = sequences.random_sequences(1, length, seed=3)[0]
    mut = _saturation(x)
    got = fast.predict_mutants(x, mut)
    want = full.predict(mut)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert fast.ism_path == "cached", fast.ism_reason
    assert fast._plan.windowed_convolutions == n_conv and not fast._plan.unfollowed
    assert full.ism_path == "full" and full.ism_reason == "fast_ism=False"


def test_reverse_complement_windows_mirror_the_forward_ones():
    """DeepSEA/predict's strands: the forward half of the batch equals variantEffects on the mutants,
    the reverse half variantEffects on the reverse-complemented mutants (an independent check of the
    flipped windows)."""
    length = 600
    predict = zoo.deepsea_predict(0, scale=20, length=length)
    trunk = torch.nn.Sequential(
        predict[0], predict[2]
    ).eval()  # the same weights without the strands
    x = sequences.random_sequences(1, length, seed=4)[0]
    mut = _saturation(x)[::17]
    fast = from_torch(predict, layout="NC1L", sequence_length=length)
    single = from_torch(trunk, layout="NC1L", sequence_length=length, fast_ism=False)
    rc = mut[:, ::-1, ::-1].copy()  # reverse complement of ACGT one-hot
    want = (single.predict(mut) + single.predict(rc)) / 2
    np.testing.assert_allclose(fast.predict_mutants(x, mut), want, rtol=1e-5, atol=1e-7)
    assert fast.ism_path == "cached"


def test_mc_dropout_samples_share_the_prefix_and_equal_full_passes():
    length = 600
    _, fast, full = _members("DeepSEA/variantEffects", length)
    x = sequences.random_sequences(2, length, seed=6)
    fast_model = MCDropout(fast, n_samples=4, seed=1)
    full_model = MCDropout(full, n_samples=4, seed=1)
    got = ism.saturation_effects(fast_model, x, window=(280, 320), progress=False)
    want = ism.saturation_effects(full_model, x, window=(280, 320), progress=False)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.se, want.se, rtol=1e-4, atol=1e-7)
    plan = fast._plan
    # the first convolution, its activation and pooling precede every dropout layer
    shared = [n for n in plan.depends_on_input if n not in plan.depends_on_masks]
    assert any(plan._is_conv(n) for n in shared)


class Cumulative(torch.nn.Module):
    """A cumulative sum between two convolutions: windows cannot pass it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = torch.nn.Conv1d(4, 6, 5)
        self.conv2 = torch.nn.Conv1d(6, 6, 5)
        self.head = torch.nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.conv1(x)).cumsum(-1) / x.shape[-1]
        return self.head(torch.relu(self.conv2(h)).mean(-1))


def test_a_layer_windows_cannot_pass_is_named_in_a_warning(caplog):
    member = from_torch(
        Cumulative().eval(), feature_names=["a", "b"], layout="NCL", sequence_length=50
    )
    full = from_torch(Cumulative().eval(), feature_names=["a", "b"], layout="NCL", fast_ism=False)
    x = sequences.random_sequences(1, 50, seed=0)[0]
    mut = _saturation(x)
    with caplog.at_level(logging.WARNING):
        got = member.predict_mutants(x, mut)
    np.testing.assert_allclose(got, full.predict(mut), rtol=1e-5, atol=1e-7)
    assert "cumsum" in caplog.text and "cumsum" in member.ism_reason
    assert member.ism_path == "cached"  # conv1 still runs on windows


class DataDependent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 3, 5)

    def forward(self, x):
        h = self.conv(x)
        if h.sum() > 0:
            h = -h
        return h.mean(-1)


def test_untraceable_models_say_why_in_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        member = from_torch(
            DataDependent().eval(), feature_names=list("abc"), layout="NCL", sequence_length=20
        )
        assert member.ism_path == "full"
    assert "forward cannot be traced" in member.ism_reason and "control flow" in member.ism_reason
    assert "fast ISM off" in caplog.text


def test_device_choice():
    net = Cumulative().eval()
    assert from_torch(net, feature_names=["a", "b"], device="cpu").device.type == "cpu"
    auto = from_torch(net, feature_names=["a", "b"], device="auto").device.type
    assert auto == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeepMRInputError, match="device"):
        from_torch(net, feature_names=["a", "b"], device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeepMRInputError, match="no CUDA"):
            from_torch(net, feature_names=["a", "b"], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_cache_equals_cpu_full_passes():
    length = 600
    make, layout, _ = zoo.ZOO["DeepSEA/predict"]
    cpu = from_torch(
        make(0, scale=20, length=length), layout=layout, sequence_length=length, fast_ism=False
    )
    gpu = from_torch(
        make(0, scale=20, length=length), layout=layout, sequence_length=length, device="cuda"
    )
    x = sequences.random_sequences(1, length, seed=3)[0]
    mut = _saturation(x)
    np.testing.assert_allclose(gpu.predict_mutants(x, mut), cpu.predict(mut), rtol=1e-4, atol=1e-6)
    assert gpu.ism_path == "cached"
