"""Predictive models: torch members, alphabets/layouts, outputs, transforms, ensembles, MC dropout."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deepmr_kipoi import sequences  # noqa: E402
from deepmr_kipoi.predictive import (  # noqa: E402
    LOGIT_EPS,
    DeepEnsemble,
    Deterministic,
    MCDropout,
    PredictiveModel,
    apply_transforms,
    from_function,
    from_torch,
    resolve_transforms,
)
from tests._helpers_ism import L, conv_net, conv_weights, numpy_conv_net  # noqa: E402

pytestmark = pytest.mark.torch
NAMES = ["a", "b", "c"]


@pytest.fixture
def x():
    seqs = sequences.random_sequences(5, L, seed=11)
    seqs[2, 4] = 0  # an N base
    return seqs


def test_member_matches_numpy_forward(x):
    net = conv_net(0)
    member = from_torch(net, feature_names=NAMES, layout="NCL")
    expected = numpy_conv_net(x.transpose(0, 2, 1), conv_weights(net))
    np.testing.assert_allclose(member.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert member.predict(x).dtype == np.float32


class _Transpose(torch.nn.Module):
    """Takes NLC input, feeds an NCL net."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x.transpose(1, 2))


def _twin(net, layout, alphabet):
    """A native model for ``layout``/``alphabet`` computing the same function as ``net`` (NCL, ACGT)."""
    perm = [("ACGT").index(b) for b in alphabet]
    conv, rest = net[0], net[1:]
    w = conv.weight.detach()[:, perm]
    if layout in ("NCL", "NLC"):
        new = torch.nn.Conv1d(4, 5, w.shape[2], padding=1)
        new.weight.data = w.clone()
    elif layout == "NC1L":
        new = torch.nn.Conv2d(4, 5, (1, w.shape[2]), padding=(0, 1))
        new.weight.data = w[:, :, None, :].clone()
    else:  # NCL1
        new = torch.nn.Conv2d(4, 5, (w.shape[2], 1), padding=(1, 0))
        new.weight.data = w[:, :, :, None].clone()
    new.bias.data = conv.bias.detach().clone()
    body = torch.nn.Sequential(new, *rest)
    return (_Transpose(body) if layout == "NLC" else body).eval()


@pytest.mark.parametrize("layout", ["NLC", "NCL", "NC1L", "NCL1"])
@pytest.mark.parametrize("alphabet", ["ACGT", "AGCT", "TGCA"])
def test_layout_and_alphabet_twins_agree(x, layout, alphabet):
    net = conv_net(1)
    base = from_torch(net, feature_names=NAMES, layout="NCL").predict(x)
    twin = from_torch(
        _twin(net, layout, alphabet), feature_names=NAMES, layout=layout, alphabet=alphabet
    )
    assert twin.alphabet == alphabet
    np.testing.assert_allclose(twin.predict(x), base, rtol=1e-5, atol=1e-6)


def test_output_callable_and_errors(x):
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = conv_net(2, n_out=4)

        def forward(self, x):
            y = self.net(x)
            return {"profile": y[:, :2], "counts": y[:, 2:]}

    model = TwoHeads().eval()
    member = from_torch(model, feature_names=["c0", "c1"], output=lambda out: out["counts"])
    full = from_torch(model.net, feature_names=list("pqrs")).predict(x)
    np.testing.assert_allclose(member.predict(x), full[:, 2:], rtol=1e-6)
    with pytest.raises(ValueError, match="pass output=callable"):
        from_torch(model, feature_names=["c0", "c1"]).predict(x)
    with pytest.raises(ValueError, match="3 features but 2 feature_names"):
        from_torch(conv_net(0), feature_names=["a", "b"]).predict(x)
    with pytest.raises(ValueError, match="length 10 but the model takes 16"):
        DeepEnsemble(
            [from_torch(conv_net(0), feature_names=NAMES, sequence_length=L)]
        ).predict_samples(np.zeros((1, 10, 4), np.float32))
    inferred = from_torch(conv_net(0), sequence_length=L)
    assert inferred.feature_names == ("feature_0", "feature_1", "feature_2")


def test_transforms_values():
    pred = np.array([[0.0, 0.5, 1.0, 3.0], [1e-12, 0.9, 1.0, -1e-3]], dtype=np.float32)
    out = apply_transforms(
        pred, resolve_transforms({"p": "logit", "q": "logit", "n": "log1p"}, ["id", "p", "q", "n"])
    )
    np.testing.assert_array_equal(out[:, 0], pred[:, 0])
    np.testing.assert_allclose(out[:, 1], [0.0, np.log(9.0)], rtol=1e-6)
    cap = np.log((1 - LOGIT_EPS) / LOGIT_EPS)
    np.testing.assert_allclose(
        out[:, 2], [cap, cap], rtol=1e-5
    )  # saturated sigmoid: finite, not inf
    np.testing.assert_allclose(out[0, 1], 0.0)
    np.testing.assert_allclose(out[:, 3], [np.log(4.0), 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        apply_transforms(np.array([[0.0]], np.float32), ("logit",)), [[-cap]], rtol=1e-5
    )
    with pytest.raises(ValueError, match="unknown transform"):
        resolve_transforms("probit", ["a"])
    with pytest.raises(ValueError, match="does not have"):
        resolve_transforms({"zzz": "logit"}, ["a"])


def test_transform_applied_in_member(x):
    net = torch.nn.Sequential(conv_net(3), torch.nn.Sigmoid()).eval()
    raw = from_torch(net, feature_names=NAMES).predict(x).astype(np.float64)
    logit = from_torch(net, feature_names=NAMES, transforms={"b": "logit"}).predict(x)
    np.testing.assert_allclose(logit[:, [0, 2]], raw[:, [0, 2]])
    np.testing.assert_allclose(
        logit[:, 1], np.log(raw[:, 1] / (1 - raw[:, 1])), rtol=1e-4, atol=1e-5
    )


def test_deep_ensemble_stacks_members(x):
    nets = [conv_net(s) for s in range(3)]
    model = DeepEnsemble([from_torch(n, feature_names=NAMES) for n in nets])
    assert isinstance(model, PredictiveModel)
    assert model.n_samples == 3 and model.feature_names == tuple(NAMES)
    samples = model.predict_samples(x, batch_size=2)
    assert samples.shape == (3, 5, 3)
    for s, net in enumerate(nets):
        np.testing.assert_allclose(
            samples[s],
            numpy_conv_net(x.transpose(0, 2, 1), conv_weights(net)),
            rtol=1e-5,
            atol=1e-6,
        )
    with pytest.raises(ValueError, match="different feature_names"):
        DeepEnsemble(
            [
                from_torch(nets[0], feature_names=NAMES),
                from_torch(nets[1], feature_names=list("xyz")),
            ]
        )
    with pytest.raises(ValueError, match="from_torch/from_keras/from_function"):
        DeepEnsemble([nets[0]])


def test_function_members_and_deterministic(x):
    member = from_function(lambda a: a[:, :, 0].sum(1, keepdims=True), feature_names=["nA"])
    det = Deterministic(member)
    assert det.n_samples == 1
    np.testing.assert_array_equal(det.predict_samples(x)[0, :, 0], x[:, :, 0].sum(1))


def test_mc_dropout_requires_dropout(x):
    with pytest.raises(ValueError, match="no dropout layer.*DeepEnsemble"):
        MCDropout(from_torch(conv_net(0), feature_names=NAMES), n_samples=4)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        MCDropout(
            from_torch(conv_net(0, dropout=torch.nn.Dropout(0.5)), feature_names=NAMES), n_samples=1
        )


@pytest.mark.parametrize("kind", ["element", "channel"])
def test_mc_dropout_masks_are_fixed_and_exact(x, kind):
    drop = torch.nn.Dropout(0.4) if kind == "element" else torch.nn.Dropout1d(0.4)
    net = conv_net(4, dropout=drop, batchnorm=True)
    bn = net[1]
    bn_params = tuple(
        t.detach().double().numpy() for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias)
    ) + (bn.eps,)
    member = from_torch(net, feature_names=NAMES)
    assert [d.channelwise for d in member.dropout_layers] == [kind == "channel"]
    model = MCDropout(member, n_samples=6, seed=5)
    samples = model.predict_samples(x)
    assert samples.shape == (6, 5, 3)
    shape = (5, 1) if kind == "channel" else (5, L)
    for s in range(6):
        mask = model.mask(s, 0, shape, 0.4).astype(np.float64)
        assert set(np.unique(mask)) <= {0.0, float(np.float32(1 / 0.6))}
        kw = {"channel_mask": mask} if kind == "channel" else {"element_mask": mask}
        expected = numpy_conv_net(x.transpose(0, 2, 1), conv_weights(net), bn=bn_params, **kw)
        np.testing.assert_allclose(samples[s], expected, rtol=1e-5, atol=1e-5)
    # one mask per sample, broadcast over the batch: each sequence alone gives the same numbers
    alone = np.concatenate([model.predict_samples(x[i : i + 1]) for i in range(5)], axis=1)
    np.testing.assert_allclose(alone, samples, rtol=1e-6, atol=1e-7)
    # the samples differ from each other and from inference mode; the seed fixes them
    assert np.ptp(samples, axis=0).max() > 1e-3
    np.testing.assert_array_equal(
        MCDropout(member, n_samples=6, seed=5).predict_samples(x), samples
    )
    assert not np.allclose(MCDropout(member, n_samples=6, seed=6).predict_samples(x), samples)
    # the module is left as it was: eval mode, no hooks
    np.testing.assert_allclose(
        member.predict(x),
        numpy_conv_net(x.transpose(0, 2, 1), conv_weights(net), bn=bn_params),
        rtol=1e-5,
        atol=1e-5,
    )
    assert not net.training


def test_mc_dropout2d_on_nc1l_layout(x):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(4, 3, (1, 3), padding=(0, 1)),
        torch.nn.Dropout2d(0.5),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * L, 2),
    ).eval()
    model = MCDropout(from_torch(net, feature_names=["u", "v"], layout="NC1L"), n_samples=3, seed=0)
    samples = model.predict_samples(x)
    xin = torch.from_numpy(sequences.to_layout(x, "NC1L").copy())
    for s in range(3):
        mask = torch.from_numpy(model.mask(s, 0, (3, 1, 1), 0.5))
        with torch.no_grad():
            h = net[0](xin) * mask
            expected = net[3](net[2](h)).numpy()
        np.testing.assert_allclose(samples[s], expected, rtol=1e-5, atol=1e-6)


def test_optimize_matches_eager_and_falls_back(x, caplog):
    net = conv_net(5, dropout=torch.nn.Dropout(0.5), batchnorm=True)
    eager = from_torch(net, feature_names=NAMES).predict(x)
    fast = from_torch(net, feature_names=NAMES, optimize=True, fast_ism=False)
    np.testing.assert_allclose(fast.predict(x), eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        fast.predict(x[:2]), eager[:2], rtol=1e-5, atol=1e-6
    )  # another batch size
    assert isinstance(fast._optimized, torch.jit.ScriptModule)
    # MC dropout samples run eagerly with their masks, optimized or not
    a = MCDropout(fast, n_samples=3, seed=0).predict_samples(x)
    b = MCDropout(from_torch(net, feature_names=NAMES), n_samples=3, seed=0).predict_samples(x)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # beside the receptive-field cache, references stay eager: effects pair like with like
    cached = from_torch(net, feature_names=NAMES, optimize=True)
    np.testing.assert_array_equal(cached.predict(x), eager)
    assert cached.fast_ism and cached._optimized is None

    class DictOut(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = conv_net(6)

        def forward(self, x):
            return {"y": self.net(x)}

    with caplog.at_level("WARNING"):
        member = from_torch(
            DictOut().eval(),
            feature_names=NAMES,
            output=lambda o: o["y"],
            optimize=True,
            fast_ism=False,
        )
        np.testing.assert_allclose(
            member.predict(x), from_torch(conv_net(6), feature_names=NAMES).predict(x), rtol=1e-6
        )
    assert "using eager mode" in caplog.text
